#!/usr/bin/env python3
"""Generate the PyTorch fixtures of recur's sequence models (recur::seqmodel).

    python3 scripts/gen_seqmodel_fixtures.py

Writes (after deleting whatever was there before):
  tests/fixtures/seqmodel/<case>.safetensors   one training step of a small model
  tests/fixtures/seqmodel/MANIFEST.json        torch version, command, list of cases

Each case is one forward and backward pass of a model made of nn.Embedding (token inputs) or raw
features, an nn.LSTM / nn.GRU over a PackedSequence of ragged lengths, and an nn.Linear head,
per sequence (last hidden state of both directions, or mean over the valid steps) or per step,
with F.cross_entropy (padding ignored) or F.mse_loss. The file format is described in
tests/fixtures/seqmodel/README.md. Everything is deterministic: every case seeds torch from a
CRC of its name, so re-running gives byte-identical files.

If torch is not importable with the interpreter that runs this script, the script re-executes
itself with the venv python printed by scripts/venv.sh.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

sys.path.insert(0, str(ROOT / "scripts"))
import venvpy  # noqa: E402

venvpy.ensure()

import json  # noqa: E402
import platform  # noqa: E402
import zlib  # noqa: E402

import numpy  # noqa: E402
import safetensors  # noqa: E402
import safetensors.torch  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "seqmodel"
COMMAND = "python3 scripts/gen_seqmodel_fixtures.py"
IGNORE = -100


def seed_of(name):
    return zlib.crc32(name.encode("utf-8"))


class SeqModel(nn.Module):
    """The module recur::seqmodel::SeqModel mirrors (dropout off: p = 0)."""

    def __init__(self, cell, inp, vocab, embed, features, hidden, layers, bi, head, pooling, out):
        super().__init__()
        self.inp, self.head_kind, self.pooling = inp, head, pooling
        if inp == "tokens":
            self.embed = nn.Embedding(vocab, embed)
            size = embed
        else:
            size = features
        ctor = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = ctor(size, hidden, num_layers=layers, bidirectional=bi, batch_first=True)
        self.head = nn.Linear(hidden * (2 if bi else 1), out)

    def forward(self, x, lengths):
        if self.inp == "tokens":
            x = self.embed(x)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)
        h_n = state[0] if isinstance(state, tuple) else state
        T = x.shape[1]
        if self.head_kind == "step":
            y, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
            return self.head(y)  # (B, T, out); rows at padding are the bias
        if self.pooling == "last":
            feat = torch.cat([h_n[-2], h_n[-1]], 1) if self.rnn.bidirectional else h_n[-1]
        else:
            y, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
            feat = y.sum(1) / lengths.to(y.dtype).unsqueeze(1)
        return self.head(feat)  # (B, out)


SNIPPET = """model = SeqModel(...)  # see scripts/gen_seqmodel_fixtures.py; loaded from params.*
model = model.double(); out = model(input, lengths)
{loss}
loss.backward()"""

LOSS_TEXT = {
    ("cross_entropy", "sequence"): "loss = F.cross_entropy(out, targets)",
    ("cross_entropy", "step"): "loss = F.cross_entropy(out.reshape(-1, C), targets.reshape(-1), ignore_index=-100)"
                               "  # padding: -100",
    ("mse", "sequence"): "loss = F.mse_loss(out, targets)",
    ("mse", "step"): "mask = positions < lengths; loss = F.mse_loss(out[mask], targets[mask])",
}


def specs():
    # name, cell, input, vocab, embed, features, hidden, layers, bi, head, pooling, loss, out, lengths, T
    return [
        ("classifier_bilstm_l2_last", "lstm", "tokens", 11, 5, 0, 4, 2, True, "sequence", "last",
         "cross_entropy", 3, [6, 3, 1, 5, 6], 6),
        ("tagger_bilstm_step", "lstm", "tokens", 13, 4, 0, 5, 1, True, "step", "",
         "cross_entropy", 6, [7, 2, 5, 7], 7),
        ("regressor_gru_mean", "gru", "features", 0, 0, 3, 4, 1, False, "sequence", "mean",
         "mse", 2, [4, 5, 2, 1], 5),
        ("tagger_bigru_l2_step_mse", "gru", "features", 0, 0, 2, 3, 2, True, "step", "",
         "mse", 2, [3, 5, 4], 5),
    ]


def build(spec):
    (name, cell, inp, V, E, Fe, H, L, bi, head, pooling, loss_kind, O, lengths, T) = spec
    torch.manual_seed(seed_of("seqmodel/" + name))
    model = SeqModel(cell, inp, V, E, Fe, H, L, bi, head, pooling, O)
    B = len(lengths)
    lens = torch.tensor(lengths, dtype=torch.int64)
    valid = torch.arange(T).unsqueeze(0) < lens.unsqueeze(1)  # (B, T)
    t = {}
    if inp == "tokens":
        x = torch.randint(0, V, (B, T))
        x[~valid] = 0
        t["input_ids"] = x.reshape(-1).clone()  # (B*T), i64
        xin = x
    else:
        x = torch.randn(B, T, Fe)
        x[~valid] = 0
        t["input"] = x.clone()  # (B, T, F), f32
        xin = x.double()
    rows = B * T if head == "step" else B
    if loss_kind == "cross_entropy":
        y = torch.randint(0, O, (rows,))
        if head == "step":
            y = y.reshape(B, T)
            y[~valid] = IGNORE
            y[0, 1] = IGNORE  # one valid position that does not count
            y = y.reshape(-1)
        t["targets"] = y.double()  # class ids as f64; -100 = ignored
    else:
        y = torch.randn(rows, O)
        if head == "step":
            y = y.reshape(B, T, O)
            y[~valid] = 0
        t["targets"] = y.float().clone()
    t["lengths"] = lens
    for k, v in model.state_dict().items():
        t["params." + k] = v.detach().float().clone()

    m = model.double()
    for p in m.parameters():
        p.grad = None
    out = m(xin, lens)
    if loss_kind == "cross_entropy":
        if head == "step":
            loss = F.cross_entropy(out.reshape(-1, O), y.reshape(-1), ignore_index=IGNORE)
        else:
            loss = F.cross_entropy(out, y)
    else:
        yt = y.double()
        if head == "step":
            loss = F.mse_loss(out[valid], yt[valid])
        else:
            loss = F.mse_loss(out, yt)
    loss.backward()
    if head == "step":
        out = out.detach().clone()
        out[~valid] = 0  # recur returns zeros at padded positions
    t["expected.loss"] = loss.detach().reshape(1).double()
    t["expected.output"] = out.detach().double()
    for k, p in m.named_parameters():
        t["expected.grad." + k] = p.grad.detach().double().clone()
    meta = {
        "cell": cell,
        "input": inp,
        "vocab_size": str(V),
        "embed_size": str(E),
        "num_features": str(Fe),
        "hidden_size": str(H),
        "num_layers": str(L),
        "bidirectional": "true" if bi else "false",
        "head": head,
        "pooling": pooling,
        "loss": loss_kind,
        "output_size": str(O),
        "batch": str(B),
        "steps": str(T),
        "snippet": SNIPPET.format(loss=LOSS_TEXT[(loss_kind, head)]),
    }
    return name, t, meta


def save_deterministic(tensors, path, metadata):
    """safetensors.torch.save_file with the JSON header re-serialized with sorted keys, so that
    the file's bytes do not depend on hash-map order."""
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    raw = safetensors.torch.save(tensors, metadata=metadata)
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n:])
    back = safetensors.torch.load_file(str(path))
    assert back.keys() == tensors.keys()
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    OUT.mkdir(parents=True, exist_ok=True)
    for p in sorted(OUT.glob("*.safetensors")):
        p.unlink()
    cases = []
    for spec in specs():
        name, t, meta = build(spec)
        path = OUT / f"{name}.safetensors"
        save_deterministic(t, path, meta)
        cases.append({"name": name, "file": path.name, "bytes": path.stat().st_size, "metadata": meta})
    manifest = {
        "generator": "scripts/gen_seqmodel_fixtures.py",
        "command": COMMAND,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
        "format": "tests/fixtures/seqmodel/README.md",
        "cases": cases,
    }
    (OUT / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {len(cases)} sequence-model cases; torch {torch.__version__}")


if __name__ == "__main__":
    main()
