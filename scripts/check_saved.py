#!/usr/bin/env python3
"""Check that state_dicts saved by recur load back into PyTorch.

    python3 scripts/check_saved.py DIR

For every DIR/<case>.safetensors whose <case> names a layer or cell case in tests/fixtures/parity/,
builds the PyTorch module described by that fixture's metadata, calls
`module.load_state_dict(safetensors.torch.load_file(path), strict=True)` and checks that every
tensor of the file is float32 with PyTorch's shape and equals the fixture's `params.*` tensor
exactly. Prints one line per file (OK / SKIP / FAIL and the error) and a final line
`N passed, M failed`; exits 1 if any file failed, 2 if no file could be checked.

If torch is not importable, re-executes itself with the venv python from scripts/venv.sh.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


sys.path.insert(0, str(ROOT / "scripts"))
import venvpy  # noqa: E402

venvpy.ensure()

import safetensors  # noqa: E402
import safetensors.torch  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

PARITY = ROOT / "tests" / "fixtures" / "parity"


def build_module(md):
    mode = md["mode"]
    I, H = int(md["input_size"]), int(md["hidden_size"])
    bias = md["bias"] == "true"
    if md["module"] == "cell":
        if mode == "lstm":
            return nn.LSTMCell(I, H, bias=bias)
        if mode == "gru":
            return nn.GRUCell(I, H, bias=bias)
        return nn.RNNCell(I, H, bias=bias, nonlinearity=mode[len("rnn_"):])
    kw = dict(num_layers=int(md["num_layers"]), bias=bias, batch_first=md["batch_first"] == "true",
              dropout=float(md["dropout"]), bidirectional=md["bidirectional"] == "true")
    if mode == "lstm":
        return nn.LSTM(I, H, proj_size=int(md["proj_size"]), **kw)
    if mode == "gru":
        return nn.GRU(I, H, **kw)
    return nn.RNN(I, H, nonlinearity=mode[len("rnn_"):], **kw)


def check(path, fixture):
    with safetensors.safe_open(str(fixture), "pt") as f:
        md = f.metadata()
        params = {k[len("params."):]: f.get_tensor(k) for k in f.keys() if k.startswith("params.")}
    if md.get("module") not in ("layer", "cell"):
        raise ValueError(f"fixture {fixture.name} is not a layer or cell case")
    saved = safetensors.torch.load_file(str(path))
    module = build_module(md)
    module.load_state_dict(saved, strict=True)
    problems = []
    for k, v in saved.items():
        if v.dtype != torch.float32:
            problems.append(f"{k}: dtype {v.dtype}, expected torch.float32")
    sd = module.state_dict()
    if set(sd) != set(params):
        problems.append(f"state_dict keys {sorted(sd)} != fixture params {sorted(params)}")
    for k in sorted(set(sd) & set(params)):
        if sd[k].shape != params[k].shape:
            problems.append(f"{k}: shape {tuple(sd[k].shape)} != {tuple(params[k].shape)}")
        elif not torch.equal(sd[k], params[k]):
            d = (sd[k].double() - params[k].double()).abs().max().item()
            problems.append(f"{k}: values differ (max abs diff {d:.3g})")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ValueError("; ".join(problems[:3]) + more)


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    d = Path(sys.argv[1])
    if not d.is_dir():
        print(f"not a directory: {d}", file=sys.stderr)
        return 2
    passed = failed = 0
    for path in sorted(d.glob("*.safetensors")):
        case = path.name[: -len(".safetensors")]
        fixture = PARITY / f"{case}.safetensors"
        if not fixture.is_file():
            print(f"SKIP {path.name}: no parity case named {case}")
            continue
        try:
            check(path, fixture)
        except Exception as e:  # noqa: BLE001 - report every kind of load failure
            failed += 1
            msg = " ".join(str(e).split())
            print(f"FAIL {path.name}: {type(e).__name__}: {msg}")
        else:
            passed += 1
            print(f"OK   {path.name}")
    print(f"{passed} passed, {failed} failed")
    if failed:
        return 1
    if passed == 0:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
