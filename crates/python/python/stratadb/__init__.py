"""Strata for Python: a local-first, branchable embedded database for AI agents, with git-style sync.

    import stratadb

    db = stratadb.Strata.open("/agent-a/data")
    db.kv_put("config", {"model": "gpt-4", "temperature": 0.7})
    with db.transaction("main", message="two tasks") as tx:
        tx.kv_put("task:1", {"status": "done"})
        tx.kv_put("task:2", {"status": "done"})
    db.remote_add("origin", "/shared/strata-remote")
    db.push("origin", "main")

Every call releases the GIL while Rust works; handles may be shared between threads. After
``os.fork()``, open the database again in the child. Errors are ``StrataError`` subclasses.
"""

from __future__ import annotations

import os as _os

from ._stratadb import (
    Busy,
    ChangeIterator,
    Corrupt,
    Diff,
    DiffIterator,
    DiffStream,
    InvalidArgument,
    ListIterator,
    MergeConflict,
    NotFound,
    PermissionDenied,
    PushRejected,
    Strata,
    StrataError,
    Transaction,
    Unauthorized,
    __version__,
    _after_fork_in_child,
    clone,
)

# The extension keeps one async runtime per process; a forked child must not use the parent's (its
# worker threads do not exist in the child). The extension also checks the process id on every use.
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_after_fork_in_child)

__all__ = [
    "Busy",
    "ChangeIterator",
    "Corrupt",
    "Diff",
    "DiffIterator",
    "DiffStream",
    "InvalidArgument",
    "ListIterator",
    "MergeConflict",
    "NotFound",
    "PermissionDenied",
    "PushRejected",
    "Strata",
    "StrataError",
    "Transaction",
    "Unauthorized",
    "__version__",
    "clone",
]
