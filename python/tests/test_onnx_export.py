"""ONNX Runtime and onnx.checker on the graphs `recur export --model DIR` wrote for every kind
of model (tests/fixtures/onnx/export_models, made by crates/recur-cli/tests/export_model.rs):
each output must equal recur's own predictions to f32 tolerance."""
import importlib.util
import pathlib

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

ROOT = pathlib.Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "fixtures" / "onnx" / "export_models"


def _checker():
    spec = importlib.util.spec_from_file_location(
        "check_onnx_export", ROOT / "scripts" / "check_onnx_export.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


CHECK = _checker()
NAMES = sorted(p.name for p in CASES.iterdir() if p.is_dir())


def test_every_model_kind_has_a_case():
    for prefix in ("lm_", "classify_", "tag_", "forecast_", "seq2seq_"):
        assert any(n.startswith(prefix) for n in NAMES), prefix


@pytest.mark.parametrize("case", NAMES)
def test_onnx_runtime_gives_recurs_outputs(case):
    r = CHECK.check_model_case(str(CASES / case))
    assert r["outputs"], case
    assert r["ratio"] <= 1.0, r
