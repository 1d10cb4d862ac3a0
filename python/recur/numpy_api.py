"""The NumPy API: PyTorch weights in, arrays in and out, no torch needed.

Outputs are NumPy arrays that own recur's buffers (no copy); inputs are read once into recur,
from any strides.
"""

import numpy as np

from . import _native
from ._errors import UnsupportedError

_DTYPES = {"float32": np.float32, "float64": np.float64}


def _dtype_name(dtype):
    name = np.dtype(dtype).name
    if name not in _DTYPES:
        raise TypeError(f"recur computes in float32 or float64, not {name}")
    return name


class Model:
    """A recurrent stack (``nn.RNN``/``nn.LSTM``/``nn.GRU``) with fixed weights.

    ``forward`` follows ``torch.nn.LSTM.forward``: it returns ``(output, h_n)``, and for an
    LSTM ``(output, (h_n, c_n))``.
    """

    def __init__(self, native):
        self._native = native
        cfg = native.config()
        self.mode = cfg["mode"]
        self.input_size = cfg["input_size"]
        self.hidden_size = cfg["hidden_size"]
        self.num_layers = cfg["num_layers"]
        self.bias = cfg["bias"]
        self.batch_first = cfg["batch_first"]
        self.bidirectional = cfg["bidirectional"]
        self.proj_size = cfg["proj_size"]
        self.dtype = np.dtype(native.dtype)

    def __repr__(self):
        args = [str(self.input_size), str(self.hidden_size)]
        if self.num_layers != 1:
            args.append(f"num_layers={self.num_layers}")
        if self.mode == "RNN_RELU":
            args.append("nonlinearity='relu'")
        if not self.bias:
            args.append("bias=False")
        if self.batch_first:
            args.append("batch_first=True")
        if self.bidirectional:
            args.append("bidirectional=True")
        if self.proj_size:
            args.append(f"proj_size={self.proj_size}")
        kind = {"LSTM": "LSTM", "GRU": "GRU"}.get(self.mode, "RNN")
        return f"recur.Model({kind}({', '.join(args)}), dtype={self.dtype.name})"

    def _array(self, a, what):
        if a is None:
            return None
        # C order: recur copies a C-ordered buffer in one block (other strides element by
        # element, much slower); a C-ordered array passes through untouched.
        a = np.ascontiguousarray(a)
        if a.dtype != self.dtype:
            raise TypeError(
                f"{what}: expected {self.dtype.name} (the model's dtype), got {a.dtype}; "
                f"convert with .astype(np.{self.dtype.name})"
            )
        return a

    def forward(self, x, hx=None, lengths=None):
        """Runs the stack over ``x``: (T, B, input_size), (B, T, input_size) if batch_first,
        or unbatched (T, input_size).

        ``hx``: the initial state, ``h0`` (L·D, B, H_out), for an LSTM ``(h0, c0)``; zeros when
        None. ``lengths``: one length per sequence (PackedSequence semantics: each sequence
        runs to its own length, padded outputs are 0, final states at each one's last step).
        """
        x = self._array(x, "input")
        h0 = c0 = None
        if hx is not None:
            if self.mode == "LSTM":
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError("an LSTM's hx is a pair (h0, c0)")
                h0, c0 = (self._array(hx[0], "h0"), self._array(hx[1], "c0"))
            else:
                h0 = self._array(hx, "h0")
        if lengths is not None:
            lengths = [int(v) for v in np.asarray(lengths).reshape(-1)]
        out, h_n, c_n, _ = self._native.forward(x, h0, c0, lengths)
        if self.mode == "LSTM":
            return out, (h_n, c_n)
        return out, h_n

    __call__ = forward

    def stream(self, batch=1, precision="f32"):
        """A streaming state of ``batch`` sequences starting from zeros (unidirectional models).

        ``precision`` stores the weights of the stream: ``"f32"`` (the model's own), ``"f16"`` or
        ``"bf16"`` (16-bit, widened on the fly) or ``"int8"`` (int8 weights, activations quantized
        at every step as ``torch.ao.quantization.quantize_dynamic`` does); float32 models only."""
        return Stream(self, batch, precision)

    def state_dict(self):
        """``{name: array}`` with PyTorch's names, in registration order."""
        return self._native.state_dict()


class Stream:
    """Advances ``batch`` recurrent states by one input at a time (no allocation per step)."""

    def __init__(self, model, batch=1, precision="f32"):
        if precision != "f32" and model.dtype != np.float32:
            raise UnsupportedError(
                f"{precision} stream weights are for float32 models; this one is {model.dtype.name} "
                "(load it with dtype='float32')"
            )
        self._model = model
        self._native = model._native.stream(batch, precision)
        self.batch = batch
        self.precision = precision

    def step(self, x):
        """One input per stream, (batch, input_size) (or (input_size,) for one stream); returns
        the last layer's new h, (batch, H_out)."""
        return self._native.step(self._model._array(x, "x"))

    @property
    def state(self):
        """``h`` (L, batch, H_out), for an LSTM ``(h, c)``."""
        h, c = self._native.state()
        return (h, c) if self._model.mode == "LSTM" else h

    def set_state(self, hx):
        """Replaces the state: ``h`` or, for an LSTM, ``(h, c)`` (e.g. a forward pass's)."""
        if self._model.mode == "LSTM":
            h, c = hx
            self._native.set_state(self._model._array(h, "h"), self._model._array(c, "c"))
        else:
            self._native.set_state(self._model._array(hx, "h"))

    def reset(self):
        """Sets every state back to zero."""
        self._native.reset()


def load(path, prefix=None, nonlinearity=None, batch_first=False, dtype="float32"):
    """Loads an ``nn.RNN``/``nn.LSTM``/``nn.GRU`` state_dict saved with
    ``safetensors.torch.save_file(module.state_dict(), path)`` (also one layer inside a whole
    model's state_dict: ``prefix="encoder.rnn"``, found when there is only one). The weights
    give the cell, sizes, layers, directions, bias and proj_size; ``nonlinearity`` ("tanh" or
    "relu") and ``batch_first`` they cannot say."""
    native = _native.Rnn.load(
        str(path),
        prefix=prefix,
        nonlinearity=nonlinearity,
        batch_first=batch_first,
        dtype=_dtype_name(dtype),
    )
    return Model(native)
