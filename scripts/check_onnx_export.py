#!/usr/bin/env python3
"""Checks `recur export` with onnx.checker and ONNX Runtime.

Layers (default): every layer fixture of tests/fixtures/parity (PyTorch state_dicts with
inputs and PyTorch's float64 outputs): `recur export --onnx M.onnx --weights F --prefix params
[...]`, then onnx.checker.check_model(M, full_check=True), then ONNX Runtime runs M on the
fixture's input (and h0/c0, lengths) and its outputs must equal PyTorch's to f32 tolerance
(atol 1e-5, rtol 1e-4). Fixtures with proj_size must be refused with exit status 2 and a
message naming proj_size.

Model directories (`--models [FOLDER]`, default tests/fixtures/onnx/export_models): every case
folder written by crates/recur-cli/tests/export_model.rs (`recur export --model DIR` of tiny
trained models of every kind, their inputs, and recur's own predictions in
expected.safetensors). Each graph passes onnx.checker.check_model(full_check=True); ONNX
Runtime runs `model.onnx` on inputs.safetensors, or for a sequence-to-sequence case drives
`encoder.onnx` then `decoder.onnx` one step at a time with teacher forcing (the ids of
`dec_input`, the state fed back), and every output must equal recur's to f32 tolerance
(atol 2e-5, rtol 1e-4; padded target positions are skipped).

Usage: python3 scripts/check_onnx_export.py [path/to/recur]   (default target/release/recur)
       python3 scripts/check_onnx_export.py --models [FOLDER]
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


def _load(path):
    with safe_open(path, "numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _session(path):
    onnx.checker.check_model(onnx.load(path), full_check=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _feed(sess, values):
    """The graph's inputs from `values`, in the graph's element types."""
    types = {"tensor(int64)": np.int64, "tensor(int32)": np.int32,
             "tensor(float)": np.float32, "tensor(double)": np.float64}
    return {i.name: np.ascontiguousarray(values[i.name].astype(types[i.type]))
            for i in sess.get_inputs()}


def _run(sess, values):
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, _feed(sess, values))))


def _compare(got, want):
    """(error in units of the tolerance, max abs difference)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"shape {got.shape}, recur's {want.shape}")
    if not want.size:
        return 0.0, 0.0
    d = np.abs(got - want)
    return float(np.max(d / (2e-5 + 1e-4 * np.abs(want)))), float(np.max(d))


def check_model_case(case_dir):
    """Checks one case folder; returns {"case", "graphs", "outputs", "max_abs", "ratio"}."""
    inputs = _load(os.path.join(case_dir, "inputs.safetensors"))
    expected = _load(os.path.join(case_dir, "expected.safetensors"))
    ratio = worst = 0.0
    single = os.path.join(case_dir, "model.onnx")
    if os.path.exists(single):
        graphs = ["model.onnx"]
        got = _run(_session(single), inputs)
        for k, want in expected.items():
            r, w = _compare(got[k], want)
            ratio, worst = max(ratio, r), max(worst, w)
    else:
        # Sequence to sequence: the encoder once, then one decoder step per target position.
        graphs = ["encoder.onnx", "decoder.onnx"]
        enc = _run(_session(os.path.join(case_dir, "encoder.onnx")), inputs)
        dec = _session(os.path.join(case_dir, "decoder.onnx"))
        dec_in, tgt_len = inputs["dec_input"], inputs["tgt_lengths"]
        want = expected["logits"]  # (batch, steps, tgt_vocab)
        state = {"h0": enc["h_n"]}
        if "c_n" in enc:
            state["c0"] = enc["c_n"]
        for t in range(dec_in.shape[1]):
            values = dict(enc, **state, tokens=dec_in[:, t], src_lengths=inputs["src_lengths"])
            out = _run(dec, values)
            rows = [b for b in range(dec_in.shape[0]) if t < tgt_len[b]]
            r, w = _compare(out["logits"][rows], want[rows, t])
            ratio, worst = max(ratio, r), max(worst, w)
            state = {"h0": out["h_n"]}
            if "c_n" in out:
                state["c0"] = out["c_n"]
    return {"case": os.path.basename(case_dir), "graphs": graphs,
            "outputs": sorted(expected), "max_abs": worst, "ratio": ratio}


def check_models(folder):
    """Checks every case folder of `folder`; returns the number of failures."""
    failed = 0
    results = []
    for case in sorted(os.listdir(folder)):
        d = os.path.join(folder, case)
        if not os.path.isdir(d):
            continue
        try:
            r = check_model_case(d)
        except Exception as e:  # noqa: BLE001 - report every case
            failed += 1
            print(f"FAIL {case}: {e}")
            continue
        results.append(r)
        ok = r["ratio"] <= 1.0
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {case}: {' + '.join(r['graphs'])}, "
              f"max abs difference {r['max_abs']:.2e} ({r['ratio']:.3f} of the tolerance)")
    print(json.dumps({"onnx": onnx.__version__, "onnxruntime": ort.__version__, "cases": len(results),
                      "max_abs_difference": max((r["max_abs"] for r in results), default=0.0)}))
    print(f"{sum(r['ratio'] <= 1.0 for r in results)} passed, {failed} failed")
    return failed


def check_layers(recur):
    """Checks every layer fixture; returns the number of failures."""
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
    return failed


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--models":
        folder = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
            root, "tests", "fixtures", "onnx", "export_models")
        sys.exit(1 if check_models(folder) else 0)
    recur = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "target", "release", "recur")
    sys.exit(1 if check_layers(recur) else 0)
