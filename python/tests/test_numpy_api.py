"""The NumPy API (no torch) against the committed PyTorch fixtures in tests/fixtures."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

import recur

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures"
LAYER_CASES = sorted(
    p for p in (FIXTURES / "parity").glob("*.safetensors") if not p.name.startswith("cell_")
)


def meta(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n))["__metadata__"]


def run_case(path, dtype):
    m = meta(path)
    t = load_file(str(path))
    model = recur.load(
        path,
        prefix="params",
        nonlinearity="relu" if m["mode"] == "rnn_relu" else None,
        batch_first=m["batch_first"] == "true",
        dtype=dtype,
    )
    x = t["input"].astype(dtype)
    hx = None
    if m["has_h0"] == "true":
        hx = (t["h0"].astype(dtype), t["c0"].astype(dtype)) if m["mode"] == "lstm" else t["h0"].astype(dtype)
    lengths = t["lengths"] if m["ragged"] == "true" else None
    out, state = model.forward(x, hx, lengths=lengths)
    return m, t, model, out, state


def test_there_are_fixtures():
    assert len(LAYER_CASES) > 100


@pytest.mark.parametrize("path", LAYER_CASES, ids=lambda p: p.stem)
def test_forward_matches_pytorch(path):
    if meta(path)["dropout"] != "0":
        pytest.skip("training-mode dropout: the NumPy API is inference")
    for dtype, tol in (("float64", 1e-10), ("float32", 2e-5)):
        m, t, _, out, state = run_case(path, dtype)
        assert out.dtype == np.dtype(dtype)
        np.testing.assert_allclose(out, t["expected.output"], atol=tol, rtol=0)
        if m["mode"] == "lstm":
            h_n, c_n = state
            np.testing.assert_allclose(c_n, t["expected.c_n"], atol=tol, rtol=0)
        else:
            h_n = state
        np.testing.assert_allclose(h_n, t["expected.h_n"], atol=tol, rtol=0)


STREAM_CASES = [
    p
    for p in LAYER_CASES
    if (lambda m: m["bidirectional"] == "false" and m["ragged"] == "false" and m["dropout"] == "0")(meta(p))
]


@pytest.mark.parametrize("path", STREAM_CASES[::3], ids=lambda p: p.stem)
def test_stream_steps_match_the_whole_sequence(path):
    m, t, model, _, _ = run_case(path, "float64")
    x = t["input"].astype(np.float64)
    if m["batch_first"] == "true":
        x = x.transpose(1, 0, 2)
    s = model.stream(batch=x.shape[1])
    if m["has_h0"] == "true":
        h0 = t["h0"].astype(np.float64)
        s.set_state((h0, t["c0"].astype(np.float64)) if m["mode"] == "lstm" else h0)
    outs = np.stack([s.step(x[i]) for i in range(x.shape[0])])
    want = t["expected.output"]
    if m["batch_first"] == "true":
        want = want.transpose(1, 0, 2)
    np.testing.assert_allclose(outs, want, atol=1e-10, rtol=0)
    state = s.state
    h = state[0] if m["mode"] == "lstm" else state
    np.testing.assert_allclose(h, t["expected.h_n"], atol=1e-10, rtol=0)
    s.reset()
    h = s.state[0] if m["mode"] == "lstm" else s.state
    assert not h.any()


def test_state_dict_with_a_prefix():
    io = sorted((FIXTURES / "state_dict").glob("*.io.safetensors"))
    assert io
    for p in io:
        w = p.with_name(p.name.replace(".io.", "."))
        m = meta(p)
        t = load_file(str(p))
        model = recur.load(
            w,
            prefix=m["prefix"] or None,
            nonlinearity=m["nonlinearity"] or None,
            batch_first=m["batch_first"] == "true",
        )
        out, state = model(t["input"])
        h_n = state[0] if model.mode == "LSTM" else state
        np.testing.assert_allclose(out, t["expected.output"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(h_n, t["expected.h_n"], atol=1e-5, rtol=0)
        sd = model.state_dict()
        assert all(k.startswith(("weight_", "bias_")) for k in sd)


def test_outputs_own_recur_buffers_and_inputs_may_be_strided():
    path = next(p for p in STREAM_CASES if meta(p)["batch_first"] == "false")
    _, t, model, _, _ = run_case(path, "float32")
    out, _ = model(t["input"])
    # The array is a view of recur's own buffer (no copy on the way out).
    assert out.flags["C_CONTIGUOUS"] and out.flags["WRITEABLE"]
    assert type(out.base).__name__ == "PySliceContainer"
    x = np.asfortranarray(t["input"])
    out2, _ = model(x)
    np.testing.assert_array_equal(out, out2)


def test_errors_are_python_exceptions(tmp_path):
    path = LAYER_CASES[0]
    _, t, model, _, _ = run_case(path, "float32")
    with pytest.raises(TypeError, match="float32"):
        model(t["input"].astype(np.float64))
    with pytest.raises(recur.RecurError, match="input_size"):
        model(np.zeros((3, 2, model.input_size + 1), np.float32))
    with pytest.raises(recur.RecurError, match="lengths"):
        model(np.zeros((3, 2, model.input_size), np.float32), lengths=[4, 1])
    with pytest.raises(recur.RecurError):
        model(np.zeros((3, 2, model.input_size), np.float32), lengths=[0, 1])
    with pytest.raises(TypeError, match="float32 or float64"):
        recur.load(path, prefix="params", dtype="float16")
    with pytest.raises(OSError):
        recur.load(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(recur.RecurError):
        recur.load(bad)


def test_numpy_api_does_not_import_torch():
    code = "import sys, recur; recur.get_num_threads(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_threads():
    n = recur.get_num_threads()
    recur.set_num_threads(1)
    assert recur.get_num_threads() == 1
    recur.set_num_threads(0)
    assert recur.get_num_threads() == n


def test_the_gil_is_released_while_recur_computes():
    """While one thread runs a long forward pass, another keeps running Python."""
    import threading
    import time

    path = next(p for p in STREAM_CASES if meta(p)["mode"] == "lstm")
    _, t, model, _, _ = run_case(path, "float64")
    # A pass long enough to see (at least 0.4 s here, whatever the machine's speed).
    steps = 20000
    while True:
        x = np.random.default_rng(0).standard_normal((steps, 8, model.input_size))
        t0 = time.perf_counter()
        model(x)
        alone = time.perf_counter() - t0
        if alone >= 0.4 or steps >= 2_560_000:
            break
        steps *= 2
    assert alone >= 0.4, "the pass must be long enough to see"
    done = threading.Event()
    gaps, last = [], [None]

    def work():
        model(x)
        done.set()

    th = threading.Thread(target=work)
    th.start()
    last[0] = time.perf_counter()
    ticks = 0
    while not done.is_set():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now
        ticks += 1
    th.join()
    # With the GIL held for the whole pass, this loop would stall for all of it.
    assert ticks > 100
    assert max(gaps) < 0.5 * alone


@pytest.mark.parametrize("path", STREAM_CASES[::5], ids=lambda p: p.stem)
def test_reduced_precision_streams_stay_near_pytorch(path):
    """f16 / bf16 / int8 stream weights (recur's docs/precision.md) against PyTorch's f32 outputs:
    within the weights' (and for int8 the activations') rounding on these small random models."""
    m, t, model, _, _ = run_case(path, "float32")
    if m["has_h0"] == "true":
        pytest.skip("streams start from zeros here")
    x = t["input"].astype(np.float32)
    if m["batch_first"] == "true":
        x = x.transpose(1, 0, 2)
    want = t["expected.output"]
    if m["batch_first"] == "true":
        want = want.transpose(1, 0, 2)
    for precision, tol in (("f16", 5e-3), ("bf16", 5e-2), ("int8", 1e-1)):
        s = model.stream(batch=x.shape[1], precision=precision)
        assert s.precision == precision
        got = np.stack([s.step(x[i]) for i in range(x.shape[0])])
        err = np.abs(got - want).max()
        assert err < tol, (precision, err)
        assert err > 0, "the weights were not rounded"


def test_reduced_precision_needs_float32_and_a_known_name():
    path = STREAM_CASES[0]
    _, _, model64, _, _ = run_case(path, "float64")
    with pytest.raises(recur.UnsupportedError, match="float32"):
        model64.stream(precision="int8")
    _, _, model32, _, _ = run_case(path, "float32")
    with pytest.raises(ValueError, match="int4"):
        model32.stream(precision="int4")
