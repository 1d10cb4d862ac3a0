"""Training with recur.torch: dropout, optimizers and parameter updates, dtypes, errors."""

import pytest
import torch

import recur
import recur.torch as rt


def pair(ref_cls, rec_cls, *args, dtype=torch.float64, seed=0, **kw):
    torch.manual_seed(seed)
    ref = ref_cls(*args, **kw).to(dtype)
    torch.manual_seed(seed)
    rec = rec_cls(*args, **kw).to(dtype)
    return ref, rec


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_dropout_draws_what_torch_draws(kind, packed):
    """In train() mode the masks come from torch's generator in torch's order: the same seed
    gives torch.nn's outputs and gradients exactly."""
    ref_cls, rec_cls = (torch.nn.LSTM, rt.LSTM) if kind == "lstm" else (torch.nn.GRU, rt.GRU)
    ref, rec = pair(ref_cls, rec_cls, 3, 6, num_layers=3, dropout=0.4, bidirectional=True)
    x = torch.randn(7, 4, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([7, 3, 5, 1])

    def run(m, seed):
        torch.manual_seed(seed)
        inp = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False) if packed else x
        out, _ = m(inp)
        out = out.data if packed else out
        return out, torch.autograd.grad(out.square().sum(), [x, *m.parameters()])

    (oe, ge), (oa, ga) = run(ref, 11), run(rec, 11)
    torch.testing.assert_close(oa, oe, atol=1e-12, rtol=1e-10)
    for a, e in zip(ga, ge):
        torch.testing.assert_close(a, e, atol=1e-11, rtol=1e-9)
    # Another seed, other masks; eval() has none.
    assert not torch.allclose(run(rec, 12)[0], oa)
    rec.eval()
    ref.eval()
    torch.testing.assert_close(rec(x)[0], ref(x)[0], atol=1e-12, rtol=0)


def test_dropout_statistics():
    """Between layers, a fraction p of the first layer's outputs are zeroed and the rest
    scaled by 1/(1-p): seen through a second layer that passes its input straight on."""
    p = 0.3
    torch.manual_seed(0)
    m = rt.RNN(1, 200, num_layers=2, dropout=p, nonlinearity="relu", bias=False).double()
    with torch.no_grad():
        m.weight_ih_l0.fill_(1.0)  # layer 0: h = relu(x) = 1 for x = 1, no recurrence
        m.weight_hh_l0.zero_()
        m.weight_ih_l1.copy_(torch.eye(200))  # layer 1: h = relu(dropout(h0))
        m.weight_hh_l1.zero_()
    x = torch.ones(50, 4, 1, dtype=torch.float64)
    with torch.no_grad():
        out, _ = m(x)
    vals = out.flatten()
    zeros = (vals == 0).double().mean().item()
    assert abs(zeros - p) < 0.01  # 40,000 draws: the standard error is 0.0023
    kept = vals[vals != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - p)))
    m.eval()
    with torch.no_grad():
        assert torch.equal(m(x)[0], torch.ones_like(out))


def test_training_loop_matches_torch():
    """Adam, clip_grad_norm_, zero_grad and a manual SGD step through .data: the same
    parameters as torch.nn after every step, with inference calls in between."""
    ref, rec = pair(torch.nn.LSTM, rt.LSTM, 3, 5, num_layers=2, batch_first=True)
    lin_e, lin_a = torch.nn.Linear(5, 2).double(), torch.nn.Linear(5, 2).double()
    lin_a.load_state_dict(lin_e.state_dict())
    opt_e = torch.optim.Adam([*ref.parameters(), *lin_e.parameters()], lr=0.05)
    opt_a = torch.optim.Adam([*rec.parameters(), *lin_a.parameters()], lr=0.05)
    g = torch.Generator().manual_seed(0)
    for step in range(6):
        x = torch.randn(4, 6, 3, generator=g, dtype=torch.float64)
        y = torch.randn(4, 6, 2, generator=g, dtype=torch.float64)
        for m, lin, opt in ((ref, lin_e, opt_e), (rec, lin_a, opt_a)):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(lin(m(x)[0]), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 0.5)
            if step % 2:
                opt.step()
            else:
                for p in m.parameters():
                    p.data.add_(p.grad, alpha=-0.1)
        for a, e in zip(rec.parameters(), ref.parameters()):
            torch.testing.assert_close(a, e, atol=1e-10, rtol=1e-8)
        with torch.no_grad():
            torch.testing.assert_close(rec(x)[0], ref(x)[0], atol=1e-10, rtol=1e-8)


def test_inference_cache_sees_every_kind_of_update():
    ref, rec = pair(torch.nn.GRU, rt.GRU, 2, 3)
    x = torch.randn(4, 1, 2, dtype=torch.float64)

    def check():
        with torch.no_grad():
            torch.testing.assert_close(rec(x)[0], ref(x)[0], atol=1e-12, rtol=0)

    check()
    check()  # cached
    for m in (ref, rec):
        with torch.no_grad():
            m.weight_hh_l0.mul_(0.5)  # in place: a new _version
    check()
    new = {k: v * 2 for k, v in ref.state_dict().items()}
    for m in (ref, rec):
        m.load_state_dict(new)
    check()
    for m in (ref, rec):
        m.bias_ih_l0 = torch.nn.Parameter(torch.ones(9, dtype=torch.float64))  # replaced
    check()
    # Weight tying: two modules share a parameter; an update through one is seen by both.
    other = rt.GRU(2, 3).double()
    other.weight_ih_l0 = rec.weight_ih_l0
    with torch.no_grad():
        before = other(x)[0]
        rec.weight_ih_l0.add_(1.0)
        ref.weight_ih_l0.add_(1.0)
    check()
    other_ref = torch.nn.GRU(2, 3).double()
    other_ref.load_state_dict(other.state_dict())
    with torch.no_grad():
        after = other(x)[0]
        torch.testing.assert_close(after, other_ref(x)[0], atol=1e-12, rtol=0)
    assert not torch.allclose(before, after)


def test_float_and_double_conversions():
    torch.manual_seed(0)
    m = rt.LSTM(3, 4)
    x = torch.randn(5, 2, 3)
    assert m(x)[0].dtype == torch.float32
    m.double()
    out = m(x.double())[0]
    assert out.dtype == torch.float64
    out.sum().backward()
    assert m.weight_hh_l0.grad.dtype == torch.float64
    m.float()
    assert m(x)[0].dtype == torch.float32
    with pytest.raises(ValueError, match="float32"):
        m(x.double())


def test_unsupported_inputs_raise_clear_errors():
    m = rt.LSTM(3, 4)
    with pytest.raises(recur.UnsupportedError, match="float32 or float64"):
        m(torch.zeros(2, 1, 3, dtype=torch.float16))
    with pytest.raises(recur.UnsupportedError, match="CPU"):
        m(torch.zeros(2, 1, 3, device="meta"))
    with pytest.raises(recur.UnsupportedError, match="float32 or float64"):
        rt.GRU(3, 4).to(torch.bfloat16)(torch.zeros(2, 1, 3, dtype=torch.bfloat16))
    with pytest.raises(recur.RecurError, match="input_size"):
        m(torch.zeros(2, 1, 5))
    with pytest.raises(recur.RecurError, match="h0"):
        m(torch.zeros(2, 1, 3), (torch.zeros(1, 2, 4), torch.zeros(1, 1, 4)))
    with pytest.raises(ValueError, match="2D or 3D"):
        m(torch.zeros(2, 1, 1, 3))
    with pytest.raises(RuntimeError, match="2-D"):
        m(torch.zeros(2, 3), (torch.zeros(1, 1, 4), torch.zeros(1, 1, 4)))
    with pytest.raises(recur.RecurError, match="sequence length is 0"):
        m(torch.zeros(0, 1, 3))
    if torch.cuda.is_available():
        with pytest.raises(recur.UnsupportedError, match="CPU"):
            m.cuda()(torch.zeros(2, 1, 3, device="cuda"))


def test_threads_setting_gives_the_same_results():
    torch.manual_seed(0)
    m = rt.LSTM(16, 32, num_layers=2).double()
    x = torch.randn(20, 16, 16, dtype=torch.float64)
    n = recur.get_num_threads()
    try:
        recur.set_num_threads(1)
        a = m(x)[0]
        recur.set_num_threads(2)
        b = m(x)[0]
    finally:
        recur.set_num_threads(0)
    assert recur.get_num_threads() == n
    torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
