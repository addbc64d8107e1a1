"""Seed 004's walkthrough in Python, step by step, through a folder remote, through S3 (moto) and through
a real StrataHub (`stratahub` on 127.0.0.1, a project per test, a write member's API key as `token=`)."""

from __future__ import annotations

from pathlib import Path

import pytest

import stratadb
from conftest import Remote


def keys(db: stratadb.Strata) -> list[str]:
    return [k for k, _ in db.kv_list()]


def test_seed_walkthrough(tmp_path: Path, remote: Remote) -> None:
    url, options = remote

    # Setup: agent A works locally.
    a = stratadb.Strata.open(tmp_path / "agent-a")
    a.kv_put("config", {"model": "gpt-4", "temperature": 0.7})
    a.doc_put("notes/research.md", "# Research\n\n## Findings\n...")
    a.kv_put("task:1", {"status": "done", "result": "..."})
    a.kv_put("task:2", {"status": "done", "result": "..."})
    assert a.branch_info("main")["head"] == 4

    # Registering a remote, then the first push: everything is uploaded.
    a.remote_add("hub", url, **options)
    assert [r["name"] for r in a.remotes()] == ["hub"]
    if "token" in options:
        # A hub's API key is kept in the local database and listed only as ***.
        assert a.remotes()[0]["options"]["token"] == "***"
        assert options["token"] not in repr(a.remotes())
    assert a.sync_status("hub", "main")["ahead"] == 4
    pushed = a.push("hub", "main")
    assert pushed["entries"] == 4 and not pushed["up_to_date"]
    st = a.sync_status("hub", "main")
    assert (st["ahead"], st["behind"]) == (0, 0)
    assert st["remote_version"] == pushed["remote_version"]
    assert st["last_synced"] is not None
    # A push with nothing new sends nothing.
    assert a.push("hub", "main")["up_to_date"]

    # Agent B starts empty, adds the remote and pulls: it has all four entries.
    b = stratadb.Strata.open(tmp_path / "agent-b")
    b.remote_add("hub", url, **options)
    pulled = b.pull("hub", "main")
    assert pulled["fetch"]["entries"] == 4
    assert keys(b) == ["config", "task:1", "task:2"]
    assert b.doc_get("notes/research.md") == "# Research\n\n## Findings\n..."
    st = b.sync_status("hub", "main")
    assert (st["ahead"], st["behind"]) == (0, 0)

    # Both work independently.
    a.kv_put("task:3", {"status": "done", "result": "..."})
    a.kv_put("task:4", {"status": "done", "result": "..."})
    b.kv_put("task:5", {"status": "done", "result": "..."})
    b.kv_put("task:6", {"status": "done", "result": "..."})
    st = a.sync_status("hub", "main")
    assert (st["ahead"], st["behind"], st["ahead_versions"]) == (2, 0, 2)

    # A pushes; B's push is rejected with the remote's version.
    a_push = a.push("hub", "main")
    assert a_push["entries"] == 2
    with pytest.raises(stratadb.PushRejected) as rejected:
        b.push("hub", "main")
    assert "pull" in str(rejected.value)
    assert rejected.value.remote_version == a_push["remote_version"]
    assert isinstance(rejected.value, stratadb.StrataError)

    # B pulls (a clean merge, no overlapping keys) and pushes only its own work.
    b.pull("hub", "main")
    assert keys(b) == ["config"] + [f"task:{i}" for i in range(1, 7)]
    st = b.sync_status("hub", "main")
    assert (st["ahead"], st["behind"]) == (2, 0)
    b_push = b.push("hub", "main")
    assert b_push["entries"] == 2
    assert b_push["remote_version"] > a_push["remote_version"]

    # A catches up.
    a.pull("hub", "main")
    assert keys(a) == keys(b)
    assert (a.sync_status("hub", "main")["ahead"], a.sync_status("hub", "main")["behind"]) == (0, 0)

    # Conflict: both write task:1. A pushes first; B's strict pull fails and changes nothing.
    a.kv_put("task:1", {"status": "done", "result": "approach A"})
    b.kv_put("task:1", {"status": "done", "result": "approach B"})
    a.push("hub", "main")
    head_before = b.branch_info("main")["head"]
    with pytest.raises(stratadb.MergeConflict) as conflict:
        b.pull("hub", "main", strategy="strict")
    assert [(c["key"], c["source"], c["target"]) for c in conflict.value.conflicts] == [
        (
            "task:1",
            {"status": "done", "result": "approach A"},
            {"status": "done", "result": "approach B"},
        )
    ]
    assert b.branch_info("main")["head"] == head_before
    assert b.kv_get("task:1") == {"status": "done", "result": "approach B"}
    # The mirror was updated as by fetch: B is one version behind and one ahead.
    st = b.sync_status("hub", "main")
    assert (st["ahead"], st["behind"]) == (1, 1)

    # Last writer wins (the remote's value), then B is in step.
    b.pull("hub", "main", strategy="theirs")
    assert b.kv_get("task:1") == {"status": "done", "result": "approach A"}
    b.push("hub", "main")
    a.pull("hub", "main")
    assert dict(a.kv_list()) == dict(b.kv_list())

    # A third agent clones the whole remote.
    c = stratadb.clone(url, tmp_path / "agent-c", **options)
    assert dict(c.kv_list()) == dict(a.kv_list())
    assert [r["name"] for r in c.remotes()] == ["origin"]
    if "token" in options:
        assert c.remotes()[0]["options"] == {"token": "***"}  # the key is kept for later pulls
    st = c.sync_status("origin", "main")
    assert (st["ahead"], st["behind"]) == (0, 0)
