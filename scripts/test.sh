#!/usr/bin/env bash
# Runs every Strata test on a fresh machine: formatting, lints, then the whole workspace's tests
# (unit, property, CLI and cross-process crash/concurrency tests, and the bucket tests against the S3
# and Azure emulators, which scripts/emulators.sh installs and starts), then a quick benchmark smoke
# run so the benchmark harness cannot rot. Needs the Rust toolchain, python3 and node/npm (SQLite is
# compiled in; moto and Azurite come from PyPI and npm into .emulators/).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

# Storage emulators (moto for S3, Azurite for Azure Blob) on loopback; installed into .emulators/ on
# the first run. Exports STRATA_TEST_* for cargo test and the benchmark; an EXIT trap stops them.
echo "== storage emulators"
source scripts/emulators.sh
strata_emulators_start

echo "== cargo test"
cargo test --workspace --locked

echo "== benchmark smoke run (tiny sizes; figures are not meaningful here)"
cargo run --locked -q -p strata-bench -- --quick >/dev/null
echo "benchmark smoke run: ok"
