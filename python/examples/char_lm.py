#!/usr/bin/env python3
"""A character-level language model trained the usual PyTorch way: embedding → LSTM → linear,
cross-entropy, Adam, gradient clipping, truncated BPTT with the state carried between batches.

    python examples/char_lm.py --impl torch
    python examples/char_lm.py --impl recur          # the same script on recur.torch.LSTM
    python examples/char_lm.py --impl recur --text some_file.txt --steps 500

The only difference between the two runs is which class builds the LSTM; from the same seed
they start from the same weights and draw the same batches and dropout masks, so their loss
curves agree (to float32 rounding). Without --text the model trains on generated text (a
small grammar of sentences, no download).
"""

import argparse
import math
import random
import time

import torch
from torch import nn


def generated_text(n_chars, seed=0):
    """Sentences from a small grammar: enough structure for a char LM to learn quickly."""
    rng = random.Random(seed)
    subjects = ["the cat", "a dog", "the old man", "my sister", "the river", "a small bird", "the teacher"]
    verbs = ["sees", "follows", "likes", "carries", "remembers", "paints", "finds"]
    objects = ["the moon", "a red ball", "the garden", "an open door", "the quiet town", "a letter"]
    tails = ["", " at night", " in the morning", " again", " slowly", " without a word"]
    out, size = [], 0
    while size < n_chars:
        s = f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}{rng.choice(tails)}. "
        if rng.random() < 0.2:
            s = s[0].upper() + s[1:]
        out.append(s)
        size += len(s)
    return "".join(out)[:n_chars]


class CharLM(nn.Module):
    def __init__(self, lstm_cls, vocab, emb=64, hidden=256, layers=2, dropout=0.2):
        super().__init__()
        self.embed = nn.Embedding(vocab, emb)
        self.lstm = lstm_cls(emb, hidden, num_layers=layers, dropout=dropout, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids, state=None):
        out, state = self.lstm(self.embed(ids), state)
        return self.head(self.drop(out)), state


def batches(data, batch, seq):
    """Contiguous streams, one per batch row (state carries across batches: truncated BPTT)."""
    n = (len(data) - 1) // batch
    x = data[: n * batch].view(batch, n)
    y = data[1 : n * batch + 1].view(batch, n)
    while True:
        for i in range(0, n - seq + 1, seq):
            yield x[:, i : i + seq], y[:, i : i + seq]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--impl", choices=["torch", "recur"], default="torch")
    ap.add_argument("--text", help="a UTF-8 text file (default: generated text)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=0, help="0: all cores")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                    help="float64: both implementations agree to ~1e-10, not just float32 rounding")
    ap.add_argument("--log-every", type=int, default=50)
    args = ap.parse_args()

    if args.impl == "recur":
        import recur
        import recur.torch

        lstm_cls = recur.torch.LSTM
        if args.threads:
            recur.set_num_threads(args.threads)
    else:
        lstm_cls = nn.LSTM
    if args.threads:
        torch.set_num_threads(args.threads)

    text = open(args.text, encoding="utf-8").read() if args.text else generated_text(400_000)
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text], dtype=torch.long)
    split = int(len(data) * 0.95)
    train, valid = data[:split], data[split:]

    torch.manual_seed(args.seed)
    model = CharLM(lstm_cls, len(chars), hidden=args.hidden, layers=args.layers)
    if args.dtype == "float64":
        model.double()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()

    def evaluate():
        model.eval()
        total, count, state = 0.0, 0, None
        with torch.no_grad():
            it = batches(valid, 8, args.seq)
            for _ in range(max(1, (len(valid) // 8) // args.seq)):
                x, y = next(it)
                logits, state = model(x, state)
                total += loss_fn(logits.reshape(-1, len(chars)), y.reshape(-1)).item() * y.numel()
                count += y.numel()
        model.train()
        return total / count

    print(f"impl={args.impl} dtype={args.dtype} chars={len(text)} vocab={len(chars)} params={sum(p.numel() for p in model.parameters())}")
    stream = batches(train, args.batch, args.seq)
    state = None
    t_train = 0.0
    for step in range(1, args.steps + 1):
        x, y = next(stream)
        t0 = time.perf_counter()
        if state is not None:
            state = tuple(s.detach() for s in state)
        logits, state = model(x, state)
        loss = loss_fn(logits.reshape(-1, len(chars)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        t_train += time.perf_counter() - t0
        if step % args.log_every == 0 or step == args.steps:
            v = evaluate()
            print(
                f"step {step:5d}  train loss {loss.item():.4f}  valid loss {v:.4f} "
                f"({v / math.log(2):.3f} bits/char)  train time {t_train:.1f} s",
                flush=True,
            )
    print(f"{args.impl}: {args.steps} training steps in {t_train:.1f} s ({t_train / args.steps * 1e3:.1f} ms/step)")


if __name__ == "__main__":
    main()
