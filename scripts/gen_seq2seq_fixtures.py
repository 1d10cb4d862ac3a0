#!/usr/bin/env python3
"""Generate the PyTorch fixtures of the encoder-decoder (seq2seq) model.

    python3 scripts/gen_seq2seq_fixtures.py

Writes tests/fixtures/seq2seq/<case>.safetensors (after deleting what was there): one forward and
backward pass of the PyTorch module below in float64, on a ragged batch, with

  params.<name>          f32   the module's state_dict (the values the test loads)
  sources.flat           i64   the source ids of every pair, concatenated
  sources.lengths        i64   (B) their lengths
  targets.flat           i64   the target ids y1..yn of every pair (no <bos>/<eos>), concatenated
  targets.lengths        i64   (B) their lengths n (0 allowed)
  expected.logits        f64   (T, B, Vt) logits, T = max n + 1 (rows past n + 1 are not compared)
  expected.loss          f64   (1,) mean cross-entropy over the predicted ids y1..yn <eos>
  expected.grad.<name>   f64   d loss / d parameter, for every parameter

and __metadata__ giving the configuration (mode, attention, bidirectional, sizes, bos_id, eos_id) and the
`snippet` of PyTorch code that made the numbers. Deterministic: each case seeds torch from a CRC
of its name, so re-running gives byte-identical files.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import venvpy  # noqa: E402

venvpy.ensure()

import json  # noqa: E402
import zlib  # noqa: E402

import safetensors.torch  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "seq2seq"
PAD, UNK, BOS, EOS = 0, 1, 2, 3

MODULE = '''
class Seq2Seq(nn.Module):
    def __init__(self, mode, Vs, Vt, E, H, L, attention, bidirectional):
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn_tanh": nn.RNN}[mode]
        self.attention, self.bidirectional, self.L, self.H = attention, bidirectional, L, H
        D = 2 if bidirectional else 1
        self.src_embed = nn.Embedding(Vs, E)
        self.encoder = rnn(E, H // D, num_layers=L, bidirectional=bidirectional)
        self.tgt_embed = nn.Embedding(Vt, E)
        self.decoder = rnn(E, H, num_layers=L)
        if attention == "general":
            self.attn = nn.Linear(H, H, bias=False)
        if attention != "none":
            self.attn_combine = nn.Linear(2 * H, H, bias=False)
        self.head = nn.Linear(H, Vt)

    def forward(self, src, src_len, dec_in, tgt_len):
        x = pack_padded_sequence(self.src_embed(src), src_len, enforce_sorted=False)
        enc, state = self.encoder(x)
        enc, _ = pad_packed_sequence(enc, total_length=src.shape[0])
        if self.bidirectional:
            L, H = self.L, self.H
            join = lambda s: s.view(L, 2, -1, H // 2).transpose(1, 2).reshape(L, -1, H)
            state = tuple(join(s) for s in state) if isinstance(state, tuple) else join(state)
        y = pack_padded_sequence(self.tgt_embed(dec_in), tgt_len, enforce_sorted=False)
        dec, _ = self.decoder(y, state)
        dec, _ = pad_packed_sequence(dec, total_length=dec_in.shape[0])
        if self.attention != "none":
            keys = self.attn(enc) if self.attention == "general" else enc
            score = torch.einsum("tbh,sbh->bts", dec, keys)
            pad = torch.arange(src.shape[0])[None, None, :] >= src_len[:, None, None]
            a = score.masked_fill(pad, float("-inf")).softmax(-1)
            ctx = torch.einsum("bts,sbh->tbh", a, enc)
            dec = torch.tanh(self.attn_combine(torch.cat([ctx, dec], -1)))
        return self.head(dec)
'''
exec(MODULE)

SNIPPET = (
    MODULE.strip()
    + "\n\nmodel = Seq2Seq(mode, Vs, Vt, E, H, L, attention, bidirectional)\n"
    + "model.load_state_dict(params)\n"
    + "model = model.double()\n"
    + "# src (S, B) and dec_in = [<bos>, y] (T, B) padded with 0; target = [y, <eos>] padded with -100\n"
    + "logits = model(src, src_len, dec_in, tgt_len)\n"
    + "loss = F.cross_entropy(logits.reshape(-1, Vt), target.reshape(-1), ignore_index=-100)\n"
    + "loss.backward()"
)

# name: (mode, attention, bidirectional, Vs, Vt, E, H, L, source lengths, target lengths)
CASES = {
    "lstm_general_l2": ("lstm", "general", False, 9, 8, 5, 6, 2, [5, 2, 4, 1], [3, 0, 2, 4]),
    "gru_dot_l1": ("gru", "dot", False, 7, 10, 4, 5, 1, [3, 6, 6, 2, 1], [4, 1, 5, 2, 2]),
    "rnn_tanh_none_l2": ("rnn_tanh", "none", False, 6, 7, 3, 4, 2, [4, 1, 3], [2, 3, 0]),
    "gru_general_l2": ("gru", "general", False, 8, 9, 4, 3, 2, [2, 5, 3, 5], [1, 3, 3, 0]),
    "lstm_dot_l1_b1": ("lstm", "dot", False, 5, 6, 3, 4, 1, [4], [3]),
    "lstm_general_bi_l2": ("lstm", "general", True, 9, 8, 5, 6, 2, [5, 2, 4, 1], [3, 0, 2, 4]),
    "gru_none_bi_l1": ("gru", "none", True, 7, 6, 3, 4, 1, [2, 4, 3], [2, 1, 3]),
}


def save_deterministic(tensors, path, metadata):
    """safetensors.torch.save_file with the JSON header re-serialized with sorted keys (safetensors
    keeps the metadata in a hash map, so its order would change from run to run), as
    scripts/gen_fixtures.py does."""
    raw = safetensors.torch.save(tensors, metadata=metadata)
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n :])
    back = safetensors.torch.load_file(str(path))
    assert back.keys() == tensors.keys()
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k


def make_case(name, mode, attention, bidirectional, Vs, Vt, E, H, L, src_lens, tgt_lens):
    torch.manual_seed(zlib.crc32(name.encode()))
    model = Seq2Seq(mode, Vs, Vt, E, H, L, attention, bidirectional)  # noqa: F821 (exec)
    B = len(src_lens)
    sources = [torch.randint(4, Vs, (n,)) for n in src_lens]
    targets = [torch.randint(4, Vt, (n,)) for n in tgt_lens]
    S, T = max(src_lens), max(tgt_lens) + 1
    src = torch.zeros(S, B, dtype=torch.long)
    dec_in = torch.zeros(T, B, dtype=torch.long)
    target = torch.full((T, B), -100, dtype=torch.long)
    for b in range(B):
        src[: src_lens[b], b] = sources[b]
        dec_in[0, b] = BOS
        dec_in[1 : tgt_lens[b] + 1, b] = targets[b]
        target[: tgt_lens[b], b] = targets[b]
        target[tgt_lens[b], b] = EOS
    params = {k: v.detach().float().clone() for k, v in model.state_dict().items()}
    model = model.double()
    src_len = torch.tensor(src_lens)
    tgt_len = torch.tensor([n + 1 for n in tgt_lens])
    logits = model(src, src_len, dec_in, tgt_len)
    loss = F.cross_entropy(logits.reshape(-1, Vt), target.reshape(-1), ignore_index=-100)
    loss.backward()
    out = {f"params.{k}": v.contiguous() for k, v in params.items()}
    out["sources.flat"] = torch.cat(sources).long()
    out["sources.lengths"] = torch.tensor(src_lens, dtype=torch.long)
    out["targets.flat"] = (torch.cat(targets) if sum(tgt_lens) else torch.zeros(0)).long()
    out["targets.lengths"] = torch.tensor(tgt_lens, dtype=torch.long)
    out["expected.logits"] = logits.detach().contiguous()
    out["expected.loss"] = loss.detach().reshape(1)
    for k, p in model.named_parameters():
        out[f"expected.grad.{k}"] = p.grad.detach().contiguous()
    meta = {
        "mode": mode,
        "attention": attention,
        "src_vocab_size": str(Vs),
        "tgt_vocab_size": str(Vt),
        "embed_size": str(E),
        "hidden_size": str(H),
        "num_layers": str(L),
        "bidirectional": "true" if bidirectional else "false",
        "bos_id": str(BOS),
        "eos_id": str(EOS),
        "torch": torch.__version__,
        "snippet": SNIPPET,
    }
    save_deterministic(out, OUT / f"{name}.safetensors", meta)


def main():
    torch.use_deterministic_algorithms(True)
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.safetensors"):
        old.unlink()
    for name, case in CASES.items():
        make_case(name, *case)
        print(f"wrote {OUT.relative_to(ROOT)}/{name}.safetensors")


if __name__ == "__main__":
    main()
