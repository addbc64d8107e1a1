"""A small program written against the type stubs; `mypy --strict` must accept it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import List, Optional, Tuple

import stratadb


def run(folder: Path) -> Tuple[int, Optional[float]]:
    db: stratadb.Strata = stratadb.Strata.open(folder / "db")
    version: Optional[int] = db.kv_put("config", {"model": "gpt-4", "temperature": 0.7})
    assert version == 1
    with db.transaction("main", message="tasks") as tx:
        tx.kv_put("task:1", {"status": "done"})
        tx.doc_set("notes", "/title", "Research")
    keys: List[str] = [k for k, _ in db.kv_list("task:")]
    d = db.diff("main@1", "main")
    added: int = d.added
    for entry in d:
        key: str = entry["key"]
        assert entry["change"] in ("added", "removed", "modified"), key
    db.remote_add("origin", str(folder / "remote"))
    report = db.push("origin", "main")
    remote_version: int = report["remote_version"]
    status = db.sync_status("origin", "main")
    ahead: int = status["ahead"]
    for s in db.sync_status("origin", all=True):
        assert s["behind"] == 0
    # A StrataHub remote with its API key (stored locally, listed as ***); nothing is sent here.
    db.remote_add("hub", "http://127.0.0.1:9/acme/agent-memory", token="shub_example", timeout=30)
    masked: str = next(r for r in db.remotes() if r["name"] == "hub")["options"]["token"]
    assert masked == "***"
    try:
        db.merge("main", "main", strategy="strict")
    except stratadb.MergeConflict as e:
        print(len(e.conflicts))
    except stratadb.PushRejected as e:
        print(e.remote_version)
    except (stratadb.Unauthorized, stratadb.PermissionDenied) as e:
        print(e.retryable)
    except stratadb.StrataError as e:
        print(e.retryable)
    return ahead + added + len(keys) + remote_version, status["last_synced"]


def run_on_server(url: str, key: Optional[str]) -> int:
    """The same code against a stratadb-server: only the opening line changes."""
    db: stratadb.Client = stratadb.connect(url, api_key=key, timeout=30.0)
    version: Optional[int] = db.kv_put("config", {"model": "gpt-4"})
    with db.transaction("main", message="tasks") as tx:
        tx.kv_put("task:1", {"status": "done"})
        seq: int = tx.event_append("done", {"task": 1})
    pairs: List[Tuple[str, object]] = list(db.kv_list("task:"))
    added: int = db.diff("main@1", "main").added
    head: int = db.branch_info("main")["head"]
    try:
        db.merge("main", "main", strategy="strict")
    except stratadb.MergeConflict as e:
        print(len(e.conflicts))
    db.close()
    return (version or 0) + seq + len(pairs) + added + head


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        print(run(Path(d)))
