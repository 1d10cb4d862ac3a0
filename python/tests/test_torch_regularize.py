"""recur.torch's regularizers (layer_norm, input_dropout, recurrent_dropout, zoneout,
weight_drop, locked_dropout) against a plain step-by-step PyTorch implementation of the same
cells written here (float64, outputs and every gradient through torch autograd), fed the masks
recur drew; eval-mode determinism, train-mode reproducibility from torch's seed, the state_dict,
and the errors."""

import copy
import io

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import recur.torch as rt

KINDS = {
    "lstm": (rt.LSTM, torch.nn.LSTM, {}),
    "gru": (rt.GRU, torch.nn.GRU, {}),
    "rnn_tanh": (rt.RNN, torch.nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (rt.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
}
TOL = dict(rtol=1e-10, atol=1e-11)


def _ln(v, w, b, eps=1e-5):
    mu = v.mean(-1, keepdim=True)
    var = ((v - mu) ** 2).mean(-1, keepdim=True)
    return (v - mu) / torch.sqrt(var + eps) * w + b


def reference(m, x, hx, masks, lengths=None, zoneout_eval=False):
    """The regularized stack, step by step in plain torch ops. `x` (T, B, I) time-major;
    `masks` as `m.sample_masks` returns them (None: no masks); `zoneout_eval`: zoneout by
    its expectation p (eval mode)."""
    t_len, b = x.shape[0], x.shape[1]
    hsz, nl = m.hidden_size, m.num_layers
    lstm = m.mode == "LSTM"
    dt = x.dtype
    if hx is None:
        h0 = torch.zeros(nl, b, hsz, dtype=dt)
        c0 = torch.zeros(nl, b, hsz, dtype=dt)
    elif lstm:
        h0, c0 = hx
    else:
        h0, c0 = hx, None
    if lengths is None:
        alive = torch.ones(t_len, b, 1, dtype=dt)
    else:
        alive = (torch.arange(t_len)[:, None] < torch.tensor(lengths)[None, :]).to(dt)[..., None]
    inp = x
    h_n, c_n = [], []
    for k in range(nl):
        mk = masks[k] if masks is not None else {}
        w_ih = getattr(m, f"weight_ih_l{k}")
        w_hh = getattr(m, f"weight_hh_l{k}")
        b_ih = getattr(m, f"bias_ih_l{k}") if m.bias else None
        b_hh = getattr(m, f"bias_hh_l{k}") if m.bias else None
        if "weight_hh" in mk:
            w_hh = w_hh * mk["weight_hh"]
        xin = inp * mk["input"] if "input" in mk else inp
        h = h0[k]
        c = c0[k] if lstm else None
        ys = []
        for t in range(t_len):
            hd = h * mk["recurrent"] if "recurrent" in mk else h
            a = xin[t] @ w_ih.T
            bb = hd @ w_hh.T
            if m.layer_norm:
                a = _ln(a, getattr(m, f"ln_ih_weight_l{k}"), getattr(m, f"ln_ih_bias_l{k}"))
                bb = _ln(bb, getattr(m, f"ln_hh_weight_l{k}"), getattr(m, f"ln_hh_bias_l{k}"))
            if b_ih is not None:
                a = a + b_ih
                bb = bb + b_hh
            if m.mode == "LSTM":
                i, f, g, o = (a + bb).chunk(4, 1)
                i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
                cnew = f * c + i * g
                if m.layer_norm:
                    cnew = _ln(cnew, getattr(m, f"ln_c_weight_l{k}"), getattr(m, f"ln_c_bias_l{k}"))
                hnew = o * torch.tanh(cnew)
            elif m.mode == "GRU":
                ar, az, an = a.chunk(3, 1)
                br, bz, bn = bb.chunk(3, 1)
                r = torch.sigmoid(ar + br)
                z = torch.sigmoid(az + bz)
                n = torch.tanh(an + r * bn)
                hnew = (1 - z) * n + z * h
            else:
                pre = a + bb
                hnew = torch.tanh(pre) if m.mode == "RNN_TANH" else torch.relu(pre)
            if "zoneout_h" in mk:
                d = mk["zoneout_h"][t]
                hnew = d * h + (1 - d) * hnew
            elif zoneout_eval and m.zoneout > 0:
                hnew = m.zoneout * h + (1 - m.zoneout) * hnew
            if lstm:
                if "zoneout_c" in mk:
                    d = mk["zoneout_c"][t]
                    cnew = d * c + (1 - d) * cnew
                elif zoneout_eval and m.zoneout > 0:
                    cnew = m.zoneout * c + (1 - m.zoneout) * cnew
                c = alive[t] * cnew + (1 - alive[t]) * c
            h = alive[t] * hnew + (1 - alive[t]) * h
            ys.append(h * alive[t])
        y = torch.stack(ys)
        h_n.append(h)
        if lstm:
            c_n.append(c)
        if "output" in mk:
            y = y * mk["output"]
        inp = y
    return inp, torch.stack(h_n), (torch.stack(c_n) if lstm else None)


def make(kind, seed=0, **kw):
    cls = KINDS[kind][0]
    torch.manual_seed(seed)
    m = cls(**KINDS[kind][2], **kw).double()
    if getattr(m, "layer_norm", False):
        with torch.no_grad():  # gains and biases away from 1 and 0, so that they matter
            for n in m._ln_names():
                getattr(m, n).normal_(1.0 if "_weight_" in n else 0.0, 0.5)
    return m


def inputs(m, t, b, seed=1, hx=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(t, b, m.input_size, dtype=torch.float64, generator=g, requires_grad=True)
    if not hx:
        return x, None
    shape = (m.num_layers, b, m.hidden_size)
    h0 = torch.randn(shape, dtype=torch.float64, generator=g, requires_grad=True)
    if m.mode == "LSTM":
        return x, (h0, torch.randn(shape, dtype=torch.float64, generator=g, requires_grad=True))
    return x, h0


def flat_hx(hx):
    if hx is None:
        return []
    return list(hx) if isinstance(hx, tuple) else [hx]


def loss_of(out, h_n, c_n, seed=2):
    g = torch.Generator().manual_seed(seed)
    loss = (out * torch.randn(out.shape, dtype=out.dtype, generator=g)).sum()
    loss = loss + (h_n * torch.randn(h_n.shape, dtype=h_n.dtype, generator=g)).sum()
    if c_n is not None:
        loss = loss + (c_n * torch.randn(c_n.shape, dtype=c_n.dtype, generator=g)).sum()
    return loss


def run_recur(m, x, hx):
    out, st = m(x, hx)
    h_n, c_n = st if m.mode == "LSTM" else (st, None)
    return out, h_n, c_n


def check_against_reference(m, x, hx, masks, lengths=None, zoneout_eval=False, rec=None):
    """recur's outputs and gradients (x, hx, every parameter) equal the reference's."""
    wrt = [x, *flat_hx(hx), *m.parameters()]
    out, h_n, c_n = rec if rec is not None else run_recur(m, x, hx)
    g_rec = torch.autograd.grad(loss_of(out, h_n, c_n), wrt)
    r_out, r_hn, r_cn = reference(m, x, hx, masks, lengths, zoneout_eval)
    g_ref = torch.autograd.grad(loss_of(r_out, r_hn, r_cn), wrt)
    torch.testing.assert_close(out, r_out, **TOL)
    torch.testing.assert_close(h_n, r_hn, **TOL)
    if c_n is not None:
        torch.testing.assert_close(c_n, r_cn, **TOL)
    names = ["input"] + [f"hx[{i}]" for i in range(len(flat_hx(hx)))]
    names += [n for n, _ in m.named_parameters()]
    for n, a, b in zip(names, g_rec, g_ref):
        torch.testing.assert_close(a, b, **TOL, msg=lambda s, n=n: f"grad of {n}: {s}")


# (1) layer norm, eval and train mode


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("train", [False, True])
def test_layer_norm_matches_reference(kind, train):
    m = make(kind, input_size=3, hidden_size=5, num_layers=2, layer_norm=True)
    m.train(train)
    x, hx = inputs(m, 6, 4)
    check_against_reference(m, x, hx, None)


def test_layer_norm_without_bias_and_zero_state():
    m = make("lstm", input_size=4, hidden_size=3, num_layers=1, bias=False, layer_norm=True)
    x, _ = inputs(m, 5, 2, hx=False)
    check_against_reference(m, x, None, None)


# (2) dropout, zoneout, weight drop with recur's masks


ALL = dict(input_dropout=0.2, recurrent_dropout=0.3, zoneout=0.25, weight_drop=0.4, dropout=0.3)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("locked", [False, True])
@pytest.mark.parametrize("layer_norm", [False, True])
def test_masks_match_reference(kind, locked, layer_norm):
    m = make(
        kind, input_size=3, hidden_size=4, num_layers=2, layer_norm=layer_norm,
        locked_dropout=locked, **ALL,
    )
    m.train()
    x, hx = inputs(m, 7, 3)
    torch.manual_seed(123)
    rec = run_recur(m, x, hx)
    torch.manual_seed(123)
    masks = m.sample_masks(7, 3)
    # every mask is there and not trivial
    want = {"input", "recurrent", "weight_hh", "zoneout_h"} | ({"zoneout_c"} if kind == "lstm" else set())
    assert set(masks[1]) == want and set(masks[0]) == want | {"output"}
    assert masks[0]["output"].shape == ((3, 4) if locked else (7, 3, 4))
    for key in ("weight_hh", "zoneout_h"):  # the large ones: some units dropped, some kept
        v = torch.cat([d[key].flatten() for d in masks])
        assert (v == 0).any() and (v != 0).any()
    check_against_reference(m, x, hx, masks, rec=rec)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize(
    "opt",
    [
        dict(input_dropout=0.5),
        dict(recurrent_dropout=0.5),
        dict(zoneout=0.5),
        dict(weight_drop=0.5),
        dict(locked_dropout=True, dropout=0.5),
    ],
    ids=lambda o: next(iter(o)),
)
def test_each_option_alone(kind, opt):
    m = make(kind, input_size=2, hidden_size=3, num_layers=2, **opt)
    m.train()
    x, hx = inputs(m, 5, 3)
    torch.manual_seed(7)
    rec = run_recur(m, x, hx)
    torch.manual_seed(7)
    masks = m.sample_masks(5, 3)
    check_against_reference(m, x, hx, masks, rec=rec)


def test_packed_ragged_batch_first_with_every_mask():
    m = make("lstm", input_size=3, hidden_size=4, num_layers=2, batch_first=True,
             layer_norm=True, **ALL)
    m.train()
    lengths = [3, 6, 1, 5]
    t, b = max(lengths), len(lengths)
    g = torch.Generator().manual_seed(5)
    xb = torch.randn(b, t, 3, dtype=torch.float64, generator=g, requires_grad=True)
    packed = pack_padded_sequence(xb, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    torch.manual_seed(11)
    out_p, (h_n, c_n) = m(packed)
    out, _ = pad_packed_sequence(out_p, batch_first=True, total_length=t)
    torch.manual_seed(11)
    masks = m.sample_masks(t, b)
    wrt = [xb, *m.parameters()]
    g_rec = torch.autograd.grad(loss_of(out, h_n, c_n), wrt)
    r_out, r_hn, r_cn = reference(m, xb.transpose(0, 1), None, masks, lengths)
    r_out = r_out.transpose(0, 1)
    g_ref = torch.autograd.grad(loss_of(r_out, r_hn, r_cn), wrt)
    torch.testing.assert_close(out, r_out, **TOL)
    torch.testing.assert_close(h_n, r_hn, **TOL)
    torch.testing.assert_close(c_n, r_cn, **TOL)
    for a, r in zip(g_rec, g_ref):
        torch.testing.assert_close(a, r, **TOL)


def test_unbatched_input():
    m = make("gru", input_size=3, hidden_size=4, num_layers=2, **ALL)
    m.train()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 3, dtype=torch.float64, generator=g)
    torch.manual_seed(4)
    out, h_n = m(x)
    torch.manual_seed(4)
    masks = m.sample_masks(5, 1)
    r_out, r_hn, _ = reference(m, x.unsqueeze(1), None, masks)
    torch.testing.assert_close(out, r_out.squeeze(1), **TOL)
    torch.testing.assert_close(h_n, r_hn.squeeze(1), **TOL)


def test_mask_frequencies():
    m = make("lstm", input_size=50, hidden_size=40, num_layers=2, dropout=0.5,
             input_dropout=0.2, recurrent_dropout=0.3, zoneout=0.1, weight_drop=0.4)
    torch.manual_seed(0)
    masks = m.sample_masks(20, 30)
    for key, p, scale in [("input", 0.2, 1 / 0.8), ("recurrent", 0.3, 1 / 0.7),
                          ("weight_hh", 0.4, 1 / 0.6), ("output", 0.5, 2.0)]:
        v = masks[0][key]
        assert set(v.unique().tolist()) <= {0.0, scale}
        assert abs((v == 0).double().mean().item() - p) < 0.05, key
    for key in ("zoneout_h", "zoneout_c"):
        v = masks[0][key]
        assert set(v.unique().tolist()) <= {0.0, 1.0}
        assert abs(v.mean().item() - 0.1) < 0.02


# (3) evaluation, reproducibility, state_dict, plain modules


@pytest.mark.parametrize("kind", list(KINDS))
def test_eval_zoneout_is_the_expectation(kind):
    m = make(kind, input_size=3, hidden_size=4, num_layers=2, layer_norm=True, **ALL)
    m.eval()
    x, hx = inputs(m, 6, 3)
    check_against_reference(m, x, hx, None, zoneout_eval=True)


def test_eval_is_deterministic_and_train_is_not():
    m = make("lstm", input_size=3, hidden_size=4, num_layers=2, **ALL)
    x, hx = inputs(m, 6, 3)
    m.eval()
    torch.manual_seed(1)
    a = m(x, hx)[0]
    torch.manual_seed(2)
    b = m(x, hx)[0]
    assert torch.equal(a, b)
    with torch.no_grad():
        assert torch.equal(m(x, hx)[0], a)
    m.train()
    torch.manual_seed(1)
    t1 = m(x, hx)[0]
    torch.manual_seed(1)
    t2 = m(x, hx)[0]
    torch.manual_seed(2)
    t3 = m(x, hx)[0]
    assert torch.equal(t1, t2)
    assert not torch.equal(t1, t3)
    assert not torch.equal(t1, a)
    # under no_grad, train() mode still draws the same masks and gives the same output
    torch.manual_seed(1)
    with torch.no_grad():
        assert torch.equal(m(x, hx)[0], t1)


def test_eval_without_layer_norm_or_zoneout_is_torch_nn():
    kw = dict(input_size=3, hidden_size=4, num_layers=2)
    m = make("lstm", **kw, input_dropout=0.3, recurrent_dropout=0.3, weight_drop=0.5,
             locked_dropout=True, dropout=0.2)
    ref = torch.nn.LSTM(**kw, dropout=0.2).double()
    ref.load_state_dict(m.state_dict())
    m.eval()
    ref.eval()
    x, hx = inputs(m, 6, 3)
    a, (ha, ca) = m(x, hx)
    b, (hb, cb) = ref(x, hx)
    torch.testing.assert_close(a, b, **TOL)
    torch.testing.assert_close(ha, hb, **TOL)
    torch.testing.assert_close(ca, cb, **TOL)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_layer_norm_parameters_and_state_dict(kind):
    m = make(kind, input_size=3, hidden_size=4, num_layers=2, layer_norm=True, zoneout=0.1)
    torch_keys = list(KINDS[kind][1](3, 4, 2).state_dict())
    g = {"lstm": 4, "gru": 3}.get(kind, 1)
    ln = []
    for k in range(2):
        ln += [f"ln_ih_weight_l{k}", f"ln_ih_bias_l{k}", f"ln_hh_weight_l{k}", f"ln_hh_bias_l{k}"]
        if kind == "lstm":
            ln += [f"ln_c_weight_l{k}", f"ln_c_bias_l{k}"]
    sd = m.state_dict()
    assert list(sd) == torch_keys + ln
    for n in ln:
        assert sd[n].shape == ((4,) if "_c_" in n else (g * 4,))
    # initial values: gains 1, biases 0 (also after reset_parameters)
    fresh = KINDS[kind][0](3, 4, 2, layer_norm=True, **KINDS[kind][2])
    fresh.reset_parameters()
    for n in ln:
        assert torch.equal(getattr(fresh, n), torch.full_like(getattr(fresh, n), 1.0 if "weight" in n else 0.0))
    # round trip into a fresh module, through torch.save, deepcopy
    other = KINDS[kind][0](3, 4, 2, layer_norm=True, zoneout=0.1, **KINDS[kind][2]).double()
    other.load_state_dict(sd)
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    x, hx = inputs(m, 5, 2)
    m.eval()
    want = m(x, hx)[0]
    for mm in (other, loaded, copy.deepcopy(m)):
        mm.eval()
        assert torch.equal(mm(x, hx)[0], want)
    # the layer norm learns: an optimizer step moves its parameters
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    before = m.ln_hh_weight_l1.detach().clone()
    run_recur(m, x, hx)[0].pow(2).sum().backward()
    opt.step()
    assert not torch.equal(m.ln_hh_weight_l1, before)


def test_without_layer_norm_state_dict_is_torch_nn():
    kw = dict(input_size=3, hidden_size=4, num_layers=2)
    for m in (rt.LSTM(**kw), rt.LSTM(**kw, zoneout=0.2, weight_drop=0.5, locked_dropout=True)):
        ref = torch.nn.LSTM(**kw)
        assert [n for n, _ in m.named_parameters()] == [n for n, _ in ref.named_parameters()]
        assert list(m.state_dict()) == list(ref.state_dict())
        ref.load_state_dict(m.state_dict())  # strict
    # a plain module is still torch.nn's, including dropout between layers in train() mode
    torch.manual_seed(0)
    plain = rt.LSTM(**kw, dropout=0.4).double()
    ref = torch.nn.LSTM(**kw, dropout=0.4).double()
    ref.load_state_dict(plain.state_dict())
    assert plain.sample_masks  # the method exists, it is just not used
    x, hx = inputs(plain, 6, 3)
    torch.manual_seed(9)
    a = plain(x, hx)[0]
    torch.manual_seed(9)
    b = ref(x, hx)[0]
    torch.testing.assert_close(a, b, **TOL)
    assert "layer_norm" not in repr(plain)


def test_repr_names_the_regularizers():
    m = rt.GRU(3, 4, 2, layer_norm=True, zoneout=0.1, locked_dropout=True, dropout=0.2)
    r = repr(m)
    assert "zoneout=0.1" in r and "layer_norm=True" in r and "locked_dropout=True" in r


def test_float32_follows_float64():
    m = make("lstm", input_size=3, hidden_size=4, num_layers=2, layer_norm=True, **ALL)
    m32 = copy.deepcopy(m).float()
    x, hx = inputs(m, 6, 3)
    torch.manual_seed(3)
    a = m(x, hx)[0]
    torch.manual_seed(3)
    b = m32(x.float(), tuple(h.float() for h in hx))[0]
    torch.testing.assert_close(b.double(), a, rtol=1e-4, atol=1e-5)


# (4) errors


@pytest.mark.parametrize(
    "kw,exc,text",
    [
        (dict(zoneout=1.0), ValueError, "zoneout must be a probability in [0, 1), got 1.0"),
        (dict(input_dropout=-0.1), ValueError, "input_dropout must be a probability"),
        (dict(weight_drop=1.5), ValueError, "weight_drop must be a probability"),
        (dict(recurrent_dropout="0.1"), TypeError, "recurrent_dropout must be a number"),
        (dict(layer_norm=1), TypeError, "layer_norm must be True or False"),
        (dict(locked_dropout="yes"), TypeError, "locked_dropout must be True or False"),
        (dict(layer_norm=True, proj_size=2), ValueError, "layer_norm need a unidirectional layer without projection"),
        (dict(zoneout=0.1, bidirectional=True), ValueError, "zoneout need a unidirectional layer"),
    ],
)
def test_bad_values(kw, exc, text):
    with pytest.raises(exc) as e:
        rt.LSTM(3, 4, **kw)
    assert text in str(e.value)


def test_bad_values_other_kinds():
    with pytest.raises(ValueError, match="zoneout must be a probability"):
        rt.GRU(3, 4, zoneout=1)
    with pytest.raises(ValueError, match="bidirectional=True"):
        rt.RNN(3, 4, recurrent_dropout=0.2, bidirectional=True)


def test_parameter_gradients_only():
    """An input that needs no gradient and no hx: recur's backward for the parameters only."""
    m = make("gru", input_size=3, hidden_size=4, num_layers=2, layer_norm=True, **ALL)
    m.train()
    x, _ = inputs(m, 6, 3, hx=False)
    x = x.detach()
    torch.manual_seed(5)
    out, h_n = m(x)
    torch.manual_seed(5)
    masks = m.sample_masks(6, 3)
    params = list(m.parameters())
    g_rec = torch.autograd.grad(loss_of(out, h_n, None), params)
    r_out, r_hn, _ = reference(m, x, None, masks)
    g_ref = torch.autograd.grad(loss_of(r_out, r_hn, None), params)
    torch.testing.assert_close(out, r_out, **TOL)
    for a, b in zip(g_rec, g_ref):
        torch.testing.assert_close(a, b, **TOL)


def test_native_masks_are_checked():
    from recur import RecurError, _native

    m = make("lstm", input_size=3, hidden_size=4, num_layers=1, zoneout=0.1)
    params = [p.detach().numpy() for p in m.parameters()]
    nat = _native.Rnn("LSTM", 3, 4, 1, True, False, False, 0, params, "float64", zoneout=0.1)
    assert nat.config()["zoneout"] == 0.1
    x = torch.randn(5, 2, 3, dtype=torch.float64).numpy()
    z = torch.ones(5, 2, 4, dtype=torch.float64).numpy()
    # all-ones zoneout masks keep the initial (zero) state
    out, h_n, c_n, _ = nat.forward(x, layer_masks=[{"zoneout_h": z, "zoneout_c": z}])
    assert (out == 0).all() and (c_n == 0).all()
    with pytest.raises(RecurError, match="unknown mask 'zonout_h'"):
        nat.forward(x, layer_masks=[{"zonout_h": z}])
    with pytest.raises(RecurError, match="zoneout_h mask of layer 0: expected 40 values, got 20"):
        nat.forward(x, layer_masks=[{"zoneout_h": z[:, :1]}])
    with pytest.raises(RecurError, match="one per layer"):
        nat.forward(x, layer_masks=[{}, {}])
    with pytest.raises(RecurError, match="zoneout_h must be a probability"):
        _native.Rnn("LSTM", 3, 4, 1, True, False, False, 0, params, "float64", zoneout=1.0)
    with pytest.raises(RecurError, match="expected 10 parameter arrays"):
        _native.Rnn("LSTM", 3, 4, 1, True, False, False, 0, params, "float64", layer_norm=True)


def test_weight_drop_is_awd_lstm_weight_drop():
    """weight_drop alone draws what AWD-LSTM's WeightDrop draws after the same seed
    (F.dropout of each layer's raw weight_hh, layer by layer): against torch.nn.LSTM with
    those dropped weights."""
    kw = dict(input_size=3, hidden_size=5, num_layers=2)
    m = make("lstm", **kw, weight_drop=0.5)
    ref = torch.nn.LSTM(**kw).double()
    ref.load_state_dict(m.state_dict())
    x, hx = inputs(m, 6, 3)
    torch.manual_seed(21)
    out, (h_n, c_n) = m(x, hx)
    torch.manual_seed(21)
    weights = dict(ref.named_parameters())
    for k in range(2):
        w = weights[f"weight_hh_l{k}"]
        weights[f"weight_hh_l{k}"] = torch.nn.functional.dropout(w, 0.5, training=True)
    r_out, (r_hn, r_cn) = torch.func.functional_call(ref, weights, (x, hx))
    torch.testing.assert_close(out, r_out, **TOL)
    torch.testing.assert_close(h_n, r_hn, **TOL)
    torch.testing.assert_close(c_n, r_cn, **TOL)
    wrt = [x, *hx, *m.parameters()]
    g = torch.autograd.grad(loss_of(out, h_n, c_n), wrt)
    r_wrt = [x, *hx, *ref.parameters()]
    r_g = torch.autograd.grad(loss_of(r_out, r_hn, r_cn), r_wrt)
    for a, b in zip(g, r_g):
        torch.testing.assert_close(a, b, **TOL)
