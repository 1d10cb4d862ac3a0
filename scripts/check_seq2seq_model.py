#!/usr/bin/env python3
"""Load a model directory written by `recur train seq2seq` into PyTorch and decode with it.

    python3 scripts/check_seq2seq_model.py DIR [--input FILE] [--max-len N]

Reads DIR/config.json, DIR/src_vocab.json, DIR/tgt_vocab.json and DIR/model.safetensors, builds
the PyTorch module of scripts/gen_seq2seq_fixtures.py (the one documented on recur's
`seq2seq::Seq2Seq`), calls `load_state_dict(..., strict=True)`, and greedily decodes every input
line (standard input by default) in float32, printing one output per line: the same format as
`recur predict --model DIR`, so the two can be compared with diff. Sources are cut into tokens
as the model was trained (char or space tokens; cmudict words are lower-cased).

If torch is not importable, re-executes itself with the venv python from scripts/venv.sh.
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import venvpy  # noqa: E402

venvpy.ensure()

import safetensors.torch  # noqa: E402
import torch  # noqa: E402

from gen_seq2seq_fixtures import Seq2Seq  # noqa: E402  (the reference module)

BOS, EOS = 2, 3


def tokens(kind, text):
    if kind == "char":
        return list(text)
    if kind == "space":
        return text.split()
    sys.exit(f"error: sources cut into '{kind}' tokens are not supported here (char or space only)")


@torch.no_grad()
def greedy(model, src_ids, max_len):
    """Greedy decoding of one source, step by step, as recur's Seq2Seq::greedy does."""
    src = torch.tensor(src_ids).view(-1, 1)
    enc, state = model.encoder(model.src_embed(src))
    if model.bidirectional:
        L, H = model.L, model.H
        join = lambda s: s.view(L, 2, -1, H // 2).transpose(1, 2).reshape(L, -1, H)  # noqa: E731
        state = tuple(join(s) for s in state) if isinstance(state, tuple) else join(state)
    out, prev = [], BOS
    for _ in range(max_len):
        dec, state = model.decoder(model.tgt_embed(torch.tensor([[prev]])), state)
        if model.attention != "none":
            keys = model.attn(enc) if model.attention == "general" else enc
            a = torch.einsum("tbh,sbh->bts", dec, keys).softmax(-1)
            ctx = torch.einsum("bts,sbh->tbh", a, enc)
            dec = torch.tanh(model.attn_combine(torch.cat([ctx, dec], -1)))
        prev = int(model.head(dec).argmax(-1))
        if prev == EOS:
            break
        out.append(prev)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dir", type=Path)
    p.add_argument("--input", type=Path)
    p.add_argument("--max-len", type=int, default=100)
    a = p.parse_args()
    cfg = json.loads((a.dir / "config.json").read_text())
    if cfg.get("model") != "seq2seq":
        sys.exit(f"error: {a.dir}/config.json: not a seq2seq model")
    src_vocab = json.loads((a.dir / "src_vocab.json").read_text())["tokens"]
    tgt_vocab = json.loads((a.dir / "tgt_vocab.json").read_text())["tokens"]
    data = cfg["training"]["data"]
    model = Seq2Seq(
        cfg["cell"],
        cfg["src_vocab_size"],
        cfg["tgt_vocab_size"],
        cfg["embed_size"],
        cfg["hidden_size"],
        cfg["num_layers"],
        cfg["attention"],
        cfg.get("bidirectional", False),
    )
    model.load_state_dict(safetensors.torch.load_file(str(a.dir / "model.safetensors")), strict=True)
    model.eval()
    index = {t: k for k, t in enumerate(src_vocab)}
    text = a.input.read_text() if a.input else sys.stdin.read()
    for line in text.splitlines():
        line = line.strip().lower() if data["format"] == "cmudict" else line.strip()
        ids = [index.get(t, 1) for t in tokens(data["src_tokens"], line)]  # 1 = <unk>
        out = [tgt_vocab[i] for i in greedy(model, ids, a.max_len)]
        print(("" if data["tgt_tokens"] == "char" else " ").join(out))


if __name__ == "__main__":
    main()
