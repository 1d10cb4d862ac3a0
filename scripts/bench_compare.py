#!/usr/bin/env python3
"""Benchmark recur against PyTorch on every row of bench/grid.json and write docs/benchmarks.md.

    python3 scripts/bench_compare.py                                  # threads 1 and 2
    python3 scripts/bench_compare.py --threads 2 --filter large --rounds 3

Steps:
  1. cargo build --release -p recur-cli
  2. for each thread count:
       for each round: the f32 GEMM peak (torch.mm 4096^3, scripts/bench_torch.py --gemm-peak), then
       for each grid row: `target/release/recur bench --row ID --json` and
       `scripts/bench_torch.py --row ID --json`, each in a fresh process, one right after the
       other, the order alternating from row to row and from round to round.
     With --rounds K > 1 the best (lowest) median of each lib over the K rounds is kept, and the
     best GEMM median as the peak.
  3. print the comparison table and write it (with the machine, versions, targets and all the raw
     JSON lines) to --out.

The machine is shared: before each measurement the script waits (at most --idle-wait seconds, and
--idle-budget seconds over the whole run) until other processes use less than --idle-below % of
the CPUs, and it records the share of the CPUs that other processes used during each measurement
("busy %" column: the worst of the two measurements kept for the row).

With the defaults (threads 1,2; 2 rounds; 0.5 s per measurement) a full run takes about 10-15 minutes
on 2 cores, most of it in the large rows and in PyTorch's start-up (~3 s per process).

This script needs only the standard library; scripts/bench_torch.py finds the venv python itself
(scripts/venv.sh) and is started with it directly here.
"""

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRID = ROOT / "bench" / "grid.json"
RECUR = ROOT / "target" / "release" / "recur"
BENCH_TORCH = ROOT / "scripts" / "bench_torch.py"
GEMM_N = 4096
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1

# The project's performance targets (README / plan), as checked in the "met" column.
TARGETS_TEXT = [
    "`stream-step` rows: one streaming step at least **10x** faster than PyTorch (torch ms / recur ms >= 10).",
    "`stream-step-f16`, `-bf16`, `-int8` rows (recur's weights in 16 bits or int8): faster than PyTorch serving "
    "the same model its own way (`quantize_dynamic` to qint8 or float16; f32 for bf16); their speed-up over "
    "recur's f32 step is in docs/precision.md.",
    "`ragged-*` rows (variable lengths; PyTorch with `pack_padded_sequence(enforce_sorted=False)`): at least "
    "**3x** faster than PyTorch.",
    "Every other row: at least **1.5x** faster than PyTorch **or** at least **95 %** of the f32 GEMM peak "
    "measured in the same run (torch.mm 4096^3, same thread count), whichever is the lower bar.",
    "`train` rows: recur's peak memory at most PyTorch's, compared as `rss Δ` (VmHWM growth measured the "
    "same way in both processes).",
]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def row_id(r):
    return f"{r['name']}/{r['cell']}/{r['mode']}"


# --------------------------------------------------------------------------------------------------
# machine load


def cpu_jiffies():
    """(busy, steal, total) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    total = sum(v[:8])
    idle = v[3] + v[4]
    return total - idle, v[7], total


def other_busy_pct(window=0.5):
    """Share of all CPUs used by other processes over `window` seconds (this script is idle)."""
    b0, _, t0 = cpu_jiffies()
    time.sleep(window)
    b1, _, t1 = cpu_jiffies()
    return 100.0 * (b1 - b0) / max(1, t1 - t0)


class Idle:
    def __init__(self, wait, budget, below):
        self.wait, self.budget, self.below = wait, budget, below
        self.spent = 0.0
        self.last_other = None  # other processes' share during the previous measurement

    def wait_idle(self):
        if self.wait <= 0 or self.spent >= self.budget:
            return
        if self.last_other is not None and self.last_other < self.below:
            return  # the machine was quiet until just now: no need to sample it
        t0 = time.monotonic()
        while True:
            busy = other_busy_pct()
            waited = time.monotonic() - t0
            if busy < self.below or waited >= self.wait or self.spent + waited >= self.budget:
                break
        self.spent += time.monotonic() - t0


def run_measured(cmd, timeout):
    """Run cmd; returns (json record or None, error text, busy_other_pct, steal_pct)."""
    c0 = os.times()
    b0, s0, t0 = cpu_jiffies()
    w0 = time.monotonic()
    try:
        p = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timeout after {timeout}s", None, None
    wall = time.monotonic() - w0
    b1, s1, t1 = cpu_jiffies()
    c1 = os.times()
    child_s = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
    busy_s = (b1 - b0) / CLK_TCK
    other = max(0.0, 100.0 * (busy_s - child_s) / max(1e-9, wall * NCPU))
    steal = 100.0 * (s1 - s0) / max(1, t1 - t0)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        err = (p.stderr.strip().splitlines() or [f"exit code {p.returncode}"])[-1]
        return None, err, other, steal
    return json.loads(lines[-1]), None, other, steal


# --------------------------------------------------------------------------------------------------
# machine / versions


def cpu_info():
    model, flags, n = "unknown", set(), 0
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                k = k.strip()
                if k == "processor":
                    n += 1
                elif k == "model name" and model == "unknown":
                    model = v.strip()
                elif k == "flags" and not flags:
                    flags = set(v.split())
    except OSError:
        pass
    cores = None
    try:
        out = subprocess.run(["lscpu"], stdout=subprocess.PIPE, text=True).stdout
        kv = {a.strip(): b.strip() for a, _, b in (ln.partition(":") for ln in out.splitlines())}
        if kv.get("Core(s) per socket") and kv.get("Socket(s)"):
            cores = int(kv["Core(s) per socket"]) * int(kv["Socket(s)"])
        hyper = kv.get("Hypervisor vendor")
    except (OSError, ValueError):
        hyper = None
    return {
        "model": model,
        "cpus": n or NCPU,
        "cores": cores,
        "hypervisor": hyper or ("yes" if "hypervisor" in flags else None),
        "flags": {f: f in flags for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")},
    }


def cmd_out(cmd):
    try:
        return subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
    except OSError:
        return ""


def venv_python():
    out = subprocess.run(["bash", str(ROOT / "scripts" / "venv.sh")], check=True, stdout=subprocess.PIPE, text=True).stdout
    return out.strip().splitlines()[-1]


# --------------------------------------------------------------------------------------------------
# formatting and targets


def fms(v):
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def f1(v):
    return "–" if v is None else f"{v:.1f}"


def targets_of(r):
    """[(label, check(res) -> bool or None)] for the row; res has speedup, recur_pct, rss_* ."""
    out = []
    name = r["name"]
    if name == "stream-step":
        out.append(("≥10x", lambda x: x["speedup"] >= 10.0))
    elif name.startswith("stream-step-"):
        out.append(("≥1x", lambda x: x["speedup"] >= 1.0))
    elif name.startswith("ragged-"):
        out.append(("≥3x", lambda x: x["speedup"] >= 3.0))
    else:
        out.append(("≥1.5x or ≥95% peak", lambda x: x["speedup"] >= 1.5
                    or (x["recur_pct"] is not None and x["recur_pct"] >= 95.0)))
    if r["mode"] == "train":
        out.append(("mem ≤ torch", lambda x: x["recur_rss"] <= x["torch_rss"]))
    return out


def best(records):
    ok = [x for x in records if x is not None]
    return min(ok, key=lambda x: x["median_ms"]) if ok else None


# --------------------------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--filter", default="", help="only rows whose name/cell/mode contains this text")
    p.add_argument("--rounds", type=int, default=2, help="measure every (row, lib) this many times; keep the best median")
    p.add_argument("--min-time", type=float, default=0.5, help="seconds timed per measurement (at least)")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations per measurement")
    p.add_argument("--reps", type=int, default=5, help="timed iterations per measurement (at least)")
    p.add_argument("--gemm-reps", type=int, default=5, help="timed torch.mm 4096^3 per peak measurement")
    p.add_argument("--idle-wait", type=float, default=10.0, help="max seconds to wait for a quiet machine before a measurement (0: never)")
    p.add_argument("--idle-budget", type=float, default=90.0, help="max seconds of such waiting over the whole run")
    p.add_argument("--idle-below", type=float, default=20.0, help="'quiet' = other processes use less than this %% of the CPUs")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds before a measurement process is killed")
    p.add_argument("--out", default="docs/benchmarks.md", help="markdown file to write ('' = none)")
    p.add_argument("--no-build", action="store_true", help="skip cargo build (use the existing target/release/recur)")
    args = p.parse_args()
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    command = "python3 scripts/bench_compare.py" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")
    t_start = time.monotonic()
    started = datetime.datetime.now(datetime.timezone.utc)

    if not args.no_build:
        log("building: cargo build --release -p recur-cli")
        subprocess.run(["cargo", "build", "--release", "-p", "recur-cli"], cwd=ROOT, check=True, stdout=sys.stderr)
    if not RECUR.exists():
        raise SystemExit(f"{RECUR} not found (build recur-cli first)")
    py = venv_python()

    with open(GRID) as f:
        rows = [r for r in json.load(f)["rows"] if args.filter in row_id(r)]
    if not rows:
        raise SystemExit(f"no grid row matches '{args.filter}'")

    timing = ["--warmup", str(args.warmup), "--reps", str(args.reps), "--min-time", str(args.min_time)]
    idle = Idle(args.idle_wait, args.idle_budget, args.idle_below)
    raw = []  # every JSON line, in measurement order
    peaks = {}  # threads -> [records]
    meas = {}  # (id, threads, lib) -> [(record, busy, steal)]
    errors = {}
    n_meas = 0
    for th in threads:
        for rnd in range(args.rounds):
            idle.wait_idle()
            rec, err, busy, steal = run_measured(
                [py, str(BENCH_TORCH), "--gemm-peak", "--n", str(GEMM_N), "--threads", str(th), "--json",
                 "--warmup", "1", "--reps", str(args.gemm_reps), "--min-time", "0"], args.timeout)
            idle.last_other = busy
            if rec is None:
                raise SystemExit(f"GEMM peak failed: {err}")
            raw.append(rec)
            peaks.setdefault(th, []).append(rec)
            log(f"[threads {th} round {rnd + 1}/{args.rounds}] GEMM peak torch.mm {GEMM_N}^3 f32: "
                f"{rec['gflops_median']:.1f} GFLOP/s median, {rec['gflops_best']:.1f} best "
                f"(other load {busy:.0f}%, steal {steal:.1f}%)")
            for i, r in enumerate(rows):
                rid = row_id(r)
                cmds = {
                    "recur": [str(RECUR), "bench", "--row", rid, "--threads", str(th), "--json", *timing],
                    "torch": [py, str(BENCH_TORCH), "--row", rid, "--threads", str(th), "--json", *timing],
                }
                order = ["recur", "torch"] if (i + rnd) % 2 == 0 else ["torch", "recur"]
                msg = []
                for lib in order:
                    idle.wait_idle()
                    rec, err, busy, steal = run_measured(cmds[lib], args.timeout)
                    idle.last_other = busy
                    n_meas += 1
                    meas.setdefault((rid, th, lib), []).append((rec, busy, steal))
                    if rec is None:
                        errors[(rid, th, lib)] = err
                        msg.append(f"{lib} ERROR {err}")
                    else:
                        raw.append(rec)
                        msg.append(f"{lib} {fms(rec['median_ms'])} ms (busy {busy:.0f}%)")
                log(f"[threads {th} round {rnd + 1}] {rid}: " + ", ".join(msg))

    # ---- results
    results = []
    for th in threads:
        peak = max(x["gflops_median"] for x in peaks[th])
        for r in rows:
            rid = row_id(r)
            ms = {lib: meas.get((rid, th, lib), []) for lib in ("torch", "recur")}
            b = {lib: best([m[0] for m in ms[lib]]) for lib in ms}
            busy = max((m[1] for lib in ms for m in ms[lib] if m[0] is not None and m[0] is b[lib] and m[1] is not None),
                       default=None)
            res = {"id": rid, "row": r, "threads": th, "torch": b["torch"], "recur": b["recur"], "busy": busy, "peak": peak}
            t, u = b["torch"], b["recur"]
            res["speedup"] = t["median_ms"] / u["median_ms"] if t and u else None
            res["torch_pct"] = 100.0 * t["gflops_median"] / peak if t else None
            res["recur_pct"] = 100.0 * u["gflops_median"] / peak if u else None
            res["torch_rss"] = t["rss_delta_mb"] if t else None
            res["recur_rss"] = u["rss_delta_mb"] if u else None
            tg = targets_of(r)
            res["target"] = "; ".join(lbl for lbl, _ in tg) or "–"
            if not tg:
                res["met"] = "–"
            elif not (t and u):
                res["met"] = "n/a (error)"
            else:
                failed = [lbl for lbl, ok in tg if not ok(res)]
                res["met"] = "yes" if not failed else "**no** (" + ", ".join(failed) + ")"
            results.append(res)

    header = ("| row | thr | torch ms | recur ms | torch/recur | torch GFLOP/s | recur GFLOP/s | torch % peak | "
              "recur % peak | torch rss Δ MB | recur rss Δ MB | recur peak MB | busy % | target | met |")
    sep = "|" + "---|" * 15
    lines = [header, sep]
    for x in results:
        t, u = x["torch"], x["recur"]
        def pct(v):
            return "–" if v is None else f"{v:.1f}%"

        lines.append("| " + " | ".join([
            f"`{x['id']}`",
            str(x["threads"]),
            fms(t["median_ms"]) if t else "ERR",
            fms(u["median_ms"]) if u else "ERR",
            f"{x['speedup']:.2f}x" if x["speedup"] is not None else "–",
            f1(t["gflops_median"]) if t else "–",
            f1(u["gflops_median"]) if u else "–",
            pct(x["torch_pct"]),
            pct(x["recur_pct"]),
            f1(x["torch_rss"]),
            f1(x["recur_rss"]),
            f1(u["peak_mb"]) if u else "–",
            f"{x['busy']:.0f}" if x["busy"] is not None else "–",
            x["target"],
            x["met"],
        ]) + " |")
    table = "\n".join(lines)

    peak_lines = ["| threads | GEMM f32 GFLOP/s (best median) | medians of the rounds | best single mm |", "|---|---|---|---|"]
    for th in threads:
        ps = peaks[th]
        peak_lines.append(f"| {th} | {max(x['gflops_median'] for x in ps):.1f} | "
                          + ", ".join(f"{x['gflops_median']:.1f}" for x in ps)
                          + f" | {max(x['gflops_best'] for x in ps):.1f} |")
    peak_table = "\n".join(peak_lines)

    elapsed = time.monotonic() - t_start
    print()
    print(peak_table)
    print()
    print(table)
    n_tgt = [x for x in results if x["target"] != "–"]
    n_met = sum(1 for x in n_tgt if x["met"] == "yes")
    print(f"\n{n_met}/{len(n_tgt)} rows meet their targets; {n_meas} measurements in {elapsed / 60:.1f} min "
          f"(waited {idle.spent:.0f} s for a quiet machine)")
    for (rid, th, lib), err in sorted(errors.items()):
        print(f"ERROR {lib} {rid} threads {th}: {err}")

    if not args.out:
        return
    cpu = cpu_info()
    first_torch = next((x for x in raw if x.get("op") == "mm"), {})
    torch_v = first_torch.get("torch", "?")
    build = ", ".join(f"{k} {first_torch[k]}" for k in ("cpu_capability", "mkl", "onednn") if k in first_torch)
    paths = {}
    for x in raw:
        if x.get("lib") == "torch" and "torch_path" in x:
            key = (x["cell"], "streaming step" if x.get("streaming") else x["mode"])
            paths.setdefault(key, set()).add(f"{x['torch_path']} ({', '.join(o for o in x.get('torch_ops', []) if o.startswith('aten::'))})")
    rustc = cmd_out(["rustc", "--version"])
    commit = cmd_out(["git", "rev-parse", "--short", "HEAD"])
    dirty = bool(cmd_out(["git", "status", "--porcelain", "--untracked-files=no"]))
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in cpu["flags"].items())
    busy_max = {th: max((x["busy"] for x in results if x["threads"] == th and x["busy"] is not None), default=0.0)
                for th in threads}

    md = []
    md.append("# Benchmarks: recur vs PyTorch (CPU)\n")
    md.append(f"Generated by `{command}` (about {elapsed / 60:.0f} min). Re-run that command to regenerate this file.\n")
    md.append("## Machine and versions\n")
    md.append(f"- CPU: {cpu['model']}, {cpu['cpus']} logical CPUs"
              + (f", {cpu['cores']} cores" if cpu["cores"] else "")
              + (f", hypervisor {cpu['hypervisor']}" if cpu["hypervisor"] else ""))
    md.append(f"- flags: {flags}")
    md.append(f"- date: {started.strftime('%Y-%m-%d %H:%M UTC')}")
    md.append(f"- torch {torch_v}" + (f" ({build})" if build else ""))
    md.append(f"- {rustc}; recur at commit {commit}" + (" with uncommitted changes" if dirty else ""))
    md.append(f"- settings: threads {','.join(map(str, threads))}; {args.rounds} round(s); per measurement "
              f"{args.warmup} warm-up + at least {args.reps} timed iterations and {args.min_time} s"
              + (f"; filter `{args.filter}`" if args.filter else ""))
    md.append("")
    md.append("## Targets\n")
    md.extend(f"- {t}" for t in TARGETS_TEXT)
    md.append("")
    md.append("## f32 GEMM peak (torch.mm 4096x4096x4096, measured in this run)\n")
    md.append(peak_table)
    md.append("")
    md.append("## Results\n")
    md.append(table)
    md.append("")
    md.append(f"{n_met}/{len(n_tgt)} rows meet their targets.\n")
    md.append("## How this is measured\n")
    md.append(
        "- Each measurement is a fresh process: `target/release/recur bench --row ID --threads N --json` or "
        "`python3 scripts/bench_torch.py --row ID --threads N --json` (same options). recur and PyTorch run one right "
        "after the other for each row, in alternating order, so both see the same machine load; with several rounds the "
        "best median of each is kept. The ratio `torch/recur` = torch median ms / recur median ms (above 1: recur is faster).")
    md.append(
        "- infer = forward over the whole sequence (batch_first, zero initial state; torch under `inference_mode()` in "
        "`eval()`). train = forward + backward of `output.sum() + h_n.sum()` (LSTM: h_n only), weight gradients included, "
        "gradients cleared every iteration; neither computes d input (the torch input does not require a gradient; recur calls "
        "`Rnn::backward_params`). "
        "stream-step = one step of recur's streaming API for batch 1 vs one torch module call on a (1, 1, input) input "
        "with the carried state tuple.")
    md.append(
        "- GFLOP/s: 2·M·N·K per matrix product, gate arithmetic not counted, train = 3 × forward; the same formula for "
        "both libraries (neither computes the input gradient, so the work actually done in `train` is less: 2.5 × "
        "forward for a one-layer row, and its % peak can pass 100 %). % peak = GFLOP/s of the median / the best median GEMM GFLOP/s at the same thread count.")
    md.append(
        "- rss Δ = growth of the process's VmHWM (/proc/self/status) from just before the first warm-up iteration to "
        "the end, measured the same way in both. recur peak MB = the most bytes held at once through recur's allocator "
        "from the first warm-up iteration to the end, beyond the model and its input (the scratch buffers kept for "
        "reuse between calls included; torch has no equivalent on CPU).")
    md.append(
        f"- busy % = share of the CPUs used by other processes during the kept measurements (worst of the two); the "
        f"machine is shared. Max per thread count: "
        + ", ".join(f"{th} thr {busy_max[th]:.0f}%" for th in threads) + ".")
    if paths:
        md.append("- PyTorch kernel path (profiled after timing): "
                  + "; ".join(f"{c} {m}: {' / '.join(sorted(v))}" for (c, m), v in sorted(paths.items())) + ".")
    if errors:
        md.append("- errors: " + "; ".join(f"{lib} `{rid}` threads {th}: {err}" for (rid, th, lib), err in sorted(errors.items())))
    md.append("")
    # The hand-written "## Where the time goes" section (measurements that explain the rows that
    # miss their target) is kept from the previous file when this one is regenerated.
    out = ROOT / args.out
    prev = out.read_text() if out.exists() else ""
    if "## Where the time goes" in prev:
        notes = prev[prev.index("## Where the time goes"):]
        notes = notes[:notes.index("<details>")] if "<details>" in notes else notes
        md.append(notes.rstrip() + "\n")
    md.append("<details><summary>Raw JSON lines (every GEMM peak and row measurement, in the order measured)</summary>\n")
    md.append("```json")
    md.extend(json.dumps(x) for x in raw)
    md.append("```\n</details>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(md) + "\n")
    log(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
