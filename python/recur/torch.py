"""Drop-in replacements for ``torch.nn.LSTM``, ``GRU``, ``RNN``, ``LSTMCell``, ``GRUCell`` and
``RNNCell`` computed by recur on the CPU.

Each class subclasses its ``torch.nn`` counterpart: the constructor, parameters (names, shapes,
registration order, initialisation from torch's generator), ``state_dict``, ``repr`` and
``_flat_weights``/``all_weights`` are torch's own. Only ``forward`` differs: it runs recur
(forward and backpropagation through time as one ``torch.autograd.Function``), reading the
parameters' current values at every call.

``LSTM``, ``GRU`` and ``RNN`` also take recur's regularizers as keyword arguments
(``layer_norm``, ``input_dropout``, ``recurrent_dropout``, ``zoneout``, ``weight_drop``,
``locked_dropout``; docs/regularization.md). Their masks are drawn in ``train()`` mode only, from
torch's generator (``torch.manual_seed``), in the order of :meth:`sample_masks`; ``eval()`` gives
the deterministic layer. Without them a module has exactly torch's parameters and state_dict.
"""

import weakref

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.utils.rnn import PackedSequence

from . import _native
from ._errors import UnsupportedError

__all__ = ["GRU", "GRUCell", "LSTM", "LSTMCell", "RNN", "RNNCell", "UnsupportedError"]

_DTYPES = {torch.float32: "float32", torch.float64: "float64"}

# module -> (key, native model). Kept outside the modules so that they hold only tensors and
# plain values (copy.deepcopy, pickling, torch.save). Only inference calls read it.
_cache = weakref.WeakKeyDictionary()


def _check(t, what, dtype=None):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{what}: expected a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise UnsupportedError(
            f"recur runs on the CPU only: {what} is on {t.device}; move the module and its "
            "inputs to the CPU (.cpu()) or use torch.nn on this device"
        )
    if t.layout != torch.strided:
        raise UnsupportedError(f"recur needs dense tensors: {what} has layout {t.layout}")
    if t.dtype not in _DTYPES:
        raise UnsupportedError(
            f"recur computes in float32 or float64: {what} has dtype {t.dtype}"
        )
    if dtype is not None and t.dtype != dtype:
        raise ValueError(f"{what} must have the type {dtype}, got type {t.dtype}")


def _np(t):
    return t.detach().contiguous().resolve_conj().resolve_neg().numpy()


def _np_strided(t):
    """`t` as a C-ordered NumPy array: torch's copy of a transposed input is much faster than
    reading it element by element through its strides."""
    return _np(t)


def _opt_np(t):
    return None if t is None else _np(t)


def _native_model(module, cfg, params, reg=()):
    """The native model for `params` (current values). Training calls always read the
    parameters afresh (writes through `.data` do not bump a tensor's version, and a training
    step's compute dwarfs the copy); inference calls reuse the model converted by the last
    inference call while every parameter keeps its data_ptr and _version."""
    dtype = params[0].dtype
    fresh = torch.is_grad_enabled() and any(p.requires_grad for p in params)
    key = (cfg, reg, dtype, tuple((p.data_ptr(), p._version, tuple(p.shape)) for p in params))
    if fresh:
        _cache.pop(module, None)
    else:
        hit = _cache.get(module)
        if hit is not None and hit[0] == key:
            return hit[1]
    nat = _native.Rnn(*cfg, [_np(p) for p in params], _DTYPES[dtype], **dict(reg))
    if not fresh:
        _cache[module] = (key, nat)
    return nat


class _RnnFunction(torch.autograd.Function):
    """recur's forward pass and BPTT: inputs (x, h0, c0, *params), outputs (out, h_n[, c_n])."""

    @staticmethod
    def forward(ctx, nat, lstm, lengths, masks, layer_masks, x, h0, c0, *params):
        out, h_n, c_n, tape = nat.forward(
            _np_strided(x),
            _opt_np(h0),
            _opt_np(c0),
            lengths,
            None if masks is None else [_np(m) for m in masks],
            True,
            _np_layer_masks(layer_masks),
        )
        ctx.tape = tape
        ctx.shapes = [p.shape for p in params]
        ctx.set_materialize_grads(False)
        if lstm:
            return torch.from_numpy(out), torch.from_numpy(h_n), torch.from_numpy(c_n)
        return torch.from_numpy(out), torch.from_numpy(h_n)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_hn, g_cn=None):
        need = ctx.needs_input_grad
        need_x, need_h0, need_c0 = need[5], need[6], need[7]
        need_p = need[8:]
        tape = ctx.tape
        dx = dh0 = dc0 = flat = None
        if need_x or need_h0 or need_c0:
            dx, dh0, dc0, flat = tape.backward(
                _opt_np(g_out), _opt_np(g_hn), _opt_np(g_cn), need_x
            )
        elif any(need_p):
            flat = tape.backward_params(_opt_np(g_out), _opt_np(g_hn), _opt_np(g_cn))
        pgrads = [None] * len(need_p)
        if flat is not None:
            flat = torch.from_numpy(flat)
            off = 0
            for i, shape in enumerate(ctx.shapes):
                n = shape.numel()
                if need_p[i]:
                    pgrads[i] = flat[off : off + n].view(shape)
                off += n
        return (
            None,
            None,
            None,
            None,
            None,
            torch.from_numpy(dx) if need_x else None,
            torch.from_numpy(dh0) if need_h0 else None,
            torch.from_numpy(dc0) if need_c0 and dc0 is not None else None,
            *pgrads,
        )


def _np_layer_masks(layer_masks):
    if layer_masks is None:
        return None
    return [{k: _np(v) for k, v in d.items()} for d in layer_masks]


def _run(module, cfg, params, lstm, x, h0, c0, lengths, masks, reg=(), layer_masks=None):
    """Runs recur on a padded batch `x` (in the layout `cfg` says): the training path (an
    autograd Function) when a gradient is wanted, else inference (no tape). `reg`: the
    regularizers, `(name, value)` pairs; `layer_masks`: their training-mode masks (None in
    evaluation mode)."""
    nat = _native_model(module, cfg, params, reg)
    tensors = [x, h0, c0, *params]
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        outs = _RnnFunction.apply(nat, lstm, lengths, masks, layer_masks, x, h0, c0, *params)
        return outs if lstm else (outs[0], outs[1], None)
    out, h_n, c_n, _ = nat.forward(
        _np_strided(x),
        _opt_np(h0),
        _opt_np(c0),
        lengths,
        None if masks is None else [_np(m) for m in masks],
        False,
        _np_layer_masks(layer_masks),
    )
    return (
        torch.from_numpy(out),
        torch.from_numpy(h_n),
        None if c_n is None else torch.from_numpy(c_n),
    )


def _packed_index(batch_sizes, sorted_indices):
    """For the rows of a PackedSequence's data: their time step and (original) batch index,
    and each sequence's length in the original batch order."""
    bs = batch_sizes.to(torch.int64)
    t = bs.numel()
    b = int(bs[0])
    n = int(bs.sum())
    t_idx = torch.repeat_interleave(torch.arange(t), bs)
    starts = torch.cumsum(bs, 0) - bs
    j = torch.arange(n) - torch.repeat_interleave(starts, bs)
    lengths_sorted = (bs.unsqueeze(0) > torch.arange(b).unsqueeze(1)).sum(1)
    if sorted_indices is None:
        b_idx = j
        lengths = lengths_sorted
    else:
        si = sorted_indices.to(torch.int64)
        b_idx = si[j]
        lengths = torch.empty_like(lengths_sorted)
        lengths[si] = lengths_sorted
    return t_idx, b_idx, lengths.tolist(), t, b


def _dropout_masks(n_masks, shape, p, dtype):
    """What torch's RNN draws for dropout between layers: for each layer but the last,
    empty_like(layer_output).bernoulli_(1 - p).div_(1 - p), from torch's generator."""
    if p >= 1:
        return [torch.zeros(shape, dtype=dtype) for _ in range(n_masks)]
    return [torch.empty(shape, dtype=dtype).bernoulli_(1 - p).div_(1 - p) for _ in range(n_masks)]


_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
_PROBS = ("input_dropout", "recurrent_dropout", "zoneout", "weight_drop")


class _RecurRNNBase:
    """forward() of nn.RNN/nn.LSTM/nn.GRU on recur, and recur's regularizers.

    Keyword arguments beyond torch's (all off by default; docs/regularization.md):

    - ``layer_norm`` (bool): layer norm of ``x W_ihᵀ`` and of ``h W_hhᵀ`` (over all gates) and,
      for an LSTM, of the new cell state, with gains and biases registered as the parameters
      ``ln_ih_weight_l{k}``, ``ln_ih_bias_l{k}``, ``ln_hh_weight_l{k}``, ``ln_hh_bias_l{k}``
      (and ``ln_c_weight_l{k}``, ``ln_c_bias_l{k}``), after torch's.
    - ``input_dropout`` (p): variational dropout on every layer's input, one mask per sequence.
    - ``recurrent_dropout`` (p): variational dropout on ``h_{t-1}`` in the recurrent product.
    - ``zoneout`` (p): each unit of h (and c for an LSTM) keeps its previous value with
      probability p at each step; in eval() ``h = p h_{t-1} + (1 - p) h'``.
    - ``weight_drop`` (p): DropConnect on ``weight_hh``, one mask per forward call.
    - ``locked_dropout`` (bool): torch's ``dropout`` between layers with one mask per sequence.

    Probabilities are in [0, 1). The regularizers are for unidirectional layers without
    projection. Masks are drawn in train() mode only, from torch's generator, as
    :meth:`sample_masks` draws them.
    """

    layer_norm = False
    input_dropout = 0.0
    recurrent_dropout = 0.0
    zoneout = 0.0
    weight_drop = 0.0
    locked_dropout = False

    def __init__(
        self,
        *args,
        layer_norm=False,
        input_dropout=0.0,
        recurrent_dropout=0.0,
        zoneout=0.0,
        weight_drop=0.0,
        locked_dropout=False,
        **kwargs,
    ):
        name = type(self).__name__
        probs = dict(
            input_dropout=input_dropout,
            recurrent_dropout=recurrent_dropout,
            zoneout=zoneout,
            weight_drop=weight_drop,
        )
        for k, p in probs.items():
            if isinstance(p, bool) or not isinstance(p, (int, float)):
                raise TypeError(f"{name}: {k} must be a number, got {type(p).__name__}")
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name}: {k} must be a probability in [0, 1), got {p}")
        for k, v in (("layer_norm", layer_norm), ("locked_dropout", locked_dropout)):
            if not isinstance(v, bool):
                raise TypeError(f"{name}: {k} must be True or False, got {v!r}")
        super().__init__(*args, **kwargs)
        on = [k for k, p in probs.items() if p > 0]
        on += [k for k, v in (("layer_norm", layer_norm), ("locked_dropout", locked_dropout)) if v]
        if on and (self.bidirectional or self.proj_size > 0):
            raise ValueError(
                f"{name}: {', '.join(on)} need a unidirectional layer without projection "
                f"(bidirectional={self.bidirectional}, proj_size={self.proj_size}); drop "
                "bidirectional/proj_size or the regularizers"
            )
        for k, p in probs.items():
            setattr(self, k, float(p))
        self.locked_dropout = locked_dropout
        self.layer_norm = layer_norm
        if layer_norm:
            w = self.weight_ih_l0
            gh = _GATES[self.mode] * self.hidden_size
            for n in self._ln_names():
                size = self.hidden_size if n.startswith("ln_c_") else gh
                self.register_parameter(
                    n, nn.Parameter(torch.empty(size, dtype=w.dtype, device=w.device))
                )
            self._reset_ln()

    def _ln_names(self):
        """The layer norm's parameter names, in recur's layout order (after torch's)."""
        if not self.layer_norm:
            return []
        kinds = ["ih_weight", "ih_bias", "hh_weight", "hh_bias"]
        if self.mode == "LSTM":
            kinds += ["c_weight", "c_bias"]
        return [f"ln_{kind}_l{k}" for k in range(self.num_layers) for kind in kinds]

    def _reset_ln(self):
        with torch.no_grad():
            for n in self._ln_names():
                p = getattr(self, n)
                if "_weight_l" in n:
                    p.fill_(1.0)
                else:
                    p.zero_()

    def reset_parameters(self):
        """torch's initialisation; the layer norm's gains 1 and biases 0."""
        super().reset_parameters()
        if self.layer_norm and hasattr(self, "ln_ih_weight_l0"):
            self._reset_ln()

    def _regularizers(self):
        """The regularizers as `(name, value)` pairs for the native model (empty when off)."""
        reg = tuple((k, getattr(self, k)) for k in _PROBS if getattr(self, k) > 0)
        reg += tuple((k, True) for k in ("layer_norm", "locked_dropout") if getattr(self, k))
        if reg:
            reg += (("dropout", float(self.dropout)),)
        return reg

    def extra_repr(self):
        s = super().extra_repr()
        for k in _PROBS:
            if getattr(self, k) > 0:
                s += f", {k}={getattr(self, k)}"
        for k in ("layer_norm", "locked_dropout"):
            if getattr(self, k):
                s += f", {k}=True"
        return s

    def sample_masks(self, seq_len, batch_size, dtype=None):
        """The masks a train()-mode forward call over `seq_len` steps of `batch_size`
        sequences draws from torch's generator (after the same ``torch.manual_seed`` the call
        draws these), one dict per layer, time-major, batch rows in the caller's order (for a
        PackedSequence: the padded batch of its longest length):

        - ``input`` (B, layer input size), ``recurrent`` (B, H), ``weight_hh`` (G·H, H):
          ``bernoulli(1 - p) / (1 - p)``;
        - ``zoneout_h``, ``zoneout_c`` (LSTM) (T, B, H): 1 (keep the previous value) with
          probability p;
        - ``output`` (layers but the last, torch's ``dropout``): (B, H) when
          ``locked_dropout``, else (T, B, H).

        Drawn layer by layer in that order, only the masks whose probability is above 0. A
        module without recur's regularizers draws torch's own dropout masks instead.
        """
        dtype = self.weight_ih_l0.dtype if dtype is None else dtype
        t, b, h = seq_len, batch_size, self.hidden_size
        gh = _GATES[self.mode] * h

        def drop(shape, p):
            if p >= 1:
                return torch.zeros(shape, dtype=dtype)
            return torch.empty(shape, dtype=dtype).bernoulli_(1 - p).div_(1 - p)

        layers = []
        for k in range(self.num_layers):
            m = {}
            if self.input_dropout > 0:
                width = self.input_size if k == 0 else h
                m["input"] = drop((b, width), self.input_dropout)
            if self.recurrent_dropout > 0:
                m["recurrent"] = drop((b, h), self.recurrent_dropout)
            if self.weight_drop > 0:
                m["weight_hh"] = drop((gh, h), self.weight_drop)
            if self.zoneout > 0:
                m["zoneout_h"] = torch.empty((t, b, h), dtype=dtype).bernoulli_(self.zoneout)
                if self.mode == "LSTM":
                    m["zoneout_c"] = torch.empty((t, b, h), dtype=dtype).bernoulli_(self.zoneout)
            if k + 1 < self.num_layers and self.dropout > 0:
                shape = (b, h) if self.locked_dropout else (t, b, h)
                m["output"] = drop(shape, self.dropout)
            layers.append(m)
        return layers

    def flatten_parameters(self):
        """A no-op: recur reads the parameters where they are."""
        return None

    def forward(self, input, hx=None):  # noqa: A002 (torch's argument name)
        name = type(self).__name__
        lstm = self.mode == "LSTM"
        names = list(self._flat_weights_names) + self._ln_names()
        params = [getattr(self, n) for n in names]
        for n, p in zip(names, params):
            _check(p, f"{name}.{n}")
        dtype = params[0].dtype
        for n, p in zip(names, params):
            if p.dtype != dtype:
                raise ValueError(
                    f"{name}: all parameters must have one dtype: {names[0]} "
                    f"is {dtype}, {n} is {p.dtype}"
                )
        bf = self.batch_first
        d = 2 if self.bidirectional else 1
        width = d * (self.proj_size if self.proj_size > 0 else self.hidden_size)
        packed = isinstance(input, PackedSequence)
        lengths = None
        if packed:
            data, batch_sizes, sorted_indices, unsorted_indices = input
            _check(data, "input", dtype)
            if data.dim() != 2:
                raise ValueError(
                    f"{name}: a PackedSequence's data must be 2-D (sum of lengths, input_size), "
                    f"got {data.dim()}-D"
                )
            t_idx, b_idx, lengths, t, b = _packed_index(batch_sizes, sorted_indices)
            x = torch.index_put(data.new_zeros((t, b, data.shape[1])), (t_idx, b_idx), data)
            unbatched = False
        else:
            _check(input, "input", dtype)
            if input.dim() not in (2, 3):
                raise ValueError(
                    f"{name}: Expected input to be 2D or 3D, got {input.dim()}D instead"
                )
            unbatched = input.dim() == 2
            x = input.unsqueeze(0 if bf else 1) if unbatched else input
            # recur runs time-major; like torch, a batch_first input and output are transposed
            # views (so the output has torch's strides, which e.g. empty_like-based dropout
            # after the layer follows).
            if bf:
                x = x.transpose(0, 1)
            t, b = x.shape[0], x.shape[1]
        h0 = c0 = None
        if hx is not None:
            if lstm:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError(f"{name}: hx must be a tuple (h_0, c_0)")
                h0, c0 = hx
                states = [(h0, "hx[0]"), (c0, "hx[1]")]
            else:
                if not isinstance(hx, torch.Tensor):
                    raise TypeError(f"{name}: hx must be a Tensor, got {type(hx).__name__}")
                h0 = hx
                states = [(h0, "hx")]
            for s, what in states:
                _check(s, what, dtype)
                if unbatched and s.dim() != 2:
                    raise RuntimeError(
                        f"For unbatched 2-D input, {what} should also be 2-D but got "
                        f"{s.dim()}-D tensor"
                    )
                if not unbatched and s.dim() != 3:
                    raise RuntimeError(
                        f"For batched 3-D input, {what} should also be 3-D but got "
                        f"{s.dim()}-D tensor"
                    )
            if unbatched:
                h0 = h0.unsqueeze(1)
                c0 = c0.unsqueeze(1) if c0 is not None else None
        masks = None
        layer_masks = None
        reg = self._regularizers()
        if reg:
            if self.training:
                layer_masks = self.sample_masks(t, b, dtype)
        elif self.training and self.dropout > 0 and self.num_layers > 1:
            if packed:
                rows = _dropout_masks(self.num_layers - 1, (data.shape[0], width), self.dropout, dtype)
                masks = [
                    torch.index_put(m.new_zeros((t, b, width)), (t_idx, b_idx), m) for m in rows
                ]
            else:
                masks = _dropout_masks(self.num_layers - 1, (t, b, width), self.dropout, dtype)
        cfg = (
            self.mode,
            self.input_size,
            self.hidden_size,
            self.num_layers,
            bool(self.bias),
            False,
            bool(self.bidirectional),
            int(self.proj_size),
        )
        out, h_n, c_n = _run(self, cfg, params, lstm, x, h0, c0, lengths, masks, reg, layer_masks)
        if packed:
            out = PackedSequence(out[t_idx, b_idx], batch_sizes, sorted_indices, unsorted_indices)
        else:
            if bf:
                out = out.transpose(0, 1)
            if unbatched:
                out = out.squeeze(0 if bf else 1)
        if unbatched:
            h_n = h_n.squeeze(1)
            c_n = c_n.squeeze(1) if c_n is not None else None
        if lstm:
            return out, (h_n, c_n)
        return out, h_n


class LSTM(_RecurRNNBase, nn.LSTM):
    """``torch.nn.LSTM`` computed by recur (same arguments, parameters and results)."""


class GRU(_RecurRNNBase, nn.GRU):
    """``torch.nn.GRU`` computed by recur (same arguments, parameters and results)."""


class RNN(_RecurRNNBase, nn.RNN):
    """``torch.nn.RNN`` computed by recur (same arguments, parameters and results)."""


class _RecurCellBase:
    """forward() of nn.RNNCell/nn.LSTMCell/nn.GRUCell on recur: one step of a one-layer stack."""

    _recur_mode = None

    def forward(self, input, hx=None):  # noqa: A002
        name = type(self).__name__
        mode = self._recur_mode
        if mode is None:
            mode = "RNN_RELU" if self.nonlinearity == "relu" else "RNN_TANH"
            if self.nonlinearity not in ("tanh", "relu"):
                raise ValueError(f"Unknown nonlinearity: {self.nonlinearity}")
        lstm = mode == "LSTM"
        names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if self.bias else [])
        params = [getattr(self, n) for n in names]
        for n, p in zip(names, params):
            _check(p, f"{name}.{n}")
        dtype = params[0].dtype
        _check(input, "input", dtype)
        if input.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        h0 = c0 = None
        if hx is not None:
            if lstm:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError(f"{name}: hx must be a tuple (h_0, c_0)")
                states = [(hx[0], "hx[0]"), (hx[1], "hx[1]")]
            else:
                states = [(hx, "hx")]
            for s, what in states:
                _check(s, what, dtype)
                if s.dim() != input.dim():
                    raise ValueError(
                        f"{name}: Expected {what} to be {input.dim()}D, got {s.dim()}D instead"
                    )
            h0 = states[0][0] if batched else states[0][0].unsqueeze(0)
            h0 = h0.unsqueeze(0)
            if lstm:
                c0 = states[1][0] if batched else states[1][0].unsqueeze(0)
                c0 = c0.unsqueeze(0)
        cfg = (mode, self.input_size, self.hidden_size, 1, bool(self.bias), False, False, 0)
        _, h_n, c_n = _run(self, cfg, params, lstm, x.unsqueeze(0), h0, c0, None, None)
        h = h_n[0] if batched else h_n[0, 0]
        if lstm:
            c = c_n[0] if batched else c_n[0, 0]
            return h, c
        return h


class LSTMCell(_RecurCellBase, nn.LSTMCell):
    """``torch.nn.LSTMCell`` computed by recur."""

    _recur_mode = "LSTM"


class GRUCell(_RecurCellBase, nn.GRUCell):
    """``torch.nn.GRUCell`` computed by recur."""

    _recur_mode = "GRU"


class RNNCell(_RecurCellBase, nn.RNNCell):
    """``torch.nn.RNNCell`` computed by recur."""
