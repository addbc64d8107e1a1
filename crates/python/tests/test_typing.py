"""The hand-written stubs, checked with mypy: a typed example passes, and misuse is caught."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent / "typing"


def mypy(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_typed_example_passes_mypy_strict() -> None:
    out = mypy(HERE / "typed_example.py")
    assert out.returncode == 0, out.stdout + out.stderr


def test_typed_example_runs(tmp_path: Path) -> None:
    sys.path.insert(0, str(HERE))
    try:
        import typed_example

        total, last_synced = typed_example.run(tmp_path)
        assert total > 0 and last_synced is not None
    finally:
        sys.path.remove(str(HERE))


def test_misuse_is_caught_by_mypy() -> None:
    out = mypy(HERE / "typed_wrong.py")
    assert out.returncode == 1, out.stdout + out.stderr
    errors = [line for line in out.stdout.splitlines() if ": error:" in line]
    lines = sorted({int(line.split(":")[1]) for line in errors})
    marked = [
        i + 1
        for i, text in enumerate((HERE / "typed_wrong.py").read_text().splitlines())
        if "# E:" in text
    ]
    assert lines == marked, out.stdout
