#!/usr/bin/env python3
"""Time PyTorch on one row of the benchmark grid (bench/grid.json), the way `recur bench` times recur.

    python3 scripts/bench_torch.py --row large/lstm/train --threads 2 --json
    python3 scripts/bench_torch.py --gemm-peak --threads 2 --json     # f32 torch.mm 4096^3

Prints one JSON line with the field names of `recur bench --json` (lib = "torch"), plus the torch
version and which torch kernel path ran ("torch_path": oneDNN or native ATen, found by profiling one
extra iteration after the timing). Without --json a one-line summary is printed instead.

What is timed (the same as crates/recur-cli/src/bench.rs):
  infer      forward over the whole sequence, batch_first input, zero initial state, under
             torch.inference_mode() with the module in eval().
  train      forward + backward of loss = output.sum() + h_n.sum() (LSTM: h_n only, not c_n),
             weight gradients included; the gradients are set to None before every iteration.
             The input does not require a gradient (as in a typical training step on data; recur
             likewise calls Rnn::backward_params, which skips d input).
  ragged     rows with "ragged": true run as users write variable-length batches:
             pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False) -> module ->
             pad_packed_sequence(batch_first=True, total_length=seq); packing and unpacking are
             inside the timed region (lengths: ragged_lengths below, the formula of grid.json).
  streaming  rows with "streaming": true time ONE step for batch 1: one call of the module on a
             (1, 1, input) input with the state (tuple for LSTM) returned by the previous call,
             under inference_mode; the state passing is inside the timed region.

Loop: --warmup untimed iterations, then timed iterations until at least --reps were done and
--min-time seconds elapsed. median = sorted[len // 2] (as recur). rss_delta_mb = growth of VmHWM
(/proc/self/status) from just before the first warm-up iteration to the end of the timing.
peak_mb is null: torch has no allocator-tracked peak on CPU.

FLOP model (as recur's): 2*M*N*K per matrix product, gate arithmetic not counted; per layer and
direction with G gates (rnn 1, gru 3, lstm 4) and F the layer's input width:
2 * batch*seq * G*hidden * (F + hidden) (ragged rows: the sum of the lengths instead of batch*seq);
train = 3 x forward.

If torch is not importable with the interpreter that runs this script, the script re-executes itself
with the venv python printed by scripts/venv.sh (which creates .venv/ on first use).
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


sys.path.insert(0, str(ROOT / "scripts"))
import venvpy  # noqa: E402

venvpy.ensure(("torch",))

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "gru": 3, "lstm": 4}
GRID = ROOT / "bench" / "grid.json"


def row_id(r):
    return f"{r['name']}/{r['cell']}/{r['mode']}"


def load_rows():
    with open(GRID) as f:
        return json.load(f)["rows"]


def ragged_lengths(batch, seq):
    """The lengths of a ragged row (bench/grid.json; recur's bench.rs computes the same)."""
    lo = seq // 5
    if batch == 1:
        return [seq]
    return [lo + (13 * b % batch) * (seq - lo) // (batch - 1) for b in range(batch)]


def steps(r):
    return sum(ragged_lengths(r["batch"], r["seq"])) if r.get("ragged") else r["batch"] * r["seq"]


def forward_flops(r):
    g = GATES[r["cell"]]
    d = 2 if r["bidirectional"] else 1
    total = 0.0
    for layer in range(r["layers"]):
        f = r["input"] if layer == 0 else r["hidden"] * d
        total += d * 2.0 * steps(r) * g * r["hidden"] * (f + r["hidden"])
    return total


def vm_hwm_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def time_it(args, f):
    """(times_ms, rss_delta_mb): the loop of recur's bench.rs."""
    hwm0 = vm_hwm_mb()
    for _ in range(args.warmup):
        f()
    times = []
    start = time.perf_counter()
    while len(times) < args.reps or time.perf_counter() - start < args.min_time:
        t0 = time.perf_counter()
        f()
        times.append((time.perf_counter() - t0) * 1e3)
    return times, vm_hwm_mb() - hwm0


def build(r):
    kw = dict(
        input_size=r["input"],
        hidden_size=r["hidden"],
        num_layers=r["layers"],
        bidirectional=r["bidirectional"],
        batch_first=True,
    )
    if r["cell"] == "lstm":
        return torch.nn.LSTM(**kw)
    if r["cell"] == "gru":
        return torch.nn.GRU(**kw)
    if r["cell"] in ("rnn_tanh", "rnn_relu"):
        return torch.nn.RNN(nonlinearity=r["cell"][len("rnn_"):], **kw)
    raise SystemExit(f"bench/grid.json: unknown cell '{r['cell']}'")


def serve(r, model):
    """The module PyTorch users run for a row's "precision": dynamically quantized weights for
    int8 (qint8) and f16 (float16), the f32 module otherwise (PyTorch has no bf16 dynamic
    quantization of recurrent layers)."""
    dtype = {"int8": torch.qint8, "f16": torch.float16}.get(r.get("precision"))
    if dtype is None:
        return model
    # quantize_dynamic swaps submodules only: hand it the layer inside a container.
    holder = torch.nn.ModuleDict({"rnn": model})
    served = torch.ao.quantization.quantize_dynamic(holder, {type(model)}, dtype=dtype)["rnn"]
    assert type(served) is not type(model), f"quantize_dynamic left {type(model).__name__} as it was"
    return served


def make_step(r, model, x):
    """The timed function of the row, and a context manager to run it in."""
    params = list(model.parameters())
    d = 2 if r["bidirectional"] else 1
    lstm = r["cell"] == "lstm"
    if r.get("streaming"):
        model.eval()
        x1 = x[:, :1, :].contiguous()  # (batch, 1, input)
        h0 = torch.zeros(r["layers"] * d, r["batch"], r["hidden"])
        state = [(h0, h0.clone()) if lstm else h0]

        def step():
            _, state[0] = model(x1, state[0])

        return step, torch.inference_mode
    run = model
    if r.get("ragged"):
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        lengths = torch.tensor(ragged_lengths(r["batch"], r["seq"]))

        def run(xs):
            packed = pack_padded_sequence(xs, lengths, batch_first=True, enforce_sorted=False)
            out, hn = model(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=r["seq"])
            return out, hn

    if r["mode"] == "infer":
        model.eval()

        def step():
            run(x)

        return step, torch.inference_mode
    if r["mode"] == "train":
        model.train()

        def step():
            for q in params:
                q.grad = None
            out, hn = run(x)
            if lstm:  # (h_n, c_n): the loss uses h_n only
                hn = hn[0]
            (out.sum() + hn.sum()).backward()

        return step, torch.enable_grad
    raise SystemExit(f"bench/grid.json: unknown mode '{r['mode']}' (infer or train)")


def torch_path(step, ctx):
    """Which kernels one more iteration dispatches to (profiled after the timing)."""
    try:
        from torch.profiler import ProfilerActivity, profile

        # The profiler (kineto) logs to fd 2 ("profiler_start", "gpuGetDeviceCount failed"): mute it.
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        try:
            with ctx(), profile(activities=[ProfilerActivity.CPU]) as prof:
                step()
            names = sorted({e.key for e in prof.key_averages()})
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    except Exception as e:  # noqa: BLE001 - informational only
        return f"unknown ({type(e).__name__})", []
    rnn_ops = [n for n in names if any(k in n.lower() for k in ("rnn", "lstm", "gru", "mkldnn"))]
    if any("mkldnn" in n.lower() for n in names):
        path = "oneDNN"
    else:
        path = "ATen"
    return path, rnn_ops


def set_threads(n):
    torch.set_num_threads(n if n > 0 else (os.cpu_count() or 1))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


def run_row(args, r):
    torch.manual_seed(0)
    model = serve(r, build(r).float())
    n = r["batch"] * r["seq"] * r["input"]
    # The input of recur's bench: x[i] = sin(0.618 i), shaped (batch, seq, input).
    x = torch.sin(torch.arange(n, dtype=torch.float32) * 0.618).reshape(r["batch"], r["seq"], r["input"])
    step, ctx = make_step(r, model, x)
    with ctx():
        times, rss = time_it(args, step)
    if r["mode"] == "train":
        assert all(q.grad is not None for q in model.parameters()), "missing weight gradients"
    path, ops = torch_path(step, ctx)
    s = sorted(times)
    med, mn = s[len(s) // 2], s[0]
    flops = forward_flops(r) * (3.0 if r["mode"] == "train" else 1.0)
    rec = {"lib": "torch"}
    for k in ("name", "cell", "mode", "batch", "seq", "input", "hidden", "layers", "bidirectional"):
        rec[k] = r[k]
    rec["streaming"] = bool(r.get("streaming", False))
    rec["ragged"] = bool(r.get("ragged", False))
    if r.get("precision"):
        rec["precision"] = r["precision"]
    rec.update(
        threads=torch.get_num_threads(),
        reps=len(times),
        median_ms=med,
        min_ms=mn,
        gflop=flops / 1e9,
        gflops_median=flops / (med * 1e-3) / 1e9,
        gflops_best=flops / (mn * 1e-3) / 1e9,
        peak_mb=None,
        rss_delta_mb=rss,
        torch=torch.__version__,
        interop_threads=torch.get_num_interop_threads(),
        mkldnn=torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled,
        torch_path=path,
        torch_ops=ops,
    )
    return rec


def run_gemm_peak(args):
    n = args.n
    torch.manual_seed(0)
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    out = torch.empty(n, n)
    times, _ = time_it(args, lambda: torch.mm(a, b, out=out))
    s = sorted(times)
    med, mn = s[len(s) // 2], s[0]
    flops = 2.0 * n * n * n
    return {
        "lib": "torch",
        "op": "mm",
        "dtype": "float32",
        "m": n,
        "k": n,
        "n": n,
        "threads": torch.get_num_threads(),
        "reps": len(times),
        "median_ms": med,
        "min_ms": mn,
        "gflop": flops / 1e9,
        "gflops_median": flops / (med * 1e-3) / 1e9,
        "gflops_best": flops / (mn * 1e-3) / 1e9,
        "torch": torch.__version__,
        **torch_build(),
    }


def torch_build():
    """CPU capability and BLAS / oneDNN versions of this torch build."""
    import re

    info = {}
    try:
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 - informational only
        pass
    cfg = torch.__config__.show()
    m = re.search(r"MKL-DNN (v[\d.]+)", cfg)
    if m:
        info["onednn"] = m.group(1)
    m = re.search(r"Math Kernel Library Version ([\d.]+)", cfg)
    if m:
        info["mkl"] = m.group(1)
    return info


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--row", help="the grid row name/cell/mode, e.g. large/lstm/train")
    p.add_argument("--gemm-peak", action="store_true", help="time f32 torch.mm (--n)^3 instead of a row")
    p.add_argument("--n", type=int, default=4096, help="matrix size of --gemm-peak")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = all cores)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations before timing")
    p.add_argument("--reps", type=int, default=20, help="timed iterations (at least)")
    p.add_argument("--min-time", type=float, default=1.0, help="keep repeating until this many seconds were timed")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()
    set_threads(args.threads)
    if args.gemm_peak:
        rec = run_gemm_peak(args)
    else:
        if not args.row:
            p.error("--row (or --gemm-peak) is required")
        rows = [r for r in load_rows() if row_id(r) == args.row]
        if not rows:
            raise SystemExit(f"no benchmark row '{args.row}' in {GRID}")
        rec = run_row(args, rows[0])
    if args.json:
        print(json.dumps(rec), flush=True)
    elif args.gemm_peak:
        print(f"torch.mm {args.n}^3 f32, {rec['threads']} threads: median {rec['median_ms']:.1f} ms, "
              f"{rec['gflops_median']:.1f} GFLOP/s (best {rec['gflops_best']:.1f})")
    else:
        print(f"{args.row} torch {rec['torch']} ({rec['torch_path']}), {rec['threads']} threads: "
              f"median {rec['median_ms']:.3f} ms, min {rec['min_ms']:.3f} ms, {rec['gflops_median']:.1f} GFLOP/s, "
              f"rss delta {rec['rss_delta_mb']:.1f} MB, {rec['reps']} reps")


if __name__ == "__main__":
    main()
