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

# The hub's tests need headless Chromium with its WebDriver (Debian `chromium`, `chromium-driver`) for
# the web page, and schemathesis (PyPI, its own venv) to fuzz the API. Unlike the benchmark tools these
# are required: when they cannot be installed, the run fails here (and the tests would fail without them).
echo "== hub test tools (chromium, chromium-driver, schemathesis)"
mkdir -p .emulators/logs
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    echo "   installing chromium and chromium-driver (apt-get; log .emulators/logs/apt.log)"
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver ||
        { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }; } \
        >>.emulators/logs/apt.log 2>&1 || { tail -n 20 .emulators/logs/apt.log; echo "chromium install FAILED" >&2; exit 1; }
fi
if [[ ! -x .emulators/schemathesis/bin/st ]]; then
    echo "   installing schemathesis into .emulators/schemathesis (pip; log .emulators/logs/schemathesis.log)"
    { python3 -m venv .emulators/schemathesis &&
        .emulators/schemathesis/bin/python -m pip install --disable-pip-version-check 'schemathesis>=4,<5'; } \
        >.emulators/logs/schemathesis.log 2>&1 || { tail -n 20 .emulators/logs/schemathesis.log; echo "schemathesis install FAILED" >&2; exit 1; }
fi
export STRATA_TEST_SCHEMATHESIS="$PWD/.emulators/schemathesis/bin/st"

echo "== cargo test"
cargo test --workspace --locked --no-fail-fast

# The Python SDK: a venv with maturin, pytest and mypy (PyPI), the extension built into it, then its
# pytest suite (S3 tests use the emulators started above), mypy on a typed example and a benchmark smoke.
echo "== python SDK (crates/python)"
bash scripts/python_sdk.sh

# Best effort, like rclone in scripts/emulators.sh: the benchmark counts fsyncs with strace and compares
# sync against rsync; without them those rows say "not installed" and the run goes on. Never fails.
bench_tools_missing=()
for tool in strace rsync; do
    command -v "$tool" >/dev/null 2>&1 || bench_tools_missing+=("$tool")
done
# The server benchmark compares with Redis (Debian packages redis-server and redis-tools).
command -v redis-benchmark >/dev/null 2>&1 || bench_tools_missing+=(redis-server redis-tools)
if ((${#bench_tools_missing[@]})) && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing ${bench_tools_missing[*]} for the benchmark (apt-get, best effort)"
    mkdir -p .emulators/logs
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${bench_tools_missing[@]}" ||
        { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${bench_tools_missing[@]}"; }; } \
        >>.emulators/logs/apt.log 2>&1 || echo "   apt-get failed (see .emulators/logs/apt.log); rows skipped"
fi

echo "== benchmark smoke run (tiny sizes; figures are not meaningful here)"
cargo run --locked -q -p strata-bench -- --quick >/dev/null
if command -v redis-benchmark >/dev/null 2>&1; then
    PROFILE=debug C=8 N_GET=2000 N_SET=200 N_FILL=2000 bash scripts/server_bench.sh >/dev/null
else
    echo "   server benchmark skipped: redis-benchmark is not installed"
fi
echo "benchmark smoke run: ok"
