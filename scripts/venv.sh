#!/usr/bin/env bash
# Creates (once) the Python venv used by the PyTorch scripts in scripts/ and prints its python.
# The venv lives in .venv/ at the repository root (git-ignored) and is reused on later runs.
# torch from PyPI is a CUDA build: it pulls its nvidia-* wheels (about 3 GiB) even for CPU use.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import torch, safetensors, numpy, onnx, onnxruntime' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --upgrade pip >&2
  "$venv/bin/pip" install --quiet torch numpy safetensors onnx onnxruntime onnxscript >&2
fi
echo "$venv/bin/python"
