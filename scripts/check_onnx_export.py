#!/usr/bin/env python3
"""Checks `recur export` against ONNX Runtime and PyTorch on every layer fixture of
tests/fixtures/parity (PyTorch state_dicts with inputs and PyTorch's float64 outputs).

For each fixture: `recur export --onnx M.onnx --weights F --prefix params [...]`, then
onnx.checker.check_model(M, full_check=True), then ONNX Runtime runs M on the fixture's input
(and h0/c0, lengths) and its outputs must equal PyTorch's to f32 tolerance (atol 1e-5, rtol
1e-4). Fixtures with proj_size must be refused with exit status 2 and a message naming
proj_size.

Usage: python3 scripts/check_onnx_export.py [path/to/recur]   (default target/release/recur)
"""
import glob
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from safetensors import safe_open

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.join(here, "..")
recur = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "target", "release", "recur")
passed = failed = refused = 0
worst = 0.0
tmp = tempfile.mkdtemp()
for path in sorted(glob.glob(os.path.join(root, "tests", "fixtures", "parity", "*.safetensors"))):
    with safe_open(path, "numpy") as f:
        meta = f.metadata()
        if meta["module"] != "layer" or meta.get("dropout", "0") not in ("0", "0.0"):
            continue
        t = {k: f.get_tensor(k) for k in f.keys()}
    name = os.path.basename(path)[:-12]
    out = os.path.join(tmp, name + ".onnx")
    bf = meta["batch_first"] == "true"
    has_h0 = meta["has_h0"] == "true"
    ragged = meta["ragged"] == "true"
    args = [recur, "export", "--onnx", out, "--weights", path, "--prefix", "params"]
    if meta["mode"] == "rnn_relu":
        args += ["--nonlinearity", "relu"]
    if bf:
        args.append("--batch-first")
    if has_h0:
        args.append("--initial-state")
    if ragged:
        args.append("--lengths")
    r = subprocess.run(args, capture_output=True, text=True)
    if meta["proj_size"] != "0":
        if r.returncode == 2 and "proj_size" in r.stderr:
            refused += 1
        else:
            failed += 1
            print(f"FAIL {name}: proj_size not refused: {r.returncode} {r.stderr.strip()}")
        continue
    if r.returncode != 0:
        failed += 1
        print(f"FAIL {name}: {r.stderr.strip()}")
        continue
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    feeds = {"input": t["input"].astype(np.float32)}
    if has_h0:
        feeds["h0"] = t["h0"].astype(np.float32)
        if meta["mode"] == "lstm":
            feeds["c0"] = t["c0"].astype(np.float32)
    if ragged:
        feeds["lengths"] = t["lengths"].astype(np.int32)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(out, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(None, feeds)))
    bad = []
    for k in ("output", "h_n", "c_n"):
        if "expected." + k not in t:
            continue
        e = t["expected." + k]
        g = got[k]
        err = float(np.max(np.abs(g - e) / (1e-5 + 1e-4 * np.abs(e)))) if e.size else 0.0
        worst = max(worst, float(np.max(np.abs(g - e))) if e.size else 0.0)
        if g.shape != e.shape or err > 1.0:
            bad.append(f"{k}: shape {g.shape} vs {e.shape}, {err:.2f} x tolerance")
    if bad:
        failed += 1
        print(f"FAIL {name}: {'; '.join(bad)}")
    else:
        passed += 1
print(json.dumps({"onnx": onnx.__version__, "onnxruntime": ort.__version__, "max_abs_difference": worst}))
print(f"{passed} passed, {failed} failed, {refused} refused (proj_size)")
sys.exit(1 if failed else 0)
