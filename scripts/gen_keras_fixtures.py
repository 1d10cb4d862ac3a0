#!/usr/bin/env python3
"""ONNX fixtures for recur from Keras: whole sequence models as Keras users write them
(Embedding -> LSTM or GRU -> Dense), converted by tf2onnx, run in Keras and in ONNX Runtime.

Each case is a folder tests/fixtures/onnx/cases/keras_<name>/ with
  model.onnx                  the converted model (input `tokens` int32 (batch, seq), both axes
                              dynamic; output `logits`)
  inputs.safetensors          `tokens`: fixed ids, batch 3 (0 is the padding id where the
                              Embedding has mask_zero=True)
  expected.safetensors        `logits` from ONNX Runtime on model.onnx
  expected_keras.safetensors  `logits` from Keras itself (model(tokens))
  meta.json                   the layers, the versions, the operators of the graph (and of its
                              Loop bodies) and how far Keras and ONNX Runtime differ

Conversion: `tf2onnx.convert.from_function` on a `tf.function` of the Keras model with the
input signature `tf.TensorSpec((None, None), tf.int32, name="tokens")`, opset 17. tf2onnx
rewrites Keras's LSTM into an ONNX LSTM node; GRU layers, and any layer behind an Embedding
with mask_zero=True, stay the TensorFlow while loop: an ONNX `Loop` whose body holds the cell.

Environment (a separate venv; TensorFlow does not share the main venv's packages):
    python3.11 -m venv .venv-tf
    .venv-tf/bin/pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0 onnx onnxruntime numpy safetensors
which resolved to (no pins needed): tensorflow-cpu 2.21.0, keras 3.15.1, tf2onnx 1.17.0,
onnx 1.23.2, onnxruntime 1.32.0, numpy 2.4.6, protobuf 7.36.2, safetensors 0.8.0.

Usage: .venv-tf/bin/python scripts/gen_keras_fixtures.py
"""
import json
import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "onnx", "cases")
OPSET = 17
VOCAB, EMBED, HIDDEN, CLASSES = 20, 8, 6, 5

# Fixed ids, batch 3, 7 steps. The masked cases pad with 0 at the end (ragged lengths 5, 4,
# 7), and one row has a 0 in the middle too (Keras masks any 0 step: the state is carried
# over it, and the output there repeats the previous one).
TOKENS = np.array([[3, 4, 5, 1, 2, 9, 11], [7, 8, 1, 2, 13, 19, 6], [1, 2, 3, 4, 5, 6, 7]], np.int32)
TOKENS_MASKED = np.array([[3, 4, 5, 1, 2, 0, 0], [7, 8, 0, 2, 0, 0, 0], [1, 2, 3, 4, 5, 6, 7]], np.int32)
# A second shape, to exercise the dynamic axes: batch 2, 4 steps.
TOKENS_SMALL = np.array([[5, 6, 7, 8], [9, 10, 0, 0]], np.int32)

written = []


def build(cell, *, return_sequences, mask_zero=False, bidirectional=False, reset_after=True, seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(VOCAB, EMBED, mask_zero=mask_zero)(inp)
    if cell == "lstm":
        layer = keras.layers.LSTM(HIDDEN, return_sequences=return_sequences)
    else:
        layer = keras.layers.GRU(HIDDEN, return_sequences=return_sequences, reset_after=reset_after)
    if bidirectional:
        layer = keras.layers.Bidirectional(layer)
    x = layer(x)
    out = keras.layers.Dense(CLASSES)(x)
    model = keras.Model(inp, out)
    # Biases are zero at initialization; random ones make the test see them.
    for w in model.weights:
        if "bias" in w.path:
            w.assign(np.random.default_rng(seed + 1).uniform(-0.5, 0.5, w.shape).astype(np.float32))
    return model


def convert(model):
    spec = (tf.TensorSpec((None, None), tf.int32, name="tokens"),)

    @tf.function(input_signature=spec)
    def f(tokens):
        return {"logits": model(tokens)}

    proto, _ = tf2onnx.convert.from_function(f, input_signature=spec, opset=OPSET)
    return proto


def ops_of(graph, acc):
    for n in graph.node:
        acc.add(n.op_type)
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                ops_of(a.g, acc)
    return acc


def ort_run(proto, tokens):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(["logits"], {"tokens": tokens})[0]


def case(name, cell, tokens, **kw):
    model = build(cell, **kw)
    proto = convert(model)
    onnx.checker.check_model(proto, full_check=True)
    got = ort_run(proto, tokens)
    want = model(tokens).numpy()
    diff = float(np.abs(got - want).max())
    assert diff < 1e-5, f"{name}: ONNX Runtime and Keras differ by {diff}"
    # The dynamic axes: another batch and sequence size agrees too.
    small = TOKENS_SMALL if kw.get("mask_zero") else np.where(TOKENS_SMALL == 0, 3, TOKENS_SMALL)
    diff_small = float(np.abs(ort_run(proto, small) - model(small).numpy()).max())
    assert diff_small < 1e-5, f"{name}: at batch 2, seq 4, ONNX Runtime and Keras differ by {diff_small}"
    d = os.path.join(ROOT, f"keras_{name}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "model.onnx"), "wb") as fh:
        fh.write(proto.SerializeToString())
    save_file({"tokens": tokens}, os.path.join(d, "inputs.safetensors"))
    save_file({"logits": np.ascontiguousarray(got)}, os.path.join(d, "expected.safetensors"))
    save_file({"logits": np.ascontiguousarray(want)}, os.path.join(d, "expected_keras.safetensors"))
    meta = {
        "reference": f"onnxruntime {ort.__version__}",
        "cross_check": f"Keras's own output: max abs difference {diff:.1e} (batch 2, seq 4: {diff_small:.1e})",
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "tf2onnx": tf2onnx.__version__,
        "opset": OPSET,
        "layers": {"cell": cell, **kw, "vocab": VOCAB, "embed": EMBED, "hidden": HIDDEN, "classes": CLASSES},
        "operators": sorted(ops_of(proto.graph, set())),
    }
    with open(os.path.join(d, "meta.json"), "w") as fh:
        json.dump(meta, fh, indent=1, sort_keys=True)
    written.append((name, diff, meta["operators"]))


def main():
    for d in os.listdir(ROOT):
        if d.startswith("keras_"):
            shutil.rmtree(os.path.join(ROOT, d))
    case("lstm_seq", "lstm", TOKENS, return_sequences=True)
    case("lstm_last", "lstm", TOKENS, return_sequences=False)
    case("lstm_mask_seq", "lstm", TOKENS_MASKED, return_sequences=True, mask_zero=True)
    case("lstm_mask_last", "lstm", TOKENS_MASKED, return_sequences=False, mask_zero=True)
    case("lstm_bi_seq", "lstm", TOKENS, return_sequences=True, bidirectional=True)
    case("lstm_bi_mask_last", "lstm", TOKENS_MASKED, return_sequences=False, mask_zero=True, bidirectional=True)
    case("gru_seq", "gru", TOKENS, return_sequences=True)
    case("gru_last", "gru", TOKENS, return_sequences=False)
    case("gru_before_seq", "gru", TOKENS, return_sequences=True, reset_after=False)
    case("gru_before_last", "gru", TOKENS, return_sequences=False, reset_after=False)
    case("gru_mask_seq", "gru", TOKENS_MASKED, return_sequences=True, mask_zero=True)
    case("gru_before_mask_last", "gru", TOKENS_MASKED, return_sequences=False, mask_zero=True, reset_after=False)
    case("gru_bi_seq", "gru", TOKENS, return_sequences=True, bidirectional=True)
    case("gru_bi_mask_seq", "gru", TOKENS_MASKED, return_sequences=True, mask_zero=True, bidirectional=True)
    for name, diff, ops in written:
        print(f"keras_{name}: ORT vs Keras {diff:.1e}; {', '.join(ops)}")


if __name__ == "__main__":
    main()
