"""Misuses the API; `mypy --strict` must reject each marked line (proves the stubs are read)."""

from __future__ import annotations

import stratadb

db = stratadb.Strata.open("/tmp/x")
n: int = db.kv_list()  # E: a ListIterator is not an int
db.merge("a", "b", strategy="newest")  # E: not a strategy
db.kv_put("k", 1, branch=3)  # E: branch is a str
s: str = db.sync_status("origin")["ahead"]  # E: ahead is an int
db.remote_add("hub", "http://127.0.0.1:9/a/b", token=42)  # E: a token is a str
