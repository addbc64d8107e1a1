"""Every function of the data API, branches, history, bundles and the sync calls not in the walkthrough.

The data, transaction, branch, history and bundle tests run twice (`any_db`): on an embedded database
and through stratadb.connect() to a real stratadb-server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import stratadb

from conftest import AnyDb


def test_open_path_close_and_context_manager(tmp_path: Path) -> None:
    with stratadb.Strata.open(tmp_path / "x", durability="normal", busy_timeout=1.5) as db:
        assert Path(db.path) == tmp_path / "x"
        db.kv_put("k", 1)
        assert "Strata" in repr(db)
    with pytest.raises(stratadb.InvalidArgument, match="closed"):
        db.kv_get("k")
    again = stratadb.Strata.open(str(tmp_path / "x"))
    assert again.kv_get("k") == 1
    with pytest.raises(stratadb.InvalidArgument, match="durability"):
        stratadb.Strata.open(tmp_path / "y", durability="sometimes")  # type: ignore[arg-type]


def test_kv(any_db: AnyDb) -> None:
    db = any_db
    v1 = db.kv_put("a", "one")
    v2 = db.kv_put("b", "two")
    assert (v1, v2) == (1, 2)
    assert db.kv_get("a") == "one"
    assert db.kv_get("missing") is None
    assert list(db.kv_list()) == [("a", "one"), ("b", "two")]
    assert list(db.kv_list("b")) == [("b", "two")]
    assert db.kv_delete("a") is True
    assert db.kv_delete("a") is False
    assert db.kv_get("a") is None
    # Reads at an earlier version.
    assert db.kv_get("a", branch="main@1") == "one"
    assert list(db.kv_list(branch="main@2")) == [("a", "one"), ("b", "two")]
    # Spaces are separate.
    db.kv_put("a", "elsewhere", space="s2")
    assert db.kv_get("a", space="s2") == "elsewhere"
    assert db.kv_get("a") is None
    assert db.spaces() == ["default", "s2"]


def test_documents(any_db: AnyDb) -> None:
    db = any_db
    db.doc_put("d1", {"title": "x", "tags": ["a", "b"], "n": {"deep": 1}})
    assert db.doc_get("d1") == {"title": "x", "tags": ["a", "b"], "n": {"deep": 1}}
    assert db.doc_get("d1", "/tags/1") == "b"
    assert db.doc_get("d1", "/n/deep") == 1
    assert db.doc_get("d1", "/nothing") is None
    db.doc_set("d1", "/n/deep", 2)
    db.doc_set("d1", "/tags/-", "c")
    assert db.doc_get("d1", "/n") == {"deep": 2}
    assert db.doc_get("d1", "/tags") == ["a", "b", "c"]
    db.doc_set("fresh", "/a/b", True)
    assert db.doc_get("fresh") == {"a": {"b": True}}
    # The document as it was at version 1.
    assert db.doc_get("d1", "/n/deep", branch="main@1") == 1
    assert [k for k, _ in db.doc_list()] == ["d1", "fresh"]
    assert db.doc_delete("fresh") is True
    assert db.doc_get("fresh") is None
    with pytest.raises(stratadb.InvalidArgument, match="JSON path"):
        db.doc_get("d1", "no-slash")


def test_events(any_db: AnyDb) -> None:
    db = any_db
    assert db.event_append("started", {"step": 1}) == 1
    assert db.event_append("progress", {"step": 2}) == 2
    assert db.event_append("progress") == 3
    assert db.event_len() == 3
    evs = db.event_read()
    assert [(e["seq"], e["type"], e["payload"]) for e in evs] == [
        (1, "started", {"step": 1}),
        (2, "progress", {"step": 2}),
        (3, "progress", None),
    ]
    assert all(e["timestamp"] > 1.6e9 for e in evs)
    assert [e["seq"] for e in db.event_read(2)] == [2, 3]
    assert [e["seq"] for e in db.event_read(1, 2)] == [1, 2]
    assert [e["seq"] for e in db.event_read(event_type="progress")] == [2, 3]
    assert db.event_len(space="other") == 0


def test_state(any_db: AnyDb) -> None:
    db = any_db
    assert db.state_init("lock", "free") is True
    assert db.state_init("lock", "again") is False
    assert db.state_get("lock") == "free"
    assert db.state_cas("lock", "free", "held") is True
    assert db.state_cas("lock", "free", "held") is False
    assert db.state_get("lock") == "held"
    db.state_set("lock", "free")
    assert db.state_get("lock") == "free"
    # expected=None means absent; new=None deletes.
    assert db.state_cas("new", None, 1) is True
    assert db.state_cas("new", 1, None) is True
    assert db.state_get("new") is None
    assert db.state_delete("lock") is True
    assert db.state_delete("lock") is False


def test_transaction_commits_as_one_version(any_db: AnyDb) -> None:
    db = any_db
    with db.transaction("main", message="three writes") as tx:
        assert tx.open and tx.branch == "main" and tx.version == 1
        tx.kv_put("a", 1)
        tx.kv_put("b", 2)
        assert tx.kv_get("a") == 1  # read-your-writes
        assert db.kv_get("a") is None  # not visible outside before commit
        tx.doc_put("d", {"x": 1})
        tx.doc_set("d", "/y", 2)
        assert tx.doc_get("d", "/y") == 2
        tx.event_append("e", 1)
        assert [e["payload"] for e in tx.event_read()] == [1]
        tx.state_set("s", 0)
        assert tx.state_cas("s", 0, 1)
        assert tx.state_init("t", 1)
        assert tx.state_get("s") == 1
        tx.kv_put("x", "other space", space="s2")
        assert tx.kv_list() == [("a", 1), ("b", 2)]
        assert tx.doc_list() == [("d", {"x": 1, "y": 2})]
        assert tx.kv_delete("b")
        assert tx.doc_delete("nothing") is False
        assert tx.state_delete("t")
    assert not tx.open
    assert tx.version == 1
    log = db.log()
    assert len(log) == 1 and log[0]["version"] == 1 and log[0]["message"] == "three writes"
    assert db.kv_get("x", space="s2") == "other space"
    assert db.kv_get("b") is None
    with pytest.raises(stratadb.InvalidArgument, match="finished"):
        tx.kv_put("late", 1)


def test_transaction_rolls_back_on_exception(any_db: AnyDb) -> None:
    db = any_db
    db.kv_put("keep", 1)
    with pytest.raises(ZeroDivisionError):
        with db.transaction() as tx:
            tx.kv_put("keep", 2)
            tx.kv_put("lost", 3)
            1 / 0
    assert db.kv_get("keep") == 1 and db.kv_get("lost") is None
    assert db.branch_info("main")["head"] == 1
    # Explicit commit / rollback, and a transaction that writes nothing makes no version.
    tx = db.transaction()
    tx.set_message("explicit")
    tx.kv_put("c", 1)
    assert tx.commit() == 2
    tx = db.transaction()
    tx.kv_put("d", 1)
    tx.rollback()
    assert db.kv_get("d") is None
    assert db.transaction().commit() is None
    assert db.log(limit=1)[0]["message"] == "explicit"


def test_branches_diff_merge(any_db: AnyDb) -> None:
    db = any_db
    db.kv_put("shared", 0)
    info = db.fork_branch("main", "exp")
    assert info["name"] == "exp" and info["parent"] == "main" and info["head"] == 1
    db.kv_put("task:1", "done", branch="exp")
    db.kv_put("shared", 1, branch="exp")
    db.create_branch("empty")
    assert [b["name"] for b in db.branches()] == ["empty", "exp", "main"]
    d = db.diff("main", "exp")
    assert (d.added, d.removed, d.modified, len(d), bool(d)) == (1, 0, 1, 2, True)
    assert d.spaces == ["default"]
    entries = list(d)
    assert [(e["change"], e["key"], e["a"], e["b"]) for e in entries] == [
        ("added", "task:1", None, "done"),
        ("modified", "shared", 0, 1),
    ]
    assert not db.diff("main", "main")
    report = db.merge("exp", "main")
    assert report["applied"] == 2 and report["version"] == 2
    assert db.kv_get("task:1") == "done"
    # A fork of an earlier version.
    db.fork_branch("main@1", "old")
    assert db.kv_get("task:1", branch="old") is None
    db.delete_branch("old")
    assert "old" not in [b["name"] for b in db.branches()]
    # Strict merge with a conflict writes nothing.
    db.kv_put("shared", "main side")
    db.kv_put("shared", "exp side", branch="exp")
    with pytest.raises(stratadb.MergeConflict) as e:
        db.merge("exp", "main", strategy="strict")
    assert [(c["key"], c["source"], c["target"], c["ancestor"]) for c in e.value.conflicts] == [
        ("shared", "exp side", "main side", 1)
    ]
    assert db.kv_get("shared") == "main side"
    db.merge("exp", "main", strategy="theirs")
    assert db.kv_get("shared") == "exp side"
    # "ours" keeps the target's side of a conflict and takes the rest.
    db.kv_put("shared", "main again")
    db.kv_put("shared", "exp again", branch="exp")
    db.kv_put("only-exp", 1, branch="exp")
    db.merge("exp", "main", strategy="ours")
    assert db.kv_get("shared") == "main again"
    assert db.kv_get("only-exp") == 1
    with pytest.raises(stratadb.InvalidArgument, match="strategy"):
        db.merge("exp", "main", strategy="newest")  # type: ignore[arg-type]


def test_log_and_history(any_db: AnyDb) -> None:
    db = any_db
    db.kv_put("k", 1)
    db.kv_put("k", 2)
    db.kv_delete("k")
    db.doc_put("d", {"a": 1})
    log = db.log()
    assert [c["version"] for c in log] == [4, 3, 2, 1]
    assert [c["entries"] for c in log] == [1, 1, 1, 1]
    assert [c["version"] for c in db.log(limit=2)] == [4, 3]
    h = db.history("k")
    assert [(x["version"], x["value"], x["deleted"]) for x in h] == [(3, None, True), (2, 2, False), (1, 1, False)]
    assert [x["value"] for x in db.history("d", kind="doc")] == [{"a": 1}]
    with pytest.raises(stratadb.InvalidArgument, match="kind"):
        db.history("k", kind="table")  # type: ignore[arg-type]


def test_changes_since(any_db: AnyDb) -> None:
    db = any_db
    db.kv_put("a", 1)
    with db.transaction() as tx:
        tx.kv_put("b", b"\x00")
        tx.kv_delete("a")
    changes = list(db.changes_since("main", 0))
    assert [c["version"] for c in changes] == [1, 2]
    assert changes[0]["puts"] == [("default", "kv", "a", 1)]
    assert changes[1]["puts"] == [("default", "kv", "b", b"\x00")]
    assert changes[1]["deletes"] == [("default", "kv", "a")]
    assert [c["version"] for c in db.changes_since("main", 1)] == [2]


def test_bundles(any_db: AnyDb, tmp_path: Path) -> None:
    db = any_db
    db.kv_put("a", 1)
    db.kv_put("b", {"nested": [1, 2]})
    manifest = db.export_bundle("main", tmp_path / "main.branchbundle.tar.zst")
    assert manifest["branch"] == "main" and manifest["to_version"] == 2 and manifest["entry_count"] == 2
    partial = db.export_bundle("main", tmp_path / "tail.branchbundle.tar.zst", from_version=1)
    assert (partial["from_version"], partial["to_version"]) == (1, 2)
    other = stratadb.Strata.open(tmp_path / "other")
    report = other.import_bundle(tmp_path / "main.branchbundle.tar.zst", target="copy")
    assert report["branch"] == "copy" and report["created"] and report["head"] == 2
    assert other.kv_get("b", branch="copy") == {"nested": [1, 2]}
    # A damaged bundle is refused as Corrupt and nothing is imported.
    raw = bytearray((tmp_path / "main.branchbundle.tar.zst").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "bad.branchbundle.tar.zst").write_bytes(bytes(raw))
    with pytest.raises(stratadb.Corrupt):
        other.import_bundle(tmp_path / "bad.branchbundle.tar.zst", target="bad")
    assert "bad" not in [b["name"] for b in other.branches()]


def test_remotes_fetch_all_and_remove(any_db: AnyDb, tmp_path: Path) -> None:
    a = any_db
    a.kv_put("x", 1)
    a.fork_branch("main", "feature")
    a.kv_put("y", 2, branch="feature")
    a.remote_add("origin", str(tmp_path / "remote"))
    pushed = a.push("origin", all=True)
    assert sorted(r["branch"] for r in pushed) == ["feature", "main"]
    statuses = a.sync_status(all=True)
    assert sorted((s["branch"], s["ahead"], s["behind"]) for s in statuses) == [("feature", 0, 0), ("main", 0, 0)]

    b = stratadb.Strata.open(tmp_path / "b")
    b.remote_add("origin", str(tmp_path / "remote"))
    fetched = b.fetch("origin", "feature")
    assert fetched["entries"] == 2
    mirrors = [x["name"] for x in b.branches(internal=True) if x["name"].startswith("_origin:")]
    assert mirrors == ["_origin:origin:feature"]
    assert b.kv_get("y", branch="_origin:origin:feature") == 2
    assert sorted(r["branch"] for r in b.fetch(all=True)) == ["feature", "main"]
    pulled = b.pull(all=True)
    assert sorted(r["fetch"]["branch"] for r in pulled) == ["feature", "main"]
    assert b.kv_get("y", branch="feature") == 2

    # Options are stored; secret-looking ones are masked when listed.
    b.remote_add("bucket", "s3://some-bucket/prefix", endpoint="http://127.0.0.1:9", region="eu", allow_http=True)
    listed = {r["name"]: r for r in b.remotes()}
    assert listed["bucket"]["options"] == {"endpoint": "http://127.0.0.1:9", "region": "eu", "allow_http": "true"}
    b.remote_remove("origin")
    assert [r["name"] for r in b.remotes()] == ["bucket"]
    assert not [x for x in b.branches(internal=True) if x["name"].startswith("_origin:origin:")]
    with pytest.raises(stratadb.NotFound):
        b.push("origin", "main")


def test_all_reports_every_failure(any_db: AnyDb, tmp_path: Path) -> None:
    a = any_db
    a.kv_put("x", 1)
    a.fork_branch("main", "two")
    a.remote_add("origin", str(tmp_path / "remote"))
    a.push(all=True)
    b = stratadb.clone(str(tmp_path / "remote"), tmp_path / "b")
    b.kv_put("from-b", 1, branch="two")
    b.push("origin", "two")
    a.kv_put("from-a", 1, branch="two")
    a.kv_put("more", 1)
    with pytest.raises(stratadb.PushRejected) as e:
        a.push(all=True)
    assert "two" in str(e.value)
    assert [r["branch"] for r in e.value.results] == ["main"]  # type: ignore[attr-defined]


def test_settings(any_db: AnyDb) -> None:
    db = any_db
    assert db.config("user.name") is None
    db.set_config("user.name", "agent-7")
    assert db.config("user.name") == "agent-7"
    assert db.config_list() == {"user.name": "agent-7"}
    db.kv_put("a", 1)
    assert db.log()[0]["author"] == "agent-7"
    db.set_config("user.name", None)
    assert db.config_list() == {}


def test_null_and_deleted_stay_distinct(any_db: AnyDb) -> None:
    # A stored null is a value; a deletion is not (history, diff and diff_iter agree on both sides).
    db = any_db
    db.kv_put("n", 1)
    db.fork_branch("main", "f")
    db.kv_put("n", None)
    db.kv_put("gone", 1)
    db.kv_delete("gone")
    db.kv_put("fresh", None, branch="f")
    h = db.history("n")
    assert [(x["version"], x["value"], x["deleted"]) for x in h] == [(2, None, False), (1, 1, False)]
    h = db.history("gone")
    assert [(x["version"], x["value"], x["deleted"]) for x in h] == [(4, None, True), (3, 1, False)]
    d = db.diff("f", "main")
    items = sorted((e["change"], e["key"], e["a"], e["b"]) for e in d)
    assert items == [("modified", "n", 1, None), ("removed", "fresh", None, None)]
    assert (d.added, d.removed, d.modified) == (0, 1, 1)
    streamed = sorted((e["change"], e["key"], e["a"], e["b"]) for e in db.diff_iter("f", "main"))
    assert streamed == items
    # A strict merge's conflict between a stored null and a value.
    db.kv_put("n", 5, branch="f")
    with pytest.raises(stratadb.MergeConflict) as e:
        db.merge("f", "main", strategy="strict")
    (c,) = e.value.conflicts
    assert (c["key"], c["source"], c["target"]) == ("n", 5, None)


def test_long_lists_page(any_db: AnyDb) -> None:
    db = any_db
    with db.transaction() as tx:
        for i in range(250):
            tx.kv_put(f"k{i:04}", "x" * 100)
    it = db.kv_list("k", page_size=100)
    keys = [k for k, _ in it]
    assert keys == [f"k{i:04}" for i in range(250)]
    assert it.pages_fetched >= 3 and it.version == 1
    # Pinned: a write after the first page is not seen by the rest of the listing.
    it = db.kv_list("k", page_size=100)
    first = next(it)
    db.kv_put("k9999", 1)
    assert [first] + list(it) == [(f"k{i:04}", "x" * 100) for i in range(250)]
    assert [k for k, _ in db.doc_list()] == []
