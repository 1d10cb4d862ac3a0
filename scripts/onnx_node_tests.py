#!/usr/bin/env python3
"""ONNX's own node tests for RNN, GRU and LSTM, as recur fixtures.

ONNX keeps its backend node tests as folders `test_<name>/` holding `model.onnx` and
`test_data_set_N/{input_K,output_K}.pb` (TensorProto files, in the order of the graph's inputs
and outputs). This script

1. writes those folders for the RNN, GRU and LSTM cases (`test_lstm_*`, `test_gru_*`,
   `test_rnn_*`, `test_simple_rnn_*`) by running the case generators the `onnx` wheel ships
   (`onnx/backend/test/case/node/{lstm,gru,rnn}.py`), unless `--data DIR` points at an
   existing copy of `onnx/backend/test/data/node`;
2. converts every data set to safetensors: `inputs.safetensors` (the graph inputs under their
   ONNX names) and `expected.safetensors` (the graph outputs under theirs), next to the .pb
   files, so that a test runs
   `recur forward --weights model.onnx --inputs inputs.safetensors --out Y.safetensors`
   and compares Y with `expected.safetensors`.

Usage: python3 scripts/onnx_node_tests.py [--data DIR] [--out tests/fixtures/onnx/node]
"""
import argparse
import glob
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import numpy_helper
from safetensors.numpy import save_file

PREFIXES = ("test_lstm_", "test_gru_", "test_rnn_", "test_simple_rnn_")


def generate(out):
    """Runs the wheel's generators for the three operators and writes ONNX's folder layout."""
    import onnx.backend.test.case.node as node_cases
    from onnx.backend.test.case.node import gru, lstm, rnn

    # Importing a case module defines its classes, whose metaclass runs every export_*
    # function: each calls expect(), which records the case.
    del gru, lstm, rnn
    n = 0
    for case in node_cases._NodeTestCases:
        if not case.name.startswith(PREFIXES):
            continue
        d = os.path.join(out, case.name)
        if os.path.exists(d):
            shutil.rmtree(d)
        os.makedirs(d)
        with open(os.path.join(d, "model.onnx"), "wb") as f:
            f.write(case.model.SerializeToString())
        for i, (inputs, outputs) in enumerate(case.data_sets):
            ds = os.path.join(d, f"test_data_set_{i}")
            os.makedirs(ds)
            for j, x in enumerate(inputs):
                t = numpy_helper.from_array(np.asarray(x), case.model.graph.input[j].name)
                with open(os.path.join(ds, f"input_{j}.pb"), "wb") as f:
                    f.write(t.SerializeToString())
            for j, y in enumerate(outputs):
                t = numpy_helper.from_array(np.asarray(y), case.model.graph.output[j].name)
                with open(os.path.join(ds, f"output_{j}.pb"), "wb") as f:
                    f.write(t.SerializeToString())
        n += 1
    return n


def read_pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def convert(case_dir):
    """Writes inputs.safetensors and expected.safetensors for every data set of one case."""
    model = onnx.load(os.path.join(case_dir, "model.onnx"))
    inits = {i.name for i in model.graph.initializer}
    in_names = [i.name for i in model.graph.input if i.name not in inits]
    out_names = [o.name for o in model.graph.output]
    for ds in sorted(glob.glob(os.path.join(case_dir, "test_data_set_*"))):
        ins = sorted(glob.glob(os.path.join(ds, "input_*.pb")), key=lambda p: int(p.rsplit("_", 1)[1][:-3]))
        outs = sorted(glob.glob(os.path.join(ds, "output_*.pb")), key=lambda p: int(p.rsplit("_", 1)[1][:-3]))
        x = {in_names[k]: np.ascontiguousarray(read_pb(p)) for k, p in enumerate(ins)}
        y = {out_names[k]: np.ascontiguousarray(read_pb(p)) for k, p in enumerate(outs)}
        save_file(x, os.path.join(ds, "inputs.safetensors"))
        save_file(y, os.path.join(ds, "expected.safetensors"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="an existing onnx/backend/test/data/node folder to convert")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "onnx", "node"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.data:
        for d in sorted(os.listdir(a.data)):
            if d.startswith(PREFIXES):
                dst = os.path.join(a.out, d)
                if os.path.exists(dst):
                    shutil.rmtree(dst)
                shutil.copytree(os.path.join(a.data, d), dst)
    else:
        n = generate(a.out)
        print(f"generated {n} node tests with onnx {onnx.__version__}", file=sys.stderr)
    cases = sorted(d for d in os.listdir(a.out) if d.startswith(PREFIXES))
    for d in cases:
        convert(os.path.join(a.out, d))
    print(f"converted {len(cases)} cases in {a.out}: {', '.join(cases)}")


if __name__ == "__main__":
    main()
