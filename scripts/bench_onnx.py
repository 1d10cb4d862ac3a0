#!/usr/bin/env python3
"""recur against ONNX Runtime on the same ONNX models, in process, interleaved, at 1 and 2
threads; writes the table of docs/onnx.md's speed section to stdout (markdown).

Each measurement: a fresh `time_onnx` process (recur's example: loads the model, 3 warm-up
runs, then ITERS timed runs of Model::run, median) and, right after or before it (the order
alternates), an ONNX Runtime session in this process (intra_op_num_threads = threads,
3 warm-up runs, ITERS timed runs of session.run, median). ROUNDS rounds; the table gives the
median over rounds of each side and the ratio ORT / recur (above 1: recur is faster).

Usage: python3 scripts/bench_onnx.py [--rounds 3] [--iters 20]
  (builds target/release/examples/time_onnx first: cargo build --release -p recur-onnx --example time_onnx)
"""
import argparse
import json
import os
import platform
import subprocess
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save_file

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
exe = os.path.join(root, "target", "release", "examples", "time_onnx")


def rec(op, S, B, I, H, direction="forward", peep=False, seq=False, **attrs):
    rng = np.random.default_rng(0)
    D = 2 if direction == "bidirectional" else 1
    G = {"RNN": 1, "GRU": 3, "LSTM": 4}[op]
    k = 1 / np.sqrt(H)
    inits = [
        numpy_helper.from_array(rng.uniform(-k, k, (D, G * H, I)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.uniform(-k, k, (D, G * H, H)).astype(np.float32), "R"),
        numpy_helper.from_array(rng.uniform(-k, k, (D, 2 * G * H)).astype(np.float32), "B"),
    ]
    ins = ["X", "W", "R", "B"]
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [S, B, I])]
    feeds = {"X": rng.standard_normal((S, B, I)).astype(np.float32)}
    if seq or peep:
        ins.append("sequence_lens" if seq else "")
        if seq:
            inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, [B]))
            feeds["sequence_lens"] = rng.integers(S // 2, S + 1, B).astype(np.int32)
    if peep:
        ins += ["", ""]
        ins.append("P")
        inits.append(numpy_helper.from_array(rng.uniform(-k, k, (D, 3 * H)).astype(np.float32), "P"))
    outs = ["Y", "Y_h"]
    node = helper.make_node(op, ins, outs, hidden_size=H, direction=direction, **attrs)
    g = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_operatorsetid("", 17)])
    m.ir_version = 8
    return m, feeds


def torch_model(tmp):
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(1000, 128)
            self.rnn = torch.nn.LSTM(128, 256, num_layers=2, batch_first=True)
            self.out = torch.nn.Linear(256, 1000)

        def forward(self, t):
            y, _ = self.rnn(self.emb(t))
            return self.out(y)

    torch.manual_seed(0)
    net = Net().eval()
    t = torch.randint(0, 1000, (16, 64))
    p = os.path.join(tmp, "torch_lm.onnx")
    torch.onnx.export(net, (t,), p, input_names=["tokens"], output_names=["logits"], dynamo=False,
                      dynamic_axes={"tokens": {0: "b", 1: "s"}}, opset_version=14)
    return onnx.load(p), {"tokens": t.numpy().astype(np.int64)}


ROWS = [
    ("LSTM, S 100, B 1, 256 → 256", lambda: rec("LSTM", 100, 1, 256, 256)),
    ("LSTM, S 100, B 32, 256 → 256", lambda: rec("LSTM", 100, 32, 256, 256)),
    ("LSTM bidirectional, S 100, B 32, 128 → 128, sequence_lens", lambda: rec("LSTM", 100, 32, 128, 128, "bidirectional", seq=True)),
    ("LSTM with peepholes (general path), S 100, B 32, 256 → 256", lambda: rec("LSTM", 100, 32, 256, 256, peep=True)),
    ("GRU linear_before_reset=1, S 100, B 32, 256 → 256", lambda: rec("GRU", 100, 32, 256, 256, linear_before_reset=1)),
    ("GRU linear_before_reset=0 (general path), S 100, B 32, 256 → 256", lambda: rec("GRU", 100, 32, 256, 256)),
    ("RNN tanh, S 100, B 32, 256 → 256", lambda: rec("RNN", 100, 32, 256, 256)),
]


def time_ort(model_bytes, feeds, threads, iters):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    for _ in range(3):
        s.run(None, feeds)
    ms = []
    for _ in range(iters):
        t = time.perf_counter()
        s.run(None, feeds)
        ms.append((time.perf_counter() - t) * 1e3)
    return float(np.median(ms))


def time_recur(path, xpath, threads, iters):
    r = subprocess.run([exe, path, xpath, str(threads), str(iters)], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)["median_ms"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--no-torch", action="store_true")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    rows = list(ROWS)
    if not a.no_torch:
        rows.append(("torch.onnx.export Embedding → LSTM 2×256 → Linear(1000), B 16, S 64", lambda: torch_model(tmp)))
    built = []
    for k, (name, make) in enumerate(rows):
        m, feeds = make()
        p = os.path.join(tmp, f"m{k}.onnx")
        onnx.save(m, p)
        xp = os.path.join(tmp, f"x{k}.safetensors")
        save_file(feeds, xp)
        built.append((name, p, xp, m.SerializeToString(), feeds))
    res = {}
    for rnd in range(a.rounds):
        for name, p, xp, mb, feeds in built:
            for th in (1, 2):
                order = [0, 1] if (rnd + th) % 2 == 0 else [1, 0]
                for side in order:
                    ms = time_recur(p, xp, th, a.iters) if side == 0 else time_ort(mb, feeds, th, a.iters)
                    res.setdefault((name, th, side), []).append(ms)
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; onnxruntime {ort.__version__}; "
          f"{a.rounds} rounds x {a.iters} runs, interleaved; median of the rounds' medians.\n")
    print("| model | threads | recur ms | ORT ms | ORT / recur |")
    print("|---|---|---|---|---|")
    for name, *_ in built:
        for th in (1, 2):
            r = float(np.median(res[(name, th, 0)]))
            o = float(np.median(res[(name, th, 1)]))
            print(f"| {name} | {th} | {r:.2f} | {o:.2f} | {o / r:.2f}x |")


if __name__ == "__main__":
    main()
