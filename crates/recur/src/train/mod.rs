//! Training runs: the resumable checkpoint of a run ([`checkpoint`]).

pub mod checkpoint;
