#!/usr/bin/env python3
"""Train the same character-level language model with `recur train lm` and with PyTorch, one after
the other, and write docs/charlm-vs-pytorch.md: the settings, both validation curves (bits per
character at the same steps), and the time each took.

    nice -n 10 python3 scripts/compare_charlm.py --train ../shared/data/char-lm/prideprejudice.txt \\
        --steps 1800 --seed 0 --threads 2

The PyTorch side copies `recur train lm` (crates/recur-cli/src/train.rs, crates/recur/src/models/lm.rs,
crates/recur/src/data/text.rs):
  - data: the last 5% of the characters held out for validation unless --valid is given; the
    vocabulary is id 0 = <unk> then the distinct training characters in code-point order;
  - batches: the ids cut into --batch-size contiguous streams of L = (n - 1) // B steps (stream b
    reads ids b*L .. b*L + L and predicts the next ones), read --seq-len steps at a time; chunk k
    of every pass, the state carried from chunk to chunk and detached, reset to zeros at the start
    of each pass;
  - model: nn.Embedding(V, E) -> nn.LSTM(E, H, num_layers, dropout) -> nn.Dropout -> nn.Linear(H, V)
    (time-major), PyTorch's default initialization seeded with torch.manual_seed(seed);
  - step: mean cross-entropy of the chunk, backward, clip_grad_norm_(parameters, --clip-grad-norm),
    Adam(lr) (or SGD(lr)), as many steps as --steps;
  - evaluation every ceil(steps / 10) steps and at the end: the validation ids cut into --batch-size
    streams the same way, the state carried, eval mode, the summed cross-entropy (in float64 from
    the float32 logits) over B*L targets, in bits per character.
By default both sides start from the same weights: recur's initialization for --seed, saved by a
one-step run with a learning rate of 1e-30 (`recur train lm --steps 1 --lr 1e-30`: an Adam update of
about 1e-29 leaves every float32 weight as it was) and loaded into the PyTorch model; the curves
then differ only by the rounding of the two implementations, which grows as training goes on. With
--own-init PyTorch initializes its model itself (torch.manual_seed(seed)): the same distributions
from another generator.

Each side runs in a fresh process (recur: target/release/recur, built first with
`cargo build --release -p recur-cli`; PyTorch: this script with --worker torch), restricted to
--threads CPUs (and torch.set_num_threads(--threads)); the wall-clock and CPU time of each process
are measured, and the share of the CPUs other processes used meanwhile (the machine may be shared).

The script re-executes itself with the venv python (scripts/venv.sh) if torch is not importable.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

sys.path.insert(0, str(ROOT / "scripts"))
import venvpy  # noqa: E402

venvpy.ensure()

import argparse  # noqa: E402
import datetime  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

RECUR = ROOT / "target" / "release" / "recur"
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
LN2 = math.log(2.0)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# the PyTorch side (run in its own process: --worker torch)


def read_text(path):
    data = Path(path).read_bytes()
    if not data:
        raise SystemExit(f"{path}: the file is empty")
    return data.decode("utf-8")


def split_data(args):
    """(train_text, valid_text), as recur train lm splits them."""
    full = read_text(args.train)
    if args.valid:
        return full, read_text(args.valid)
    n = len(full)
    n_valid = max(-(-n // 20), 2)
    return full[: n - n_valid], full[n - n_valid :]


def streams(torch, ids, batch, seq_len):
    """recur::text::Batches: (L + 1, B) time-major ids and the chunks (start, steps)."""
    L = (len(ids) - 1) // batch
    assert L >= 1, "the text is too short for the batch size"
    t = torch.tensor(ids, dtype=torch.long)
    index = torch.arange(L + 1)[:, None] + torch.arange(batch)[None, :] * L
    data = t[index]
    chunks = [(s, min(seq_len, L - s)) for s in range(0, L, seq_len)]
    return data, chunks, batch * L


def torch_worker(args):
    start = time.monotonic()
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_text, valid_text = split_data(args)
    chars = sorted(set(train_text))
    index = {c: k + 1 for k, c in enumerate(chars)}
    V = len(chars) + 1

    def encode(s):
        return [index.get(c, 0) for c in s]

    train_ids, valid_ids = encode(train_text), encode(valid_text)
    B, S = args.batch_size, args.seq_len
    data, chunks, _ = streams(torch, train_ids, B, S)
    vb = min(max(B, 1), len(valid_ids) - 1)
    vdata, vchunks, vtargets = streams(torch, valid_ids, vb, S)

    rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn_tanh": nn.RNN, "rnn_relu": nn.RNN}[args.cell]
    rnn_kw = {"nonlinearity": args.cell[4:]} if args.cell.startswith("rnn_") else {}

    class CharLm(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, args.embed_size)
            self.rnn = rnn_cls(args.embed_size, args.hidden_size, num_layers=args.num_layers, dropout=args.dropout, **rnn_kw)
            self.drop = nn.Dropout(args.dropout)
            self.head = nn.Linear(args.hidden_size, V)

        def forward(self, x, state):
            y, state = self.rnn(self.embed(x), state)
            return self.head(self.drop(y)), state

    model = CharLm()
    if args.init:
        import safetensors.torch

        model.load_state_dict(safetensors.torch.load_file(args.init), strict=True)
    num_params = sum(p.numel() for p in model.parameters())
    if args.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=args.lr)

    def detach(state):
        if state is None:
            return None
        return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()

    def evaluate():
        model.eval()
        total = 0.0
        state = None
        with torch.no_grad():
            for s, n in vchunks:
                logits, state = model(vdata[s : s + n], state)
                total += F.cross_entropy(logits.reshape(-1, V).double(), vdata[s + 1 : s + 1 + n].reshape(-1), reduction="sum").item()
        model.train()
        loss = total / vtargets
        return loss

    total_steps = args.steps
    eval_every = args.eval_every or max(1, -(-total_steps // 10))
    curve = []
    state = None
    eval_loss, eval_n = 0.0, 0
    train_secs = 0.0
    loop_start = time.monotonic()
    model.train()
    for step in range(1, total_steps + 1):
        k = (step - 1) % len(chunks)
        if k == 0:
            state = None
        t0 = time.monotonic()
        s, n = chunks[k]
        logits, next_state = model(data[s : s + n], state)
        loss = F.cross_entropy(logits.reshape(-1, V), data[s + 1 : s + 1 + n].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip_grad_norm > 0:
            nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad_norm)
        opt.step()
        state = detach(next_state)
        lv = loss.item()
        train_secs += time.monotonic() - t0
        if not math.isfinite(lv):
            raise SystemExit(f"PyTorch diverged at step {step} (loss {lv})")
        eval_loss += lv
        eval_n += 1
        if step % eval_every == 0 or step == total_steps:
            vl = evaluate()
            curve.append(
                {
                    "step": step,
                    "epoch": step / len(chunks),
                    "train_loss": eval_loss / max(1, eval_n),
                    "train_bpc": eval_loss / max(1, eval_n) / LN2,
                    "valid_loss": vl,
                    "valid_bpc": vl / LN2,
                    "seconds": time.monotonic() - start,
                }
            )
            log(f"torch step {step}: valid bpc {vl / LN2:.4f}")
            eval_loss, eval_n = 0.0, 0
    loop_secs = time.monotonic() - loop_start
    chars = sum(chunks[(s - 1) % len(chunks)][1] for s in range(1, total_steps + 1)) * B
    out = {
        "curve": curve,
        "seconds": loop_secs,
        "steps_per_second": total_steps / train_secs,
        "chars_per_second": chars / train_secs,
        "train_seconds": train_secs,
        "num_params": num_params,
        "vocab_size": V,
        "train_chars": len(train_ids),
        "valid_chars": len(valid_ids),
        "valid_targets": vtargets,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_config": torch.__config__.parallel_info().splitlines()[:6],
    }
    Path(args.json_out).write_text(json.dumps(out))


# --------------------------------------------------------------------------------------------------
# measurement


def cpu_jiffies():
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    total = sum(v[:8])
    return total - (v[3] + v[4]), total


def other_busy_pct(window=2.0):
    """Share of all CPUs used by other processes over `window` seconds (this script is idle)."""
    b0, t0 = cpu_jiffies()
    time.sleep(window)
    b1, t1 = cpu_jiffies()
    return 100.0 * (b1 - b0) / max(1, t1 - t0)


def wait_idle(below, max_wait):
    """Waits (at most max_wait seconds) until other processes use less than `below` % of the CPUs
    for 10 s in a row; returns the seconds waited."""
    t0 = time.monotonic()
    quiet = 0
    last_log = 0.0
    while time.monotonic() - t0 < max_wait:
        busy = other_busy_pct()
        quiet = quiet + 1 if busy < below else 0
        if quiet >= 5:
            break
        if time.monotonic() - last_log > 60:
            log(f"waiting for the machine to be idle: others use {busy:.0f}% of the CPUs (load average {os.getloadavg()[0]:.1f})")
            last_log = time.monotonic()
    return time.monotonic() - t0


def run_measured(cmd, cpus, env=None):
    """Runs cmd restricted to `cpus`; returns (wall s, cpu s, other processes' share of the CPUs %)."""
    c0 = os.times()
    b0, _ = cpu_jiffies()
    w0 = time.monotonic()
    log("$ " + " ".join(shlex.quote(str(c)) for c in cmd))
    p = subprocess.run(cmd, cwd=ROOT, env=env, preexec_fn=lambda: os.sched_setaffinity(0, cpus), stdout=subprocess.PIPE, text=True)
    wall = time.monotonic() - w0
    b1, _ = cpu_jiffies()
    c1 = os.times()
    if p.returncode != 0:
        sys.stdout.write(p.stdout)
        raise SystemExit(f"failed (exit code {p.returncode}): {cmd[0]}")
    cpu = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
    busy = (b1 - b0) / CLK_TCK
    other = max(0.0, 100.0 * (busy - cpu) / max(1e-9, wall * NCPU))
    return wall, cpu, other, p.stdout


def cmd_out(cmd):
    try:
        return subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
    except OSError:
        return "unknown"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return "unknown"


def fmt(v, d=4):
    return f"{v:.{d}f}"


def recur_metrics(m):
    """The figures of recur's metrics.json (written by its training runner) under the names the
    PyTorch side reports."""
    rep = m["report"]
    curve = [dict(pt, train_bpc=pt["train_loss"] / LN2) for pt in m["curve"]]
    steps = m["steps"]
    train_secs = m["train_seconds"]
    return {
        "curve": curve,
        "steps": steps,
        "epochs": curve[-1]["epoch"] if curve else 0.0,
        "seconds": curve[-1]["seconds"] if curve else train_secs,
        "steps_per_second": steps / train_secs,
        "chars_per_second": m["units_per_second"],
        "train_seconds": train_secs,
        "num_params": int(rep["num_params"]),
        "vocab_size": int(rep["vocab_size"]),
        "train_chars": int(rep["train_chars"]),
        "valid_chars": int(rep["valid_chars"]),
        "valid_targets": int(rep["valid_targets"]),
        "unigram_bpc": rep["unigram_bpc"],
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", default="../shared/data/char-lm/prideprejudice.txt", help="training text (relative to the current directory)")
    p.add_argument("--valid", default=None, help="validation text (default: the last 5%% of --train)")
    p.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn_tanh", "rnn_relu"])
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--num-layers", type=int, default=2)
    p.add_argument("--embed-size", type=int, default=64)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    p.add_argument("--clip-grad-norm", type=float, default=5.0)
    p.add_argument("--steps", type=int, default=1800)
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="threads (and CPUs) of each side (default 2)")
    p.add_argument("--out", default=str(ROOT / "docs" / "charlm-vs-pytorch.md"), help="the report to write")
    p.add_argument("--idle-below", type=float, default=25.0, help="before each side, wait until other processes use less than this %% of the CPUs (default 25)")
    p.add_argument("--idle-wait", type=float, default=3600.0, help="at most this many seconds of waiting before each side (default 3600; 0: do not wait)")
    p.add_argument("--own-init", action="store_true", help="let PyTorch initialize its model itself instead of starting from recur's initial weights")
    p.add_argument("--worker", choices=["torch"], help=argparse.SUPPRESS)
    p.add_argument("--init", help=argparse.SUPPRESS)
    p.add_argument("--json-out", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.train = str(Path(args.train).resolve())
    if args.valid:
        args.valid = str(Path(args.valid).resolve())
    if args.worker == "torch":
        torch_worker(args)
        return

    if not Path(args.train).is_file():
        raise SystemExit(f"--train {args.train}: no such file (give the path of the training text)")
    avail = sorted(os.sched_getaffinity(0))
    if args.threads < 1 or args.threads > len(avail):
        raise SystemExit(f"--threads {args.threads}: this process may use {len(avail)} CPUs")
    cpus = set(avail[: args.threads])

    log("building recur (cargo build --release -p recur-cli)")
    subprocess.run(["cargo", "build", "--release", "-p", "recur-cli"], cwd=ROOT, check=True)

    shared = [
        "--cell", args.cell, "--hidden-size", args.hidden_size, "--num-layers", args.num_layers,
        "--embed-size", args.embed_size, "--dropout", args.dropout, "--seq-len", args.seq_len,
        "--batch-size", args.batch_size, "--lr", args.lr, "--optimizer", args.optimizer,
        "--clip-grad-norm", args.clip_grad_norm, "--steps", args.steps, "--seed", args.seed,
        # PyTorch's plain nn.LSTM at a constant rate, not recur train lm's layer-normalized,
        # cosine-scheduled defaults.
        "--layer-norm=false", "--lr-schedule", "constant",
    ]
    if args.eval_every:
        shared += ["--eval-every", args.eval_every]
    data_args = ["--train", args.train] + (["--valid", args.valid] if args.valid else [])
    shared = [str(x) for x in shared]

    with tempfile.TemporaryDirectory(prefix="charlm-cmp-") as tmp:
        model_dir = Path(tmp) / "recur-model"
        recur_cmd = [str(RECUR), "train", "lm", *data_args, "--out", str(model_dir), *shared, "--sample-length", "0", "--log-every", "30"]
        waited = [wait_idle(args.idle_below, args.idle_wait)]
        r_load = os.getloadavg()[0]
        r_wall, r_cpu, r_other, r_stdout = run_measured(recur_cmd, cpus)
        rec = recur_metrics(json.loads((model_dir / "metrics.json").read_text()))
        cfg = json.loads((model_dir / "config.json").read_text())

        json_out = Path(tmp) / "torch.json"
        torch_cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "torch", "--json-out", str(json_out), *data_args, *shared, "--threads", str(args.threads)]
        if not args.own_init:
            init_dir = Path(tmp) / "recur-init"
            init_cmd = [str(RECUR), "train", "lm", *data_args, "--out", str(init_dir), *shared, "--sample-length", "0"]
            # the same options, but one step of lr 1e-30 with an evaluation (which saves the model)
            for flag, value in (("--steps", "1"), ("--lr", "1e-30"), ("--eval-every", "1")):
                if flag in init_cmd:
                    init_cmd[init_cmd.index(flag) + 1] = value
                else:
                    init_cmd += [flag, value]
            log("$ " + " ".join(shlex.quote(c) for c in init_cmd))
            subprocess.run(init_cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
            torch_cmd += ["--init", str(init_dir / "model.safetensors")]
        waited.append(wait_idle(args.idle_below, args.idle_wait))
        t_load = os.getloadavg()[0]
        t_wall, t_cpu, t_other, _ = run_measured(torch_cmd, cpus, env=dict(os.environ, RECUR_VENV_REEXEC="1"))
        tor = json.loads(json_out.read_text())

    # Same data and model on both sides.
    for key in ("num_params", "vocab_size", "train_chars", "valid_chars"):
        assert rec[key] == tor[key], (key, rec[key], tor[key])
    assert rec["valid_targets"] == tor["valid_targets"], (rec["valid_targets"], tor["valid_targets"])
    r_curve = {pt["step"]: pt for pt in rec["curve"]}
    t_curve = {pt["step"]: pt for pt in tor["curve"]}
    assert sorted(r_curve) == sorted(t_curve), (sorted(r_curve), sorted(t_curve))

    train_bytes = Path(args.train).read_bytes()
    sha = hashlib.sha256(train_bytes).hexdigest()[:16]
    rel = lambda s: os.path.relpath(s, ROOT)  # noqa: E731
    cmd = ["python3", "scripts/compare_charlm.py", "--train", rel(args.train)]
    if args.valid:
        cmd += ["--valid", rel(args.valid)]
    defaults = {a.dest: a.default for a in p._actions}
    if args.own_init:
        cmd.append("--own-init")
    for k in ("cell", "hidden_size", "num_layers", "embed_size", "dropout", "seq_len", "batch_size", "lr", "optimizer", "clip_grad_norm", "steps", "eval_every", "seed", "threads"):
        v = getattr(args, k)
        if v != defaults[k] or k in ("steps", "seed", "threads"):
            cmd += ["--" + k.replace("_", "-"), str(v)]
    command = "nice -n 10 " + " ".join(shlex.quote(c) for c in cmd)

    chunks_per_epoch = round(rec["steps"] / rec["epochs"]) if rec["epochs"] else 0
    eval_every = rec["curve"][0]["step"] if rec["curve"] else 0
    rnn_name = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN(tanh)", "rnn_relu": "RNN(relu)"}[args.cell]
    rustc = cmd_out(["rustc", "--version"])
    commit = cmd_out(["git", "rev-parse", "--short", "HEAD"])
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    lines = []
    w = lines.append
    w("# Character-level language model: recur vs PyTorch")
    w("")
    w(f"Generated by `{command}` (from the repository root; {now}). Re-run that command to regenerate this file.")
    w("")
    w("Both train the same model on the same data with the same batches, optimizer and evaluation (the PyTorch")
    w("side copies `recur train lm`; see the docstring of `scripts/compare_charlm.py`), one after the other, each in")
    w(f"its own process restricted to {args.threads} CPU(s).")
    w("")
    w("## Settings")
    w("")
    w("| | |")
    w("|---|---|")
    held = "the last 5% held out for validation" if not args.valid else f"validation on `{Path(args.valid).name}`"
    w(f"| data | `{Path(args.train).name}` ({len(train_bytes):,} bytes, sha256 {sha}…), {held}: {rec['train_chars']:,} training and {rec['valid_chars']:,} validation characters; vocabulary {rec['vocab_size']} (with `<unk>`) |")
    w(f"| model | Embedding({rec['vocab_size']}, {cfg['embed_size']}) → {rnn_name}({cfg['embed_size']}, {cfg['hidden_size']}, num_layers={cfg['num_layers']}, dropout={cfg['dropout']}) → Dropout({cfg['dropout']}) → Linear({cfg['hidden_size']}, {rec['vocab_size']}); {rec['num_params']:,} parameters |")
    w(f"| batches | {args.batch_size} contiguous streams read {args.seq_len} characters at a time (truncated BPTT, state carried and detached; {chunks_per_epoch} chunks per pass) |")
    opt_name = "Adam" if args.optimizer == "adam" else "SGD"
    clip = f"clip_grad_norm {args.clip_grad_norm}" if args.clip_grad_norm > 0 else "no clipping"
    w(f"| training | {rec['steps']} steps ({rec['epochs']:.2f} epochs), {opt_name}(lr={args.lr}), {clip}, seed {args.seed}, float32 |")
    w(f"| evaluation | every {eval_every} steps and at the end: validation text in {args.batch_size} streams, state carried, {rec['valid_targets']:,} predicted characters, bits per character |")
    w(f"| threads | {args.threads}: recur's default (all the CPUs the process may use, here {args.threads}); PyTorch `torch.set_num_threads({args.threads})` |")
    w(f"| versions | torch {tor['torch']}; {rustc}; recur at commit {commit} |")
    w(f"| machine | {cpu_model()}, {NCPU} logical CPUs; both runs under `nice -n 10` |")
    w("")
    if args.own_init:
        w("The initial weights differ (both use PyTorch's default initialization distributions, from different")
        w("random generators), so the curves differ by that noise; they are not expected to match digit for digit.")
    else:
        w("Both start from the same weights: recur's initialization for the seed (saved by `recur train lm --steps 1")
        w("--lr 1e-30`, whose update is far below float32 resolution) loaded into the PyTorch model. The curves then")
        w("differ only through rounding (float32, different kernels and summation orders), which the training")
        w("amplifies as it goes: close agreement early on, drifting apart slowly later.")
    w("")
    w("## Validation curve (bits per character)")
    w("")
    w("| step | epoch | recur valid | PyTorch valid | recur − PyTorch | recur train | PyTorch train |")
    w("|---|---|---|---|---|---|---|")
    for step in sorted(r_curve):
        a, b = r_curve[step], t_curve[step]
        w(f"| {step} | {a['epoch']:.2f} | {fmt(a['valid_bpc'])} | {fmt(b['valid_bpc'])} | {a['valid_bpc'] - b['valid_bpc']:+.1e} | {fmt(a['train_bpc'])} | {fmt(b['train_bpc'])} |")
    best_r = min(pt["valid_bpc"] for pt in rec["curve"])
    best_t = min(pt["valid_bpc"] for pt in tor["curve"])
    w("")
    w(f"Best validation: recur {best_r:.4f}, PyTorch {best_t:.4f} bits per character (unigram baseline {rec['unigram_bpc']:.4f}).")
    w("")
    w("## Time")
    w("")
    w("| | recur | PyTorch | PyTorch / recur |")
    w("|---|---|---|---|")

    def row(name, a, b, unit="s", d=1, ratio=True):
        r = f"{b / a:.2f}x" if ratio and a > 0 else ""
        w(f"| {name} | {a:.{d}f} {unit} | {b:.{d}f} {unit} | {r} |")

    row("process wall-clock (start-up, data, training, evaluations)", r_wall, t_wall)
    row("training loop, evaluations included (wall-clock)", rec["seconds"], tor["seconds"])
    r_train = rec["steps"] / rec["steps_per_second"]
    row("training steps only (wall-clock)", r_train, tor["train_seconds"])
    row("CPU time of the process (user + system)", r_cpu, t_cpu)
    w(f"| training speed | {rec['steps_per_second']:.2f} steps/s, {rec['chars_per_second'] / 1e3:.1f}k chars/s | {tor['steps_per_second']:.2f} steps/s, {tor['chars_per_second'] / 1e3:.1f}k chars/s | |")
    w(f"| other processes' share of the CPUs during the run | {r_other:.0f}% | {t_other:.0f}% | |")
    w(f"| load average (1 min) at the start; seconds waited for an idle machine | {r_load:.1f}; {waited[0]:.0f} s | {t_load:.1f}; {waited[1]:.0f} s | |")
    w("")
    w("PyTorch / recur above 1 means recur was faster. The machine may be shared with other jobs: before each side the")
    w(f"script waits (at most {args.idle_wait:.0f} s) until other processes use less than {args.idle_below:.0f}% of the CPUs, and the")
    w("last rows say how much they took while each side ran (the times are only comparable when both shares are low;")
    w("PyTorch's OpenMP threads slow down much more than recur's when the CPUs are oversubscribed).")
    w("")
    w("## Raw")
    w("")
    w("```")
    w(f"recur:   target/release/recur train lm {' '.join(shlex.quote(rel(a)) if a.startswith('/') else a for a in data_args)} --out DIR {' '.join(shared)} --sample-length 0")
    w(f"PyTorch: python3 scripts/compare_charlm.py --worker torch ... {' '.join(shared)} --threads {args.threads}")
    w(f"torch threads: {tor['torch_threads']}")
    for ln in tor["torch_config"]:
        w(f"  {ln}")
    w("```")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
