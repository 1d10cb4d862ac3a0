//! Weights in and out: PyTorch state_dicts as safetensors files ([`state_dict`]).

pub mod state_dict;
