#!/usr/bin/env bash
# Builds the Python SDK (crates/python) into a virtualenv and runs its tests: pytest (crates/python/tests,
# including the S3 walkthrough against moto, which FAILS without the emulator, and the hub walkthrough
# against a real `stratahub`, built here and named by STRATA_TEST_STRATAHUB, which FAILS without it),
# mypy --strict on a typed example, and the kv_put benchmark at smoke size. scripts/test.sh calls it after starting the emulators.
# Standalone: bash scripts/emulators.sh run -- bash scripts/python_sdk.sh
#
# The venv lives in .venv-test/python (maturin, pytest and mypy from PyPI, installed on first use). The
# extension is built with `maturin develop` (cargo's dev profile, sharing the workspace's target dir);
# `pip install ./crates/python` is the user's one-command install (a release build).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-test/python
py="$venv/bin/python"
if [[ ! -x "$venv/bin/maturin" || ! -x "$venv/bin/pytest" || ! -x "$venv/bin/mypy" ]]; then
    echo "python SDK: creating $venv (maturin, pytest, mypy from PyPI)"
    python3 -m venv "$venv"
    "$py" -m pip install -q --disable-pip-version-check "maturin>=1.9,<2" "pytest>=8,<10" "mypy>=1.10,<3"
fi

echo "python SDK: maturin develop (dev profile)"
VIRTUAL_ENV="$PWD/$venv" PATH="$PWD/$venv/bin:$PATH" \
    "$venv/bin/maturin" develop --locked -q -m crates/python/Cargo.toml

# The hub tests start the real `stratahub` binary: build it with the same cargo (and target dir) the
# extension uses. scripts/test.sh has built it already in `cargo test --workspace`, so this is a no-op
# there. The path comes from cargo's own report, so CARGO_TARGET_DIR and .cargo/config are honoured.
echo "python SDK: cargo build -p strata-hub --bin stratahub (for the hub tests)"
STRATA_TEST_STRATAHUB=$(cargo build --locked -q -p strata-hub --bin stratahub --message-format=json |
    python3 -c '
import json, sys
exes = [m["executable"] for m in map(json.loads, sys.stdin)
        if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "stratahub" and m.get("executable")]
sys.exit("cargo reported no stratahub executable") if not exes else print(exes[-1])
')
[[ -x "$STRATA_TEST_STRATAHUB" ]] || { echo "stratahub was not built ($STRATA_TEST_STRATAHUB)" >&2; exit 1; }
export STRATA_TEST_STRATAHUB

echo "python SDK: mypy --strict (typed example against the stubs)"
"$py" -m mypy --strict --no-incremental crates/python/tests/typing/typed_example.py

echo "python SDK: pytest"
"$py" -m pytest -q -p no:cacheprovider crates/python/tests

echo "python SDK: benchmark smoke run (tiny sizes; figures are not meaningful here)"
"$py" crates/python/bench/bench_kv.py --quick
