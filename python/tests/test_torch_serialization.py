"""recur.torch modules as torch.nn's: initialisation, state_dicts both ways, repr, copying,
pickling and torch.save/torch.load (also weights_only=True)."""

import copy
import io
import pickle

import pytest
import torch

import recur.torch as rt

CONFIGS = [
    (torch.nn.LSTM, rt.LSTM, (5, 7), dict(num_layers=2, bidirectional=True, proj_size=3)),
    (torch.nn.LSTM, rt.LSTM, (5, 7), dict(bias=False, batch_first=True, dropout=0.2, num_layers=2)),
    (torch.nn.GRU, rt.GRU, (4, 6), dict(num_layers=3)),
    (torch.nn.RNN, rt.RNN, (4, 6), dict(nonlinearity="relu", bidirectional=True)),
    (torch.nn.LSTMCell, rt.LSTMCell, (4, 6), {}),
    (torch.nn.GRUCell, rt.GRUCell, (4, 6), dict(bias=False)),
    (torch.nn.RNNCell, rt.RNNCell, (4, 6), dict(nonlinearity="relu")),
]
IDS = [f"{c[1].__name__}-{i}" for i, c in enumerate(CONFIGS)]


def build(i, seed=0):
    ref_cls, rec_cls, args, kw = CONFIGS[i]
    torch.manual_seed(seed)
    ref = ref_cls(*args, **kw)
    torch.manual_seed(seed)
    rec = rec_cls(*args, **kw)
    return ref, rec


def example_input(rec):
    if isinstance(rec, torch.nn.RNNCellBase):
        return torch.randn(3, rec.input_size)
    return torch.randn(4, 3, rec.input_size)


def first(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("i", range(len(CONFIGS)), ids=IDS)
def test_same_parameters_and_initialisation_as_torch(i):
    ref, rec = build(i)
    assert isinstance(rec, torch.nn.Module) and isinstance(rec, type(ref))
    assert [(n, p.shape) for n, p in rec.named_parameters()] == [
        (n, p.shape) for n, p in ref.named_parameters()
    ]
    for a, e in zip(rec.parameters(), ref.parameters()):
        assert type(a) is torch.nn.Parameter and torch.equal(a, e)
    assert repr(rec) == repr(ref)
    assert rec.extra_repr() == ref.extra_repr()
    if hasattr(ref, "_flat_weights"):
        assert [tuple(w.shape) for w in rec._flat_weights] == [tuple(w.shape) for w in ref._flat_weights]
        assert [[tuple(w.shape) for w in ws] for ws in rec.all_weights] == [
            [tuple(w.shape) for w in ws] for ws in ref.all_weights
        ]
        assert rec._flat_weights_names == ref._flat_weights_names
        assert rec.flatten_parameters() is None


@pytest.mark.parametrize("i", range(len(CONFIGS)), ids=IDS)
def test_state_dict_round_trips_with_strict_loading(i):
    ref, rec = build(i, seed=1)
    ref2, _ = build(i, seed=2)
    # recur -> torch
    ref2.load_state_dict(rec.state_dict(), strict=True)
    # torch -> recur
    _, rec2 = build(i, seed=3)
    rec2.load_state_dict(ref2.state_dict(), strict=True)
    ref2.eval(), rec2.eval()
    x = example_input(rec)
    with torch.no_grad():
        torch.testing.assert_close(first(rec2(x)), first(ref2(x)), atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("i", range(len(CONFIGS)), ids=IDS)
def test_copy_pickle_and_torch_save(i, tmp_path):
    _, rec = build(i)
    rec.eval()
    x = example_input(rec)
    with torch.no_grad():
        want = first(rec(x))  # fills the inference cache, which must not travel
    clones = [copy.deepcopy(rec), pickle.loads(pickle.dumps(rec))]
    buf = io.BytesIO()
    torch.save(rec, buf)
    buf.seek(0)
    clones.append(torch.load(buf, weights_only=False))
    path = tmp_path / "m.pt"
    torch.save(rec, path)
    with torch.serialization.safe_globals([type(rec)]):
        clones.append(torch.load(path, weights_only=True))
    for c in clones:
        assert type(c) is type(rec)
        for a, e in zip(c.parameters(), rec.parameters()):
            assert torch.equal(a, e) and a.data_ptr() != e.data_ptr()
        with torch.no_grad():
            torch.testing.assert_close(first(c(x)), want, atol=0, rtol=0)
    # A copy trains on its own: changing it changes neither the original nor its results.
    c = clones[0]
    with torch.no_grad():
        for p in c.parameters():
            p.add_(0.5)
        assert not torch.allclose(first(c(x)), want)
        torch.testing.assert_close(first(rec(x)), want, atol=0, rtol=0)


def test_add_safe_globals_and_a_whole_model(tmp_path):
    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(10, 4)
            self.rnn = rt.LSTM(4, 5, batch_first=True, bidirectional=True)
            self.out = torch.nn.Linear(10, 3)

        def forward(self, ids):
            return self.out(self.rnn(self.emb(ids))[0])

    torch.manual_seed(0)
    m = Tagger()
    ids = torch.randint(0, 10, (2, 6))
    want = m(ids)
    path = tmp_path / "sd.pt"
    torch.save(m.state_dict(), path)
    m2 = Tagger()
    m2.load_state_dict(torch.load(path, weights_only=True), strict=True)
    torch.testing.assert_close(m2(ids), want, atol=0, rtol=0)
    torch.serialization.add_safe_globals([rt.LSTM])
    p2 = tmp_path / "rnn.pt"
    torch.save(m.rnn, p2)
    rnn = torch.load(p2, weights_only=True)
    torch.testing.assert_close(rnn(m.emb(ids))[0], m.rnn(m.emb(ids))[0], atol=0, rtol=0)
