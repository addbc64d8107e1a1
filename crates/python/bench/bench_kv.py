"""kv_put from Python: Strata against Python's own sqlite3 module doing the same inserts.

Two rows, each timed for both in the same run:
  batched  N puts in one transaction (Strata: db.transaction(); sqlite3: one BEGIN ... COMMIT)
  single   M puts, each its own commit (Strata: db.kv_put; sqlite3: INSERT + COMMIT per row)

Both sides write to a fresh folder on the same disk with the same durability: Strata's default
(synchronous=FULL, WAL) against sqlite3 set to journal_mode=WAL, synchronous=FULL. The value is the
same 100-byte payload; sqlite3 stores it as a BLOB in a (key TEXT PRIMARY KEY, value BLOB) table.
Figures are puts per second; "ratio" is Strata / sqlite3 (target >= 0.5 for batched puts).

    python crates/python/bench/bench_kv.py            # full size: 100000 batched, 2000 single
    python crates/python/bench/bench_kv.py --quick    # smoke run (scripts/test.sh)
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Callable

import stratadb

VALUE = b"v" * 100


def best_of(runs: int, fn: Callable[[Path], float]) -> float:
    """The fastest of `runs` timings, each in a fresh folder."""
    best = float("inf")
    for _ in range(runs):
        d = Path(tempfile.mkdtemp(prefix="strata-bench-"))
        try:
            best = min(best, fn(d))
        finally:
            shutil.rmtree(d, ignore_errors=True)
    return best


def sqlite_conn(d: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(d / "bench.sqlite"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
    return conn


def strata_batched(n: int) -> Callable[[Path], float]:
    def run(d: Path) -> float:
        db = stratadb.Strata.open(d / "db")
        t = time.perf_counter()
        with db.transaction() as tx:
            for i in range(n):
                tx.kv_put(f"key:{i:08}", VALUE)
        elapsed = time.perf_counter() - t
        assert db.kv_get(f"key:{n - 1:08}") == VALUE
        db.close()
        return elapsed

    return run


def sqlite_batched(n: int) -> Callable[[Path], float]:
    def run(d: Path) -> float:
        conn = sqlite_conn(d)
        t = time.perf_counter()
        conn.execute("BEGIN")
        for i in range(n):
            conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (f"key:{i:08}", VALUE))
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - t
        conn.close()
        return elapsed

    return run


def strata_single(n: int) -> Callable[[Path], float]:
    def run(d: Path) -> float:
        db = stratadb.Strata.open(d / "db")
        t = time.perf_counter()
        for i in range(n):
            db.kv_put(f"key:{i:08}", VALUE)
        elapsed = time.perf_counter() - t
        assert db.branch_info("main")["head"] == n
        db.close()
        return elapsed

    return run


def sqlite_single(n: int) -> Callable[[Path], float]:
    def run(d: Path) -> float:
        conn = sqlite_conn(d)
        t = time.perf_counter()
        for i in range(n):
            conn.execute("BEGIN")
            conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (f"key:{i:08}", VALUE))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - t
        conn.close()
        return elapsed

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one run: a smoke test of the harness")
    ap.add_argument("--batched", type=int, default=100_000, help="puts in the one-transaction row")
    ap.add_argument("--single", type=int, default=2_000, help="puts in the commit-per-put row")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per figure (the best is kept)")
    args = ap.parse_args()
    if args.quick:
        args.batched, args.single, args.runs = 2_000, 50, 1

    print(f"{'row':<10} {'n':>8} {'strata puts/s':>15} {'sqlite3 puts/s':>15} {'ratio':>7}")
    for name, n, ours, base in (
        ("batched", args.batched, strata_batched, sqlite_batched),
        ("single", args.single, strata_single, sqlite_single),
    ):
        s = n / best_of(args.runs, ours(n))
        b = n / best_of(args.runs, base(n))
        print(f"{name:<10} {n:>8} {s:>15,.0f} {b:>15,.0f} {s / b:>6.2f}x")


if __name__ == "__main__":
    main()
