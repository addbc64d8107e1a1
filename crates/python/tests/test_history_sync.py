"""Commit messages and authors, recorded locally and carried by push and pull; settings; clone with
branch= and depth= after remote_compact."""

from __future__ import annotations

from pathlib import Path

import pytest

import stratadb


def test_message_and_author_are_recorded(db: stratadb.Strata) -> None:
    with db.transaction("main", message="first tasks", author="alice") as tx:
        tx.kv_put("task:1", "done")
    db.set_config("user.name", "bob")
    assert db.config("user.name") == "bob"
    assert db.config_list() == {"user.name": "bob"}
    with db.transaction(message="by default author") as tx:
        tx.kv_put("task:2", "done")
    tx = db.transaction()
    tx.set_message("explicit")
    tx.set_author("carol")
    tx.kv_put("task:3", "done")
    tx.commit()
    log = db.log()
    assert [(c["message"], c["author"]) for c in log] == [
        ("explicit", "carol"),
        ("by default author", "bob"),
        ("first tasks", "alice"),
    ]
    db.set_config("user.name", None)
    assert db.config("user.name") is None
    db.kv_put("task:4", "done")
    assert db.log(limit=1)[0]["author"] is None
    with pytest.raises(stratadb.InvalidArgument):
        db.set_config("", "x")


def test_history_travels_with_push_and_pull(tmp_path: Path) -> None:
    remote = str(tmp_path / "remote")
    a = stratadb.Strata.open(tmp_path / "a")
    a.remote_add("hub", remote)
    with a.transaction(message="config", author="alice") as tx:
        tx.kv_put("config", {"model": "gpt-4"})
    with a.transaction(message="tasks 1-2", author="alice") as tx:
        tx.kv_put("task:1", "done")
        tx.kv_put("task:2", "done")
    report = a.push("hub", "main")
    assert report["versions"] == 2

    b = stratadb.Strata.open(tmp_path / "b")
    b.remote_add("hub", remote)
    b.pull("hub", "main")
    assert [(c["message"], c["author"]) for c in b.log()] == [("tasks 1-2", "alice"), ("config", "alice")]

    # B's own commits keep their messages when pushed after a pull; A sees them.
    with b.transaction(message="task 3", author="bob") as tx:
        tx.kv_put("task:3", "done")
    b.push("hub", "main")
    a.pull("hub", "main")
    assert a.kv_get("task:3") == "done"
    # The remote's versions, each with its message and author, are A's mirror's history.
    assert [(c["message"], c["author"]) for c in a.log("_origin:hub:main")] == [
        ("task 3", "bob"),
        ("tasks 1-2", "alice"),
        ("config", "alice"),
    ]


def test_clone_one_branch_and_shallow(tmp_path: Path) -> None:
    remote = str(tmp_path / "remote")
    a = stratadb.Strata.open(tmp_path / "a")
    a.remote_add("origin", remote)
    for i in range(10):
        a.kv_put(f"k{i}", i)
    a.fork_branch("main", "feature")
    a.kv_put("f", 1, branch="feature")
    a.push(all=True)

    only = stratadb.clone(remote, tmp_path / "only", branch="feature")
    mirrors = [b["name"] for b in only.branches(internal=True) if b["name"].startswith("_origin:")]
    assert mirrors == ["_origin:origin:feature"]
    assert only.branch_info("main")["head"] == 0  # every database has a main; nothing was cloned into it
    assert only.kv_get("f", branch="feature") == 1
    with pytest.raises(stratadb.NotFound):
        stratadb.clone(remote, tmp_path / "none", branch="nope")

    full = stratadb.clone(remote, tmp_path / "full")
    assert len(full.log(limit=100)) == 10

    compacted = a.remote_compact("origin", "main")
    assert compacted["remote_version"] >= 10
    shallow = stratadb.clone(remote, tmp_path / "shallow", branch="main", depth=2)
    assert dict(shallow.kv_list()) == {f"k{i}": i for i in range(10)}
    assert len(shallow.log(limit=100)) < 10
    with pytest.raises(stratadb.InvalidArgument, match="depth"):
        stratadb.clone(remote, tmp_path / "zero", depth=0)
