"""recur: recurrent neural networks (RNN, LSTM, GRU) on the CPU with PyTorch's semantics.

This module is the NumPy API (it does not import torch); ``recur.torch`` has drop-in
replacements for ``torch.nn.LSTM``, ``GRU``, ``RNN`` and their cells.
"""

from ._native import RecurError, get_num_threads, release_buffers, set_num_threads
from ._errors import UnsupportedError
from .numpy_api import Model, Stream, load

__all__ = [
    "Model",
    "RecurError",
    "Stream",
    "UnsupportedError",
    "get_num_threads",
    "load",
    "release_buffers",
    "set_num_threads",
]
