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

# rust-version must stay true for the committed lock: no locked dependency (any target, any feature)
# may declare a newer rust-version than the workspace's. Every member must inherit it.
echo "== rust-version vs Cargo.lock"
cargo metadata --format-version 1 --locked --all-features | python3 -c '
import json, sys
m = json.load(sys.stdin)
members = set(m["workspace_members"])
ver = lambda v: tuple(int(x) for x in v.split(".")) + (0,) * (3 - len(v.split(".")))
ours = {p["name"]: p.get("rust_version") for p in m["packages"] if p["id"] in members}
missing = sorted(n for n, v in ours.items() if not v)
if missing:
    sys.exit(f"workspace members without rust-version (add `rust-version.workspace = true`): {missing}")
msrv = min(ours.values(), key=ver)
above = sorted("{} {} needs {}".format(p["name"], p["version"], p["rust_version"]) for p in m["packages"]
               if p["id"] not in members and p.get("rust_version") and ver(p["rust_version"]) > ver(msrv))
if above:
    sys.exit(f"rust-version {msrv} is too old for Cargo.lock:\n  " + "\n  ".join(above))
print(f"rust-version {msrv}: every locked dependency declares {msrv} or older")
'

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
