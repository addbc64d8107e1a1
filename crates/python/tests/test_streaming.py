"""List iterators over 100k keys stream page by page instead of building the whole list."""

from __future__ import annotations

import gc
import os
import tracemalloc

import stratadb

N = 100_000


def fill(db: stratadb.Strata) -> None:
    with db.transaction() as tx:
        for i in range(N):
            tx.kv_put(f"key:{i:06}", "v" * 100)
            if i % 10 == 0:
                tx.doc_put(f"doc:{i:06}", {"i": i, "pad": "p" * 100})


def test_kv_list_streams_100k_keys(db: stratadb.Strata) -> None:
    fill(db)
    it = db.kv_list("key:", page_size=1000)
    assert it.pages_fetched == 0
    first = next(it)
    assert first == ("key:000000", "v" * 100)
    assert it.pages_fetched == 1

    gc.collect()
    tracemalloc.start()
    count, last = 1, first[0]
    for k, v in it:
        assert k > last
        last = k
        count += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == N
    assert it.pages_fetched == N // 1000 + 1  # the last, empty page ends it
    # The whole listing as Python objects is over 20 MB; a streamed walk holds about one entry.
    assert peak < 2 * 1024 * 1024, peak


def test_whole_list_is_much_bigger_than_the_stream(db: stratadb.Strata) -> None:
    """The bound above means something: materialising the same listing exceeds it many times over."""
    fill(db)
    gc.collect()
    tracemalloc.start()
    everything = list(db.kv_list("key:"))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(everything) == N
    assert peak > 10 * 1024 * 1024


def test_listing_is_pinned_to_one_version(db: stratadb.Strata) -> None:
    fill(db)
    it = db.doc_list("doc:", page_size=100)
    seen = [next(it)[0]]
    db.doc_put("doc:000001", {"late": True})  # would sort second
    db.doc_delete("doc:000010")
    seen += [k for k, _ in it]
    assert len(seen) == N // 10
    assert "doc:000001" not in seen and "doc:000010" in seen
    assert it.version == 1


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_diff_iter_streams_with_bounded_memory(db: stratadb.Strata) -> None:
    value = "x" * 1000
    with db.transaction() as tx:
        for i in range(N):
            tx.kv_put(f"key:{i:06}", value)
    db.create_branch("empty")
    gc.collect()
    base = rss_bytes()
    peak, count = 0, 0
    for entry in db.diff_iter("empty", "main"):
        assert entry["change"] == "added" and entry["b"] == value
        count += 1
        if count % 1000 == 0:
            peak = max(peak, rss_bytes() - base)
    assert count == N
    # 100k entries of 1 kB are over 100 MB held whole; the stream stays within a few pages.
    assert peak < 40 * 1024 * 1024, peak

    # The same diff held whole (diff()) is far above that bound: the check above can fail.
    whole = db.diff("empty", "main")
    held = rss_bytes() - base
    assert whole.added == N
    assert held > 80 * 1024 * 1024, held


def test_diff_iter_matches_diff_and_stops_early(db: stratadb.Strata) -> None:
    db.kv_put("same", 1)
    db.fork_branch("main", "b")
    db.kv_put("gone", 1)
    db.kv_put("changed", 1)
    db.kv_put("changed", 2, branch="b")
    db.kv_put("new", 1, branch="b")
    db.doc_put("d", {"x": 1}, branch="b", space="other")
    assert sorted(map(repr, db.diff_iter("main", "b"))) == sorted(map(repr, db.diff("main", "b")))
    it = db.diff_iter("main", "b")
    next(it)
    del it  # the producer thread stops on its next send
    import pytest

    with pytest.raises(stratadb.NotFound):
        db.diff_iter("main", "nope")
