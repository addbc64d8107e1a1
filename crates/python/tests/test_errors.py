"""Every exception type, raised by the condition it names, and never a bare RuntimeError."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import stratadb


def test_hierarchy() -> None:
    for cls in (
        stratadb.NotFound,
        stratadb.MergeConflict,
        stratadb.PushRejected,
        stratadb.Corrupt,
        stratadb.Busy,
        stratadb.InvalidArgument,
        stratadb.Unauthorized,
        stratadb.PermissionDenied,
    ):
        assert issubclass(cls, stratadb.StrataError)
        assert not issubclass(cls, RuntimeError)
    assert issubclass(stratadb.StrataError, Exception)


def test_not_found(db: stratadb.Strata) -> None:
    with pytest.raises(stratadb.NotFound, match="nope"):
        db.kv_get("k", branch="nope")
    with pytest.raises(stratadb.NotFound):
        db.kv_put("k", 1, branch="nope")
    with pytest.raises(stratadb.NotFound, match="version 9"):
        db.kv_get("k", branch="main@9")
    with pytest.raises(stratadb.NotFound):
        db.push("no-such-remote", "main")
    with pytest.raises(stratadb.NotFound) as e:
        db.delete_branch("nope")
    assert e.value.retryable is False


def test_invalid_argument(db: stratadb.Strata, tmp_path: Path) -> None:
    with pytest.raises(stratadb.InvalidArgument, match="key"):
        db.kv_put("", 1)
    with pytest.raises(stratadb.InvalidArgument, match="branch"):
        db.create_branch("bad name with spaces\n")
    db.create_branch("twice")
    with pytest.raises(stratadb.InvalidArgument, match="already exists"):
        db.create_branch("twice")
    with pytest.raises(stratadb.InvalidArgument, match="internal"):
        db.kv_put("k", 1, branch="_strata")
    with pytest.raises(stratadb.InvalidArgument, match="scheme"):
        db.remote_add("r", "ftp://nowhere/x")
    with pytest.raises(stratadb.InvalidArgument, match="token"):
        db.remote_add("r", str(tmp_path / "remote"), token="sk-abc")  # folders take no options
    assert db.remotes() == []
    with pytest.raises(stratadb.InvalidArgument, match="conflict_branch"):
        db.pull("r", "main", conflict_branch="saved")
    with pytest.raises(stratadb.InvalidArgument):
        db.kv_put("k", 1, space="_sync")


def test_merge_conflict_lists_conflicts(db: stratadb.Strata) -> None:
    db.kv_put("k", "base")
    db.fork_branch("main", "b")
    db.kv_put("k", "main")
    db.kv_put("k", "b", branch="b")
    with pytest.raises(stratadb.MergeConflict) as e:
        db.merge("b", "main", strategy="strict")
    assert e.value.conflicts == [
        {"space": "default", "kind": "kv", "key": "k", "ancestor": "base", "source": "b", "target": "main"}
    ]
    assert "conflicting" in str(e.value)


def test_push_rejected_carries_remote_version(tmp_path: Path) -> None:
    a = stratadb.Strata.open(tmp_path / "a")
    a.remote_add("origin", str(tmp_path / "remote"))
    a.kv_put("x", 1)
    first = a.push()
    b = stratadb.clone(str(tmp_path / "remote"), tmp_path / "b")
    b.kv_put("y", 1)
    second = b.push()
    assert second["remote_version"] > first["remote_version"]
    a.kv_put("z", 1)
    with pytest.raises(stratadb.PushRejected) as e:
        a.push()
    assert e.value.remote_version == second["remote_version"]
    assert "pull first" in str(e.value)


def test_corrupt_remote_blob(tmp_path: Path) -> None:
    a = stratadb.Strata.open(tmp_path / "a")
    remote = tmp_path / "remote"
    a.remote_add("origin", str(remote))
    a.kv_put("x", "y" * 1000)
    a.push()
    blobs = [p for p in remote.rglob("*") if p.is_file() and p.suffix not in (".json",) and p.stat().st_size > 0]
    assert blobs, list(remote.rglob("*"))
    for p in blobs:
        raw = bytearray(p.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        p.write_bytes(bytes(raw))
    b = stratadb.Strata.open(tmp_path / "b")
    b.remote_add("origin", str(remote))
    with pytest.raises(stratadb.Corrupt):
        b.pull()
    assert b.kv_get("x") is None


def test_busy_when_another_writer_holds_the_lock(tmp_path: Path) -> None:
    holder = stratadb.Strata.open(tmp_path / "db")
    waiter = stratadb.Strata.open(tmp_path / "db", busy_timeout=0.2)
    tx = holder.transaction()
    tx.kv_put("k", 1)
    try:
        with pytest.raises(stratadb.Busy) as e:
            waiter.kv_put("k", 2)
        assert e.value.retryable is True
    finally:
        tx.commit()
    waiter.kv_put("k", 2)
    assert holder.kv_get("k") == 2


def test_the_waiting_writer_does_not_hold_the_gil(tmp_path: Path) -> None:
    """A writer waiting on SQLite's lock releases the GIL: the holder's thread can commit meanwhile."""
    holder = stratadb.Strata.open(tmp_path / "db")
    waiter = stratadb.Strata.open(tmp_path / "db", busy_timeout=10)
    tx = holder.transaction()
    tx.kv_put("k", 1)
    done = threading.Event()

    def write() -> None:
        waiter.kv_put("k", 2)
        done.set()

    t = threading.Thread(target=write)
    t.start()
    assert not done.wait(0.3)  # still waiting for the lock, and this thread runs
    tx.commit()
    t.join(10)
    assert done.is_set()
    assert holder.kv_get("k") == 2
