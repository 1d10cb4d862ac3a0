"""recur.torch.LSTM/GRU/RNN against torch.nn in float64 on random configurations: outputs,
final states and every gradient (torch's own and torch.autograd.gradcheck), padded, unbatched
and packed inputs."""

import random

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pack_sequence, pad_packed_sequence

import recur.torch as rt

KINDS = {
    "lstm": (torch.nn.LSTM, rt.LSTM, {}),
    "gru": (torch.nn.GRU, rt.GRU, {}),
    "rnn_tanh": (torch.nn.RNN, rt.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (torch.nn.RNN, rt.RNN, {"nonlinearity": "relu"}),
}


def random_config(rng, kind):
    cfg = dict(
        input_size=rng.randint(1, 6),
        hidden_size=rng.randint(1, 7),
        num_layers=rng.randint(1, 3),
        bias=rng.random() < 0.8,
        batch_first=rng.random() < 0.5,
        bidirectional=rng.random() < 0.5,
    )
    if kind == "lstm" and rng.random() < 0.4 and cfg["hidden_size"] > 1:
        cfg["proj_size"] = rng.randint(1, cfg["hidden_size"] - 1)
    cfg.update(KINDS[kind][2])
    return cfg


def pair(kind, cfg, dtype=torch.float64, seed=0):
    """The torch module and the recur module, both from the same seed (the same weights)."""
    ref_cls, rec_cls, _ = KINDS[kind]
    torch.manual_seed(seed)
    ref = ref_cls(**cfg).to(dtype)
    torch.manual_seed(seed)
    rec = rec_cls(**cfg).to(dtype)
    return ref, rec


def state_shapes(cfg, b):
    d = 2 if cfg.get("bidirectional") else 1
    h = cfg["hidden_size"]
    hout = cfg.get("proj_size", 0) or h
    ld = cfg.get("num_layers", 1) * d
    return (ld, b, hout), (ld, b, h)


def make_hx(kind, cfg, b, unbatched, dtype=torch.float64):
    sh, sc = state_shapes(cfg, b)
    if unbatched:
        sh, sc = (sh[0], sh[2]), (sc[0], sc[2])
    h0 = torch.randn(sh, dtype=dtype, requires_grad=True)
    if kind == "lstm":
        return (h0, torch.randn(sc, dtype=dtype, requires_grad=True))
    return h0


def flat(out, hx):
    """The tensors of a module's result, in order."""
    if hasattr(out, "batch_sizes"):
        out = out.data
    return [out] + (list(hx) if isinstance(hx, tuple) else [hx])


def loss_and_grads(module, x, hx, leaves, seed):
    out, h = module(x, hx)
    ts = flat(out, h)
    g = torch.Generator().manual_seed(seed)
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum() for t in ts)
    grads = torch.autograd.grad(loss, leaves + list(module.parameters()))
    return ts, grads


CASES = [(kind, i) for kind in KINDS for i in range(8)]


@pytest.mark.parametrize("kind,i", CASES, ids=[f"{k}-{i}" for k, i in CASES])
def test_matches_torch_on_padded_and_unbatched_input(kind, i):
    rng = random.Random(1000 * i + len(kind))
    cfg = random_config(rng, kind)
    ref, rec = pair(kind, cfg, seed=i)
    unbatched = i % 4 == 3
    t, b = rng.randint(1, 6), rng.randint(1, 4)
    shape = (t, cfg["input_size"]) if unbatched else ((b, t) if cfg["batch_first"] else (t, b)) + (cfg["input_size"],)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    hx = make_hx(kind, cfg, b, unbatched) if i % 2 == 0 else None
    leaves = [x] + ([] if hx is None else (list(hx) if isinstance(hx, tuple) else [hx]))
    want, gwant = loss_and_grads(ref, x, hx, leaves, i)
    got, ggot = loss_and_grads(rec, x, hx, leaves, i)
    for a, e in zip(got, want):
        assert a.shape == e.shape and a.dtype == e.dtype
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-10)
    for a, e in zip(ggot, gwant):
        torch.testing.assert_close(a, e, atol=1e-11, rtol=1e-9)


PACKED = [(kind, i) for kind in KINDS for i in range(4)]


@pytest.mark.parametrize("kind,i", PACKED, ids=[f"{k}-{i}" for k, i in PACKED])
def test_matches_torch_on_packed_input(kind, i):
    rng = random.Random(77 + i)
    cfg = random_config(rng, kind)
    ref, rec = pair(kind, cfg, seed=i)
    b = rng.randint(1, 5)
    lens = [rng.randint(1, 6) for _ in range(b)]
    enforce_sorted = i % 2 == 1
    if enforce_sorted:
        lens.sort(reverse=True)
    seqs = [torch.randn(n, cfg["input_size"], dtype=torch.float64, requires_grad=True) for n in lens]

    def x():
        return pack_sequence(seqs, enforce_sorted=enforce_sorted)

    hx = make_hx(kind, cfg, b, False) if i < 2 else None
    leaves = seqs + ([] if hx is None else (list(hx) if isinstance(hx, tuple) else [hx]))
    want, gwant = loss_and_grads(ref, x(), hx, leaves, i)
    out, _ = rec(x(), hx)
    assert isinstance(out, torch.nn.utils.rnn.PackedSequence)
    ref_out, _ = ref(x(), hx)
    assert torch.equal(out.batch_sizes, ref_out.batch_sizes)
    for a, e in ((out.sorted_indices, ref_out.sorted_indices), (out.unsorted_indices, ref_out.unsorted_indices)):
        assert (a is None and e is None) or torch.equal(a, e)
    got, ggot = loss_and_grads(rec, x(), hx, leaves, i)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-10)
    for a, e in zip(ggot, gwant):
        torch.testing.assert_close(a, e, atol=1e-11, rtol=1e-9)
    # Padded back, as scripts do: the same as torch's.
    pa, la = pad_packed_sequence(out, batch_first=cfg["batch_first"])
    pe, le = pad_packed_sequence(ref_out, batch_first=cfg["batch_first"])
    torch.testing.assert_close(pa, pe, atol=1e-12, rtol=1e-10)
    assert torch.equal(la, le)


def test_pack_padded_sequence_batch_first_unsorted():
    cfg = dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True, batch_first=True)
    ref, rec = pair("lstm", cfg)
    x = torch.randn(4, 5, 3, dtype=torch.float64)
    lengths = torch.tensor([2, 5, 1, 3])
    p = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    (oe, (he, ce)), (oa, (ha, ca)) = ref(p), rec(p)
    torch.testing.assert_close(oa.data, oe.data, atol=1e-12, rtol=0)
    torch.testing.assert_close(ha, he, atol=1e-12, rtol=0)
    torch.testing.assert_close(ca, ce, atol=1e-12, rtol=0)


GRADCHECK = [(kind, i) for kind in KINDS for i in range(2)]


@pytest.mark.parametrize("kind,i", GRADCHECK, ids=[f"{k}-{i}" for k, i in GRADCHECK])
def test_gradcheck(kind, i):
    """Finite differences of recur's own forward against its backward, every input and
    parameter (functional_call puts the checked tensors in as the parameters)."""
    rng = random.Random(5 + i)
    cfg = random_config(rng, kind)
    cfg["hidden_size"] = min(cfg["hidden_size"], 3)
    cfg.pop("proj_size", None)
    if kind == "lstm" and i == 1 and cfg["hidden_size"] > 1:
        cfg["proj_size"] = 1
    _, rec = pair(kind, cfg)
    names = [n for n, _ in rec.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in rec.parameters()]
    b, t = 2, 3
    packed = i == 1
    if packed:
        lengths = torch.tensor([3, 2])
    shape = ((b, t) if cfg["batch_first"] else (t, b)) + (cfg["input_size"],)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    hx = make_hx(kind, cfg, b, False)
    states = list(hx) if isinstance(hx, tuple) else [hx]

    def fn(x, *rest):
        st, ps = rest[: len(states)], rest[len(states) :]
        h = tuple(st) if kind == "lstm" else st[0]
        inp = pack_padded_sequence(x, lengths, batch_first=cfg["batch_first"]) if packed else x
        out, hn = torch.func.functional_call(rec, dict(zip(names, ps)), (inp, h))
        if packed:
            out = out.data
        return (out, *(hn if isinstance(hn, tuple) else (hn,)))

    assert torch.autograd.gradcheck(fn, (x, *states, *params), eps=1e-6, atol=1e-7)


def test_only_some_inputs_need_gradients():
    cfg = dict(input_size=3, hidden_size=4, num_layers=2)
    ref, rec = pair("gru", cfg)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    for m in (ref, rec):
        m.weight_ih_l0.requires_grad_(False)
    ge = torch.autograd.grad(ref(x)[0].sum(), [p for p in ref.parameters() if p.requires_grad])
    ga = torch.autograd.grad(rec(x)[0].sum(), [p for p in rec.parameters() if p.requires_grad])
    for a, e in zip(ga, ge):
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-10)
    # Only the initial state.
    h0 = torch.zeros(2, 2, 4, dtype=torch.float64, requires_grad=True)
    for m in (ref, rec):
        for p in m.parameters():
            p.requires_grad_(False)
    (ge,) = torch.autograd.grad(ref(x, h0)[1].sum(), [h0])
    (ga,) = torch.autograd.grad(rec(x, h0)[1].sum(), [h0])
    torch.testing.assert_close(ga, ge, atol=1e-12, rtol=1e-10)


def test_float32_matches_torch():
    cfg = dict(input_size=8, hidden_size=16, num_layers=2, batch_first=True)
    ref, rec = pair("lstm", cfg, dtype=torch.float32)
    x = torch.randn(4, 10, 8)
    (oe, _), (oa, _) = ref(x), rec(x)
    assert oa.dtype == torch.float32
    torch.testing.assert_close(oa, oe, atol=2e-5, rtol=1e-4)
    ge = torch.autograd.grad(oe.square().sum(), list(ref.parameters()))
    ga = torch.autograd.grad(oa.square().sum(), list(rec.parameters()))
    for a, e in zip(ga, ge):
        torch.testing.assert_close(a, e, atol=1e-4, rtol=1e-3)


def test_inference_under_no_grad_and_eval():
    cfg = dict(input_size=3, hidden_size=4)
    ref, rec = pair("lstm", cfg)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        out, (h, c) = rec(x)
    assert not out.requires_grad and out.grad_fn is None
    torch.testing.assert_close(out, ref(x)[0].detach(), atol=1e-12, rtol=0)
    rec.eval()
    out, _ = rec(x)
    assert out.requires_grad  # eval() still records a graph when grad is enabled, as torch


def test_results_have_torch_strides():
    """batch_first outputs are transposed views of a time-major result, as torch's (code that
    follows, e.g. dropout through empty_like, then sees the same memory order)."""
    for kw in (dict(batch_first=True, bidirectional=True), dict(batch_first=False), dict(batch_first=True)):
        cfg = dict(input_size=3, hidden_size=4, **kw)
        ref, rec = pair("gru", cfg)
        for shape in ((2, 5, 3), (5, 3)):
            x = torch.randn(shape, dtype=torch.float64)
            (oe, he), (oa, ha) = ref(x), rec(x)
            assert oa.shape == oe.shape and oa.stride() == oe.stride()
            assert ha.stride() == he.stride()


def test_dropout_after_a_batch_first_layer_draws_as_after_torchs():
    cfg = dict(input_size=3, hidden_size=4, batch_first=True)
    ref, rec = pair("lstm", cfg)
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    outs = []
    for m in (ref, rec):
        torch.manual_seed(0)
        outs.append(torch.nn.functional.dropout(m(x)[0], 0.5))
    torch.testing.assert_close(outs[1], outs[0], atol=1e-12, rtol=0)
