#!/usr/bin/env bash
# Every test: the Rust workspace (cargo test --release --workspace), then the Python package
# (built and installed into the scripts' venv, see scripts/venv.sh) and its pytest suites.
# Needs a Rust toolchain and Python 3.11; exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== cargo test --release --workspace"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --release --workspace 2>&1 | tee "$log"
# One line with the totals of every test binary and doc-test run.
awk '/^test result:/ { p += $4; f += $6 } END { printf "cargo tests: %d passed, %d failed\n", p, f }' "$log"

echo "== Python package"
py="$(bash scripts/venv.sh)"
"$py" -m pip install --quiet maturin pytest
# maturin's build backend runs the `maturin` of the venv.
export PATH="$(dirname "$py"):$PATH"
# Builds the extension with maturin (release profile) and installs it like any user would.
"$py" -m pip install --quiet --no-build-isolation --force-reinstall --no-deps ./python

echo "== pytest python/tests"
"$py" -m pytest -q -p no:cacheprovider python/tests
