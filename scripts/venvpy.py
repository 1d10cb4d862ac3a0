"""Makes the script that imports this module run under the project's Python venv.

`ensure(modules)`: if any of `modules` cannot be imported by the running interpreter, the
calling script is re-executed with the venv python printed by scripts/venv.sh (which creates
.venv/ at the repository root on first use and installs torch, numpy and safetensors from PyPI).
"""

import importlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ensure(modules=("torch", "numpy", "safetensors")):
    try:
        for m in modules:
            importlib.import_module(m)
    except ImportError:
        if os.environ.get("RECUR_VENV_REEXEC") == "1":
            raise
        out = subprocess.run(
            ["bash", str(ROOT / "scripts" / "venv.sh")], check=True, stdout=subprocess.PIPE, text=True
        ).stdout
        py = out.strip().splitlines()[-1]
        env = dict(os.environ, RECUR_VENV_REEXEC="1")
        script = Path(sys.argv[0]).resolve()
        os.execve(py, [py, str(script), *sys.argv[1:]], env)
