#!/usr/bin/env python3
"""recur.torch against torch.nn in the same process, interleaved, on the grid of bench/grid.json
plus variable-length rows (PackedSequence input), at 1 and 2 threads, training and inference.

    python3 scripts/bench_python.py                    # prints a Markdown table
    python3 scripts/bench_python.py --out docs/python.md --rows small,varlen

Each row builds torch.nn's module and recur.torch's from the same seed (the same weights) and
times them alternately (torch, recur, torch, recur, ...) so that both see the same machine
load; the table gives the medians and the ratio torch / recur (above 1: recur is faster).

What is timed (as scripts/bench_torch.py and `recur bench`): infer = a forward over the whole
sequence under torch.inference_mode() in eval(); train = forward + backward of
output.sum() + h_n.sum() with the gradients set to None before each iteration (the input needs
no gradient); streaming rows = one call on a (1, 1, input) input with the previous state.
Variable-length rows ("varlen") pack a batch whose lengths are drawn uniformly in
[seq/4, seq] with pack_padded_sequence(enforce_sorted=False) outside the timed region.

Needs the recur package installed in the venv (bash scripts/test.sh does it).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import venvpy  # noqa: E402

venvpy.ensure(("torch", "recur"))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

import recur  # noqa: E402
import recur.torch as rt  # noqa: E402

CLASSES = {
    "lstm": (torch.nn.LSTM, rt.LSTM, {}),
    "gru": (torch.nn.GRU, rt.GRU, {}),
    "rnn_tanh": (torch.nn.RNN, rt.RNN, {}),
    "rnn_relu": (torch.nn.RNN, rt.RNN, {"nonlinearity": "relu"}),
}

VARLEN = [
    {"name": "varlen", "cell": c, "mode": m, "batch": 64, "seq": 50, "input": 100, "hidden": 128,
     "layers": 1, "bidirectional": False, "packed": True}
    for c in ("lstm", "gru") for m in ("infer", "train")
] + [
    {"name": "varlen-bidir", "cell": "lstm", "mode": "train", "batch": 32, "seq": 100, "input": 128,
     "hidden": 256, "layers": 2, "bidirectional": True, "packed": True},
]


def row_id(r):
    return f"{r['name']}/{r['cell']}/{r['mode']}"


def build(row, impl):
    ref_cls, rec_cls, extra = CLASSES[row["cell"]]
    cls = ref_cls if impl == "torch" else rec_cls
    torch.manual_seed(0)
    return cls(row["input"], row["hidden"], num_layers=row["layers"], batch_first=True,
               bidirectional=row["bidirectional"], **extra)


def make_step(row, module):
    """A function doing one timed iteration of `row` on `module`."""
    g = torch.Generator().manual_seed(1)
    b, t, i = row["batch"], row["seq"], row["input"]
    x = torch.randn(b, t, i, generator=g)
    if row.get("packed"):
        lo = max(1, t // 4)
        lengths = torch.randint(lo, t + 1, (b,), generator=g)
        lengths[0] = t
        x = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    if row.get("streaming"):
        module.eval()
        state = [None]

        def step():
            with torch.inference_mode():
                _, state[0] = module(x, state[0])

        return step
    if row["mode"] == "infer":
        module.eval()

        def step():
            with torch.inference_mode():
                module(x)

        return step
    module.train()
    params = list(module.parameters())

    def step():
        for p in params:
            p.grad = None
        out, h = module(x)
        if isinstance(h, tuple):
            h = h[0]
        out = out.data if hasattr(out, "batch_sizes") else out
        (out.sum() + h.sum()).backward()

    return step


def time_row(row, threads, warmup, reps, min_time):
    torch.set_num_threads(threads)
    recur.set_num_threads(threads)
    steps = {impl: make_step(row, build(row, impl)) for impl in ("torch", "recur")}
    for impl in steps:
        for _ in range(warmup):
            steps[impl]()
    times = {"torch": [], "recur": []}
    start = time.perf_counter()
    inner = 1
    if row.get("streaming"):
        inner = 100  # a step is microseconds: time 100 calls together
    while len(times["recur"]) < reps or time.perf_counter() - start < min_time:
        for impl in ("torch", "recur"):
            t0 = time.perf_counter()
            for _ in range(inner):
                steps[impl]()
            times[impl].append((time.perf_counter() - t0) / inner)
        if len(times["recur"]) >= 1000:
            break
    return {k: statistics.median(v) for k, v in times.items()}, len(times["recur"])


def fmt_time(s):
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="", help="comma-separated row names or ids to keep (default: all)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per row and thread count")
    ap.add_argument("--out", help="write the Markdown table (with the machine) to this file")
    args = ap.parse_args()
    rows = json.loads((ROOT / "bench" / "grid.json").read_text())["rows"] + VARLEN
    if args.rows:
        keep = set(args.rows.split(","))
        rows = [r for r in rows if r["name"] in keep or row_id(r) in keep]
    threads = [int(t) for t in args.threads.split(",")]
    lines = [
        "| row | batch × seq, input → hidden | threads | torch.nn | recur.torch | torch / recur |",
        "|---|---|---|---|---|---|",
    ]
    print(lines[0])
    print(lines[1])
    for row in rows:
        shape = f"{row['batch']} × {row['seq']}, {row['input']} → {row['hidden']}"
        if row["layers"] > 1:
            shape += f" × {row['layers']} layers"
        if row["bidirectional"]:
            shape += ", bidirectional"
        for n in threads:
            med, count = time_row(row, n, args.warmup, args.reps, args.min_time)
            line = (
                f"| {row_id(row)} | {shape} | {n} | {fmt_time(med['torch'])} | "
                f"{fmt_time(med['recur'])} | {med['torch'] / med['recur']:.2f}x |"
            )
            print(line, flush=True)
            lines.append(line)
    if args.out:
        cpu = "unknown CPU"
        try:
            for ln in open("/proc/cpuinfo"):
                if ln.startswith("model name"):
                    cpu = ln.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        head = (
            f"Measured with `python3 scripts/bench_python.py` on {cpu} ({os.cpu_count()} cores), "
            f"Python {platform.python_version()}, torch {torch.__version__}; medians of "
            f"interleaved iterations (at least {args.reps}, at least {args.min_time} s per row "
            "and thread count).\n\n"
        )
        Path(args.out).write_text(head + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
