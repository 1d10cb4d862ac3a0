#!/usr/bin/env python3
"""What storing a trained model's recurrent weights in f16, bf16 or int8 costs in quality.

    python3 scripts/precision_cost.py --model pp --data text.txt [--recur target/release/recur]

For each precision (f32, f16, bf16) the script copies the model directory, rounds every recurrent
weight of its model.safetensors (`weight_ih*`, `weight_hh*`, `weight_hr*`; biases, embeddings and
heads stay f32, as in recur's reduced-precision streams) to the 16-bit format and back with NumPy
(f16: numpy's float16 cast; bf16: round to nearest even on the top 16 bits), runs
`recur eval --model COPY --data DATA --json`, and prints one table row of the metrics. Then int8:
`recur eval --precision int8` on the model, and `recur eval` on a `recur quantize --precision int8`
copy (the rounding of the activations at every step is part of the scheme, so recur computes it).

This measures the model that recur's f16/bf16 path computes: that path rounds the same weights (to
nearest, ties to even) and multiplies in f32, and crates/recur/tests/stream_precision.rs checks it
against an f64 computation on the rounded weights to 2e-5. The rounding here is NumPy's, an
independent implementation of the one in recur (the `half` crate).
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import venvpy  # noqa: E402

venvpy.ensure(("numpy", "safetensors"))

import numpy as np  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

RECURRENT = ("weight_ih", "weight_hh", "weight_hr")


def round_bf16(x):
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def round_to(x, precision):
    if precision == "f32":
        return x
    if precision == "f16":
        if np.abs(x).max(initial=0.0) > 65504.0:
            raise SystemExit("a weight is beyond the range of f16")
        return x.astype(np.float16).astype(np.float32)
    return round_bf16(x)


def evaluate(recur, model, data, precision, extra):
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "model"
        shutil.copytree(model, copy)
        weights = copy / "model.safetensors"
        tensors = load_file(str(weights))
        rounded = 0
        for name, t in tensors.items():
            if t.dtype == np.float32 and any(k in name.split(".")[-1] for k in RECURRENT):
                tensors[name] = round_to(t, precision)
                rounded += t.size
        save_file(tensors, str(weights))
        out = subprocess.run([str(recur), "eval", "--model", str(copy), "--data", str(data), "--json", *extra],
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1]), rounded


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a model directory written by recur train")
    p.add_argument("--data", required=True, help="the evaluation data (as for recur eval)")
    p.add_argument("--recur", default=str(ROOT / "target" / "release" / "recur"), help="the recur binary")
    p.add_argument("--metrics", default="", help="comma-separated metric names to print (default: every number)")
    args, extra = p.parse_known_args()
    rows = []
    for precision in ("f32", "f16", "bf16"):
        m, n = evaluate(args.recur, args.model, args.data, precision, extra)
        rows.append((precision, m, n))
    # int8 rounds the activations too, at every step, which rounding the file cannot show:
    # recur's own whole-sequence int8 path (`recur eval --precision int8`), and the same
    # through a directory written by `recur quantize` (which must give the same numbers).
    for label in ("int8", "int8 (recur quantize)"):
        with tempfile.TemporaryDirectory() as tmp:
            model, flags = args.model, ["--precision", "int8"]
            if label != "int8":
                model = str(Path(tmp) / "q")
                subprocess.run([str(args.recur), "quantize", "--model", args.model, "--precision", "int8",
                                "--out", model], check=True, capture_output=True)
                flags = []
            out = subprocess.run([str(args.recur), "eval", "--model", model, "--data", str(args.data), "--json",
                                  *flags, *extra], check=True, capture_output=True, text=True).stdout
            rows.append((label, json.loads(out.strip().splitlines()[-1]), "recur"))
    # Metrics are the float values that are not counts.
    keys = [k for k in (args.metrics.split(",") if args.metrics else rows[0][1])
            if isinstance(rows[0][1].get(k), float) and not rows[0][1][k].is_integer()]
    print("| weights | rounded weights | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for precision, m, n in rows:
        print(f"| {precision} | {n if precision != 'f32' else 0} | " + " | ".join(f"{m[k]:.6f}" for k in keys) + " |")
    print(json.dumps({pr: m for pr, m, _ in rows}))


if __name__ == "__main__":
    main()
