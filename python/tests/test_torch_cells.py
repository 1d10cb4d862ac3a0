"""recur.torch.LSTMCell/GRUCell/RNNCell against torch.nn in float64."""

import pytest
import torch

import recur.torch as rt

CELLS = {
    "lstm": (torch.nn.LSTMCell, rt.LSTMCell, {}),
    "gru": (torch.nn.GRUCell, rt.GRUCell, {}),
    "rnn_tanh": (torch.nn.RNNCell, rt.RNNCell, {}),
    "rnn_relu": (torch.nn.RNNCell, rt.RNNCell, {"nonlinearity": "relu"}),
}
CASES = [(k, bias, batched, with_hx) for k in CELLS for bias in (True, False) for batched in (True, False) for with_hx in (True, False)]


@pytest.mark.parametrize("kind,bias,batched,with_hx", CASES)
def test_cell_matches_torch(kind, bias, batched, with_hx):
    ref_cls, rec_cls, extra = CELLS[kind]
    torch.manual_seed(3)
    ref = ref_cls(4, 5, bias=bias, **extra).double()
    torch.manual_seed(3)
    rec = rec_cls(4, 5, bias=bias, **extra).double()
    assert list(rec.state_dict()) == list(ref.state_dict())
    for a, e in zip(rec.parameters(), ref.parameters()):
        assert torch.equal(a, e)
    b = (3,) if batched else ()
    x = torch.randn(*b, 4, dtype=torch.float64, requires_grad=True)
    hx = None
    leaves = [x]
    if with_hx:
        h = torch.randn(*b, 5, dtype=torch.float64, requires_grad=True)
        if kind == "lstm":
            c = torch.randn(*b, 5, dtype=torch.float64, requires_grad=True)
            hx, leaves = (h, c), [x, h, c]
        else:
            hx, leaves = h, [x, h]

    def run(m):
        out = m(x, hx)
        outs = list(out) if isinstance(out, tuple) else [out]
        g = torch.Generator().manual_seed(0)
        loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs)
        return outs, torch.autograd.grad(loss, leaves + list(m.parameters()))

    (want, gwant), (got, ggot) = run(ref), run(rec)
    for a, e in zip(got, want):
        assert a.shape == e.shape
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-10)
    for a, e in zip(ggot, gwant):
        torch.testing.assert_close(a, e, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_gradcheck(kind):
    _, rec_cls, extra = CELLS[kind]
    rec = rec_cls(3, 2, **extra).double()
    names = [n for n, _ in rec.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in rec.parameters()]
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    states = [h, c] if kind == "lstm" else [h]

    def fn(x, *rest):
        st, ps = rest[: len(states)], rest[len(states) :]
        hx = tuple(st) if kind == "lstm" else st[0]
        out = torch.func.functional_call(rec, dict(zip(names, ps)), (x, hx))
        return out if isinstance(out, tuple) else (out,)

    assert torch.autograd.gradcheck(fn, (x, *states, *params), eps=1e-6, atol=1e-7)


def test_cell_errors():
    cell = rt.LSTMCell(3, 4)
    with pytest.raises(ValueError, match="1D or 2D"):
        cell(torch.zeros(2, 2, 3))
    with pytest.raises(ValueError):
        cell(torch.zeros(2, 4))
    with pytest.raises(ValueError):
        cell(torch.zeros(2, 3), (torch.zeros(3, 4), torch.zeros(3, 4)))
