#!/usr/bin/env python3
"""ONNX fixtures for recur: models, inputs and expected outputs covering every attribute of the
ONNX RNN, GRU and LSTM operators, plus whole models exported by torch.onnx.export.

Each case is a folder tests/fixtures/onnx/cases/<name>/ with
  model.onnx            the model
  inputs.safetensors    every graph input to feed, under its ONNX name
  expected.safetensors  every graph output, under its ONNX name, from the reference
  meta.json             which reference produced expected.safetensors, and cross-checks

References (meta.json "reference"):
  "onnxruntime"        ONNX Runtime's CPU provider ran the model itself;
  "onnxruntime-layout0" for layout = 1, which ORT's CPU provider rejects: ORT ran the same
                       node with layout = 0 on the transposed inputs and its outputs were
                       transposed back (numpy); where onnx.reference supports the attributes it
                       is run on the layout = 1 model too and must agree ("cross_check");
  "onnx.reference"     onnx's reference evaluator (double-precision GRU/RNN, which ORT lacks);
  torch exports are run by ONNX Runtime, and PyTorch's own outputs must agree.

Usage: python3 scripts/gen_onnx_fixtures.py  (onnx, onnxruntime, torch, safetensors installed;
`--no-torch` leaves out the torch exports, `--loop-only` writes only the Loop, ReverseSequence,
ReduceProd and And/Or/Xor cases). The cases keras_* are scripts/gen_keras_fixtures.py's.
"""
import json
import os
import shutil
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from safetensors.numpy import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "onnx", "cases")
OPSET = 22
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
NACTS = {"RNN": 1, "GRU": 2, "LSTM": 3}
NP2ONNX = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE, np.int32: TensorProto.INT32, np.int64: TensorProto.INT64}
written = []


def ort_run(model, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def save_case(name, model, feeds, outputs, meta):
    d = os.path.join(ROOT, name)
    os.makedirs(d, exist_ok=True)
    for o, v in zip(model.graph.output, outputs):
        if not o.type.tensor_type.HasField("shape"):
            o.CopyFrom(helper.make_tensor_value_info(o.name, o.type.tensor_type.elem_type, list(v.shape)))
    onnx.checker.check_model(model)
    for v in outputs:
        assert np.all(np.isfinite(v)), f"{name}: the reference gave non-finite outputs"
    with open(os.path.join(d, "model.onnx"), "wb") as f:
        f.write(model.SerializeToString())
    save_file({k: np.ascontiguousarray(v) for k, v in feeds.items()}, os.path.join(d, "inputs.safetensors"))
    names = [o.name for o in model.graph.output]
    save_file({n: np.ascontiguousarray(v) for n, v in zip(names, outputs)}, os.path.join(d, "expected.safetensors"))
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    written.append(name)


def rec_model(op, attrs, shapes, dtype, const_weights, outputs, vals, opset=OPSET):
    """One recurrent node. `vals` maps input name -> array (absent inputs omitted)."""
    order = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"][: 8 if op == "LSTM" else 6]
    names = [n if n in vals else "" for n in order]
    while names and names[-1] == "":
        names.pop()
    node = helper.make_node(op, names, outputs, **attrs)
    inputs, inits = [], []
    for n in names:
        if not n:
            continue
        v = vals[n]
        if const_weights and n in ("W", "R", "B", "P"):
            inits.append(numpy_helper.from_array(v, n))
        else:
            shape = shapes.get(n, list(v.shape))
            inputs.append(helper.make_tensor_value_info(n, NP2ONNX[v.dtype.type], shape))
    outs = []
    for o in outputs:
        if o:
            outs.append(helper.make_tensor_value_info(o, NP2ONNX[dtype], None))
    g = helper.make_graph([node], "g", inputs, outs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_operatorsetid("", opset)])
    m.ir_version = 8 if opset <= 16 else 10
    return m


def rec_case(name, op, *, S=5, B=3, I=4, H=3, direction="forward", bias=True, seq=None, init=False,
             peep=False, layout=0, dtype=np.float32, const_weights=False, outputs=None, hidden_attr=True,
             seq_dtype=np.int32, feed_seq_dtype=None, reference="ort", seed=0, scale=0.6, **attrs):
    rng = np.random.default_rng(seed)
    D = 2 if direction == "bidirectional" else 1
    G = GATES[op]
    vals = {
        "X": rng.standard_normal((S, B, I)).astype(dtype),
        "W": (rng.uniform(-scale, scale, (D, G * H, I))).astype(dtype),
        "R": (rng.uniform(-scale, scale, (D, G * H, H))).astype(dtype),
    }
    if bias:
        vals["B"] = rng.uniform(-scale, scale, (D, 2 * G * H)).astype(dtype)
    if seq is not None:
        vals["sequence_lens"] = np.array(seq, dtype=seq_dtype)
    if init:
        vals["initial_h"] = rng.standard_normal((D, B, H)).astype(dtype)
        if op == "LSTM":
            vals["initial_c"] = rng.standard_normal((D, B, H)).astype(dtype)
    if peep:
        vals["P"] = rng.uniform(-scale, scale, (D, 3 * H)).astype(dtype)
    if outputs is None:
        outputs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    a = dict(attrs)
    if direction != "forward":
        a["direction"] = direction
    if hidden_attr:
        a["hidden_size"] = H
    dyn = {"X": ["seq", "batch", I]}
    m0 = rec_model(op, a, dyn, dtype, const_weights, outputs, vals)
    feeds0 = {i.name: vals[i.name] for i in m0.graph.input}
    meta = {"op": op, "attributes": {k: v for k, v in a.items()}, "const_weights": const_weights}
    if reference == "ort":
        ref_out = ort_run(m0, feeds0)
        meta["reference"] = f"onnxruntime {ort.__version__}"
    else:
        ref_out = ReferenceEvaluator(m0).run(None, feeds0)
        meta["reference"] = f"onnx.reference {onnx.__version__}"
    if layout == 0:
        if feed_seq_dtype is not None:
            feeds0["sequence_lens"] = feeds0["sequence_lens"].astype(feed_seq_dtype)
        save_case(name, m0, feeds0, ref_out, meta)
        return
    # layout = 1: the same node on batch-major tensors; the expected outputs are the layout-0
    # reference's, transposed.
    v1 = dict(vals)
    v1["X"] = np.ascontiguousarray(vals["X"].transpose(1, 0, 2))
    for k in ("initial_h", "initial_c"):
        if k in v1:
            v1[k] = np.ascontiguousarray(vals[k].transpose(1, 0, 2))
    a1 = dict(a, layout=1)
    m1 = rec_model(op, a1, {"X": ["batch", "seq", I]}, dtype, const_weights, outputs, v1)
    feeds1 = {i.name: v1[i.name] for i in m1.graph.input}
    out1 = []
    for o, y in zip([o for o in outputs if o], ref_out):
        out1.append(np.ascontiguousarray(y.transpose(2, 0, 1, 3) if o == "Y" else y.transpose(1, 0, 2)))
    meta["attributes"]["layout"] = 1
    meta["reference"] = f"onnxruntime {ort.__version__} on the layout-0 twin, transposed (numpy)"
    simple = seq is None and "clip" not in a and "activations" not in a and not a.get("input_forget")
    if simple:
        r = ReferenceEvaluator(m1).run(None, feeds1)
        err = max(float(np.max(np.abs(p - q))) for p, q in zip(r, out1))
        assert err < 1e-5, (name, err)
        meta["cross_check"] = f"onnx.reference {onnx.__version__} on the layout-1 model: max abs difference {err:.1e}"
    save_case(name, m1, feeds1, out1, meta)


ALL_ACTS = ["Relu", "Tanh", "Sigmoid", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh", "HardSigmoid", "Elu", "Softsign", "Softplus"]
# Explicit parameters for the functions that take them (ONNX Runtime's defaults for Affine,
# ThresholdedRelu and ScaledTanh differ from the ONNX operators', so fixtures give them).
PARAMS = {"Affine": (0.7, 0.1), "LeakyRelu": (0.05, None), "ThresholdedRelu": (0.2, None), "ScaledTanh": (1.3, 0.8), "HardSigmoid": (0.3, 0.4), "Elu": (0.9, None)}


def act_attrs(acts, explicit=True):
    al, be = [], []
    for f in acts:
        p = PARAMS.get(f)
        if p and explicit:
            al.append(p[0])
            if p[1] is not None:
                be.append(p[1])
    a = {"activations": acts}
    if al:
        a["activation_alpha"] = al
    if be:
        a["activation_beta"] = be
    return a


def recurrent_cases():
    for op in ("RNN", "GRU", "LSTM"):
        lo = op.lower()
        extra = {"linear_before_reset": 1} if op == "GRU" else {}
        rec_case(f"{lo}_defaults", op, **extra)
        rec_case(f"{lo}_const_weights", op, const_weights=True, **extra)
        rec_case(f"{lo}_no_bias", op, bias=False, **extra)
        rec_case(f"{lo}_no_hidden_size_attr", op, hidden_attr=False, reference="ref", **extra)
        for direction in ("reverse", "bidirectional"):
            rec_case(f"{lo}_{direction}", op, direction=direction, init=True, **extra)
            rec_case(f"{lo}_{direction}_seq_lens", op, direction=direction, seq=[5, 0, 3], init=True, B=3, **extra)
        rec_case(f"{lo}_seq_lens_zero_and_full", op, seq=[0, 5, 2, 1], B=4, init=True, **extra)
        rec_case(f"{lo}_seq_lens_int64_fed", op, seq=[4, 2, 5], feed_seq_dtype=np.int64, **extra)
        rec_case(f"{lo}_initial_state", op, init=True, **extra)
        rec_case(f"{lo}_clip", op, clip=0.7, init=True, scale=1.5, **extra)
        rec_case(f"{lo}_clip_bidirectional_seq", op, clip=0.5, direction="bidirectional", seq=[2, 5, 0], scale=1.5, **extra)
        rec_case(f"{lo}_only_y_h", op, outputs=["", "Y_h"], **extra)
        rec_case(f"{lo}_only_y", op, outputs=["Y"], **extra)
        rec_case(f"{lo}_batch_1_seq_1", op, S=1, B=1, **extra)
        rec_case(f"{lo}_layout1", op, layout=1, init=True, **extra)
        rec_case(f"{lo}_layout1_bidirectional", op, layout=1, direction="bidirectional", init=True, const_weights=True, **extra)
        rec_case(f"{lo}_layout1_seq_clip", op, layout=1, seq=[3, 0, 5], clip=0.6, direction="reverse", init=True, **extra)
        rec_case(f"{lo}_double", op, dtype=np.float64, init=True,
                 reference="ref", **extra)
        rec_case(f"{lo}_large", op, S=12, B=9, I=17, H=20, direction="bidirectional", seq=list(range(12, 3, -1)), scale=0.3, **extra)
        # Activations: every function, in every position, per direction.
        k = NACTS[op]
        default = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}[op]
        for j, f in enumerate(ALL_ACTS):
            pos = j % k
            acts = list(default)
            acts[pos] = f
            rev = list(default)
            rev[(pos + 1) % k] = ALL_ACTS[(j + 3) % len(ALL_ACTS)]
            rec_case(f"{lo}_act_{f.lower()}", op, direction="bidirectional", S=3, seq=[3, 2, 1], init=True,
                     seed=j + 1, scale=0.8, **act_attrs(acts + rev), **extra)
        # Parameters left out: the ONNX operator defaults (LeakyRelu 0.01, HardSigmoid 0.2/0.5, Elu 1),
        # where ONNX Runtime agrees.
        for j, f in enumerate(["LeakyRelu", "HardSigmoid", "Elu"]):
            acts = list(default)
            acts[j % k] = f
            rec_case(f"{lo}_act_{f.lower()}_default_params", op, seed=20 + j, **act_attrs(acts, explicit=False), **extra)
    # GRU: linear_before_reset = 0 (ONNX's default) in the same situations.
    rec_case("gru_lbr0_defaults", "GRU")
    rec_case("gru_lbr0_bidirectional_seq", "GRU", direction="bidirectional", seq=[5, 0, 2], init=True)
    rec_case("gru_lbr0_clip", "GRU", clip=0.4, scale=1.5, init=True)
    rec_case("gru_lbr0_no_bias", "GRU", bias=False, direction="reverse")
    rec_case("gru_lbr0_layout1", "GRU", layout=1, direction="bidirectional", init=True)
    rec_case("gru_lbr0_act", "GRU", direction="bidirectional", **act_attrs(["HardSigmoid", "Softsign", "Sigmoid", "Elu"]))
    rec_case("gru_lbr0_double", "GRU", dtype=np.float64, reference="ref")
    # LSTM: peepholes and input_forget.
    rec_case("lstm_peepholes", "LSTM", peep=True, init=True)
    rec_case("lstm_peepholes_bidirectional_seq", "LSTM", peep=True, direction="bidirectional", seq=[4, 5, 0], init=True)
    rec_case("lstm_peepholes_const", "LSTM", peep=True, const_weights=True, direction="reverse")
    rec_case("lstm_peepholes_clip", "LSTM", peep=True, clip=0.5, scale=1.5, init=True)
    rec_case("lstm_input_forget", "LSTM", input_forget=1, init=True)
    rec_case("lstm_input_forget_peepholes_bidirectional", "LSTM", input_forget=1, peep=True, direction="bidirectional", seq=[5, 2, 3])
    rec_case("lstm_peepholes_layout1", "LSTM", peep=True, layout=1, init=True)
    rec_case("lstm_everything", "LSTM", peep=True, input_forget=1, clip=0.8, direction="bidirectional", seq=[1, 5, 0, 3], B=4,
             init=True, layout=1, scale=1.2, **act_attrs(["HardSigmoid", "Softsign", "ScaledTanh", "Sigmoid", "Elu", "Affine"]))


def torch_cases():
    import torch

    class Net(torch.nn.Module):
        def __init__(self, cell, vocab, emb, hidden, layers, bidir, batch_first, classes):
            super().__init__()
            self.emb = torch.nn.Embedding(vocab, emb)
            kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
            self.rnn = kind(emb, hidden, num_layers=layers, bidirectional=bidir, batch_first=batch_first)
            self.out = torch.nn.Linear(hidden * (2 if bidir else 1), classes)

        def forward(self, tokens):
            y, _ = self.rnn(self.emb(tokens))
            return torch.log_softmax(self.out(y), dim=-1)

    configs = [
        ("lstm", 2, True, True),
        ("gru", 2, True, False),
        ("rnn", 1, False, True),
        ("lstm", 1, False, False),
        ("gru", 1, True, True),
    ]
    for dynamo in (False, True):
        for k, (cell, layers, bidir, bf) in enumerate(configs):
            torch.manual_seed(k)
            net = Net(cell, 20, 6, 8, layers, bidir, bf, 5).eval()
            B, T = 3, 7
            tokens = torch.randint(0, 20, (B, T) if bf else (T, B))
            name = f"torch_{'dynamo' if dynamo else 'legacy'}_{cell}_{layers}l{'_bi' if bidir else ''}{'_bf' if bf else ''}"
            path = os.path.join("/tmp", name + ".onnx")
            dims = {0: "batch", 1: "seq"} if bf else {0: "seq", 1: "batch"}
            try:
                if dynamo:
                    bd = torch.export.Dim("batch", min=1, max=64)
                    sd = torch.export.Dim("seq", min=2, max=512)
                    shapes = {"tokens": {0: bd, 1: sd} if bf else {0: sd, 1: bd}}
                    torch.onnx.export(net, (tokens,), path, input_names=["tokens"], output_names=["logp"],
                                      dynamo=True, dynamic_shapes=shapes, opset_version=18)
                else:
                    torch.onnx.export(net, (tokens,), path, input_names=["tokens"], output_names=["logp"],
                                      dynamo=False, dynamic_axes={"tokens": dims, "logp": dims}, opset_version=14)
            except Exception as e:  # the dynamo exporter may be unavailable
                print(f"{name}: export failed ({type(e).__name__}: {str(e)[:200]}); skipped", file=sys.stderr)
                continue
            model = onnx.load(path)
            # Other batch and sequence sizes than at export time where the exported axes are
            # dynamic (the dynamo exporter may unroll the time loop, fixing the sequence length).
            out = None
            for bb, tt, what in ((5, 9, "batch and sequence"), (5, T, "batch"), (B, T, "none")):
                tokens2 = torch.randint(0, 20, (bb, tt) if bf else (tt, bb))
                feeds = {"tokens": tokens2.numpy().astype(np.int64)}
                try:
                    out = ort_run(model, feeds)
                    break
                except Exception:
                    continue
            dynamic = what
            with torch.no_grad():
                want = net(tokens2).numpy()
            err = float(np.max(np.abs(out[0] - want)))
            assert err < 1e-4, (name, err)
            ops = sorted({n.op_type for n in model.graph.node})
            meta = {"reference": f"onnxruntime {ort.__version__}", "exporter": "dynamo" if dynamo else "torchscript (legacy)",
                    "torch": torch.__version__, "cross_check": f"PyTorch's own output: max abs difference {err:.1e}",
                    "operators": ops, "dynamic_axes_exercised": dynamic}
            save_case(name, model, feeds, out, meta)


def glue_case(name, nodes, inputs, feeds, outputs, inits=(), opset=OPSET):
    """A small graph of glue operators, run by ONNX Runtime."""
    g = helper.make_graph(nodes, name, inputs, [helper.make_empty_tensor_value_info(o) for o in outputs], initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_operatorsetid("", opset)])
    m.ir_version = 8 if opset <= 18 else 10
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(m).graph.value_info}
    for o in m.graph.output:
        o.CopyFrom(inferred[o.name])
    out = ort_run(m, feeds)
    for o, v in zip(m.graph.output, out):
        o.CopyFrom(helper.make_tensor_value_info(o.name, o.type.tensor_type.elem_type, list(v.shape)))
    save_case(name, m, feeds, out, {"reference": f"onnxruntime {ort.__version__}", "operators": sorted({n.op_type for n in nodes}), "opset": opset})


def glue_cases():
    rng = np.random.default_rng(7)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    vi = lambda n, t, s: helper.make_tensor_value_info(n, t, s)
    F, I64 = TensorProto.FLOAT, TensorProto.INT64
    c = lambda n, v: numpy_helper.from_array(np.asarray(v), n)
    N = helper.make_node
    glue_case("glue_arith_broadcast", [N("Add", ["a", "b"], ["s"]), N("Sub", ["s", "b"], ["d"]), N("Mul", ["d", "a"], ["m"]),
                                       N("Div", ["m", "b"], ["q"]), N("Neg", ["q"], ["n"]), N("Abs", ["n"], ["y"])],
              [vi("a", F, [2, 3, 4]), vi("b", F, [3, 1])], {"a": f(2, 3, 4), "b": f(3, 1) + 3}, ["y"])
    glue_case("glue_unary", [N("Relu", ["x"], ["r"]), N("Tanh", ["x"], ["t"]), N("Sigmoid", ["x"], ["s"]), N("Exp", ["x"], ["e"]),
                             N("Abs", ["x"], ["a"]), N("Sqrt", ["a"], ["q"]), N("Log", ["e"], ["l"])],
              [vi("x", F, [3, 5])], {"x": f(3, 5)}, ["r", "t", "s", "e", "q", "l"])
    glue_case("glue_matmul_batched", [N("MatMul", ["a", "b"], ["y"]), N("MatMul", ["v", "b2"], ["z"])],
              [vi("a", F, [2, 1, 3, 4]), vi("b", F, [5, 4, 6]), vi("v", F, [4]), vi("b2", F, [4, 2])],
              {"a": f(2, 1, 3, 4), "b": f(5, 4, 6), "v": f(4), "b2": f(4, 2)}, ["y", "z"])
    glue_case("glue_gemm", [N("Gemm", ["a", "b", "c"], ["y"], alpha=0.5, beta=2.0, transA=1, transB=1), N("Gemm", ["a2", "b2"], ["z"])],
              [vi("a", F, [4, 3]), vi("b", F, [5, 4]), vi("c", F, [5]), vi("a2", F, [2, 3]), vi("b2", F, [3, 2])],
              {"a": f(4, 3), "b": f(5, 4), "c": f(5), "a2": f(2, 3), "b2": f(3, 2)}, ["y", "z"])
    glue_case("glue_gather_embedding", [N("Gather", ["w", "i"], ["y"]), N("Gather", ["w", "j"], ["z"], axis=1)],
              [vi("i", I64, [2, 3]), vi("j", I64, [2])], {"i": np.array([[0, 4, -1], [2, 2, 1]], np.int64), "j": np.array([0, -2], np.int64)},
              ["y", "z"], inits=[c("w", f(5, 3))])
    glue_case("glue_shapes", [N("Shape", ["x"], ["s"]), N("Shape", ["x"], ["s1"], start=1, end=-1), N("Transpose", ["x"], ["t"], perm=[2, 0, 1]),
                              N("Reshape", ["t", "rs"], ["r"]), N("Unsqueeze", ["r", "ax"], ["u"]), N("Squeeze", ["u", "ax"], ["q"]),
                              N("Flatten", ["x"], ["fl"], axis=2), N("Concat", ["x", "x"], ["cat"], axis=-1), N("Cast", ["s"], ["sf"], to=TensorProto.FLOAT)],
              [vi("x", F, [2, 3, 4])], {"x": f(2, 3, 4)}, ["s", "s1", "t", "r", "q", "fl", "cat", "sf"],
              inits=[c("rs", np.array([0, -1], np.int64)), c("ax", np.array([1], np.int64))])
    glue_case("glue_slice_split", [N("Slice", ["x", "st", "en", "axs", "stp"], ["y"]), N("Split", ["x", "sp"], ["a", "b"], axis=2),
                                   N("Slice", ["x", "st2", "en2"], ["z"])],
              [vi("x", F, [4, 5, 6])], {"x": f(4, 5, 6)}, ["y", "a", "b", "z"],
              inits=[c("st", np.array([3, 1], np.int64)), c("en", np.array([-100, 100], np.int64)), c("axs", np.array([0, 2], np.int64)),
                     c("stp", np.array([-2, 2], np.int64)), c("sp", np.array([2, 4], np.int64)), c("st2", np.array([1], np.int64)), c("en2", np.array([-1], np.int64))])
    glue_case("glue_constants_expand", [N("Constant", [], ["k"], value=numpy_helper.from_array(np.array([[1.5], [2.5]], np.float32))),
                                        N("ConstantOfShape", ["sh"], ["z"], value=numpy_helper.from_array(np.array([3], np.int64))),
                                        N("Expand", ["k", "sh2"], ["e"]), N("Constant", [], ["vi"], value_ints=[1, 2]),
                                        N("Range", ["r0", "r1", "r2"], ["rg"])],
              [vi("sh", I64, [2])], {"sh": np.array([2, 3], np.int64)}, ["z", "e", "vi", "rg", "k"],
              inits=[c("sh2", np.array([3, 2, 4], np.int64)), c("r0", np.array(1, np.int64)), c("r1", np.array(10, np.int64)), c("r2", np.array(3, np.int64))])
    glue_case("glue_where_compare", [N("Equal", ["a", "b"], ["eq"]), N("Less", ["a", "b"], ["lt"]), N("Greater", ["a", "b"], ["gt"]),
                                     N("Not", ["eq"], ["ne"]), N("Where", ["lt", "a", "b"], ["mn"]), N("Where", ["eq", "i", "j"], ["w"])],
              [vi("a", F, [2, 3]), vi("b", F, [3]), vi("i", I64, [2, 3]), vi("j", I64, [1])],
              {"a": np.array([[1, 2, 3], [4, 0, 6]], np.float32), "b": np.array([1, 5, 3], np.float32),
               "i": np.arange(6, dtype=np.int64).reshape(2, 3), "j": np.array([-7], np.int64)}, ["eq", "lt", "gt", "ne", "mn", "w"])
    glue_case("glue_softmax_reduce", [N("Softmax", ["x"], ["s"]), N("LogSoftmax", ["x"], ["l"], axis=1), N("ReduceSum", ["x", "ra"], ["rs"], keepdims=0),
                                      N("ReduceMean", ["x", "ra"], ["rm"]), N("Dropout", ["x"], ["d"])],
              [vi("x", F, [2, 3, 4])], {"x": f(2, 3, 4)}, ["s", "l", "rs", "rm", "d"], inits=[c("ra", np.array([0, -1], np.int64))])
    glue_case("glue_opset11_forms", [N("Softmax", ["x"], ["s"]), N("Unsqueeze", ["x"], ["u"], axes=[0, 3]), N("Squeeze", ["u"], ["q"], axes=[0]),
                                     N("ReduceMean", ["x"], ["rm"], axes=[1], keepdims=1), N("Split", ["x"], ["a", "b"], axis=1, split=[1, 2])],
              [vi("x", F, [2, 3, 4])], {"x": f(2, 3, 4)}, ["s", "q", "rm", "a", "b"], opset=11)


def loop_cases():
    """Loop (a for loop with outer-scope names, a while loop, a GRU node in a body), ReverseSequence, ReduceProd, And,
    Or, Xor: the operators of tf2onnx's Keras graphs (scripts/gen_keras_fixtures.py)."""
    rng = np.random.default_rng(11)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    vi = lambda n, t, s: helper.make_tensor_value_info(n, t, s)
    F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
    c = lambda n, v: numpy_helper.from_array(np.asarray(v), n)
    N = helper.make_node
    # for i in 0..M: acc = acc + x * i (x from the enclosing graph); scan outputs 2 * acc and i.
    body = helper.make_graph(
        [N("Cast", ["i"], ["fi"], to=F), N("Mul", ["x", "fi"], ["xi"]), N("Add", ["acc_in", "xi"], ["acc_out"]),
         N("Mul", ["acc_out", "two"], ["twice"]), N("Identity", ["cond_in"], ["cond_out"]), N("Identity", ["i"], ["i_out"])],
        "for_body", [vi("i", I64, []), vi("cond_in", B, []), vi("acc_in", F, [2, 3])],
        [vi("cond_out", B, []), vi("acc_out", F, [2, 3]), vi("twice", F, [2, 3]), vi("i_out", I64, [])],
        initializer=[c("two", np.array(2.0, np.float32))])
    glue_case("glue_loop_for", [N("Loop", ["m", "", "acc0"], ["acc", "twices", "iters"], body=body)],
              [vi("x", F, [2, 3]), vi("acc0", F, [2, 3])], {"x": f(2, 3), "acc0": f(2, 3)}, ["acc", "twices", "iters"],
              inits=[c("m", np.array(4, np.int64))])
    # while cond: k = k + 1; cond = k < limit (limit from the enclosing graph); scan out k.
    wbody = helper.make_graph(
        [N("Add", ["k_in", "one"], ["k_out"]), N("Less", ["k_out", "limit"], ["cond_out"]), N("Identity", ["k_out"], ["k_scan"])],
        "while_body", [vi("it", I64, []), vi("cond_in", B, []), vi("k_in", I64, [1])],
        [vi("cond_out", B, [1]), vi("k_out", I64, [1]), vi("k_scan", I64, [1])],
        initializer=[c("one", np.array([1], np.int64))])
    glue_case("glue_loop_while", [N("Loop", ["", "go", "k0"], ["k", "ks"], body=wbody)],
              [vi("k0", I64, [1]), vi("limit", I64, [1])], {"k0": np.array([2], np.int64), "limit": np.array([6], np.int64)},
              ["k", "ks"], inits=[c("go", np.array(True))])
    # A recurrent node inside a body: a GRU over the outer X, from the carried state, 3 times.
    gbody = helper.make_graph(
        [N("GRU", ["X", "W", "R", "B", "", "h_in"], ["", "h_out"], hidden_size=3, linear_before_reset=1),
         N("Identity", ["h_out"], ["h_scan"]), N("Identity", ["cond_in"], ["cond_out"])],
        "gru_body", [vi("it", I64, []), vi("cond_in", B, []), vi("h_in", F, [1, 2, 3])],
        [vi("cond_out", B, []), vi("h_out", F, [1, 2, 3]), vi("h_scan", F, [1, 2, 3])])
    glue_case("glue_loop_gru", [N("Loop", ["m", "", "h0"], ["h", "hs"], body=gbody)],
              [vi("X", F, [4, 2, 5]), vi("h0", F, [1, 2, 3])], {"X": f(4, 2, 5), "h0": f(1, 2, 3)}, ["h", "hs"],
              inits=[c("m", np.array(3, np.int64)), c("W", f(1, 9, 5) * 0.5), c("R", f(1, 9, 3) * 0.5), c("B", f(1, 18) * 0.5)])
    glue_case("glue_reverse_sequence", [N("ReverseSequence", ["x", "l"], ["y"], time_axis=0, batch_axis=1),
                                        N("ReverseSequence", ["x2", "l2"], ["y2"], time_axis=1, batch_axis=0)],
              [vi("x", F, [4, 3, 2]), vi("l", I64, [3]), vi("x2", F, [3, 4, 2]), vi("l2", I64, [3])],
              {"x": f(4, 3, 2), "l": np.array([4, 1, 3], np.int64), "x2": f(3, 4, 2), "l2": np.array([2, 4, 1], np.int64)}, ["y", "y2"])
    glue_case("glue_bool_reduceprod", [N("And", ["a", "b"], ["and"]), N("Or", ["a", "b"], ["or"]), N("Xor", ["a", "b"], ["xor"]),
                                       N("ReduceProd", ["x", "ax"], ["p"], keepdims=0), N("ReduceProd", ["x"], ["pall"]),
                                       N("Shape", ["x"], ["s"]), N("ReduceProd", ["s"], ["n"], keepdims=1)],
              [vi("a", B, [2, 3]), vi("b", B, [3]), vi("x", F, [2, 3, 4])],
              {"a": np.array([[1, 0, 1], [0, 0, 1]], bool), "b": np.array([1, 1, 0], bool), "x": f(2, 3, 4)},
              ["and", "or", "xor", "p", "pall", "n"], inits=[c("ax", np.array([1], np.int64))])


def main():
    if "--loop-only" in sys.argv:
        # Only the cases of loop_cases(); the others stay as they are.
        loop_cases()
        print(f"wrote {len(written)} cases to {os.path.normpath(ROOT)}")
        return
    # The Keras cases (keras_*) come from scripts/gen_keras_fixtures.py and stay.
    if os.path.exists(ROOT):
        for d in os.listdir(ROOT):
            if not d.startswith("keras_"):
                shutil.rmtree(os.path.join(ROOT, d))
    os.makedirs(ROOT, exist_ok=True)
    recurrent_cases()
    glue_cases()
    loop_cases()
    if "--no-torch" not in sys.argv:
        torch_cases()
    print(f"wrote {len(written)} cases to {os.path.normpath(ROOT)}")


if __name__ == "__main__":
    main()
