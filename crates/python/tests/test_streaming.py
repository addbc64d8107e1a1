"""List iterators over 100k keys stream page by page instead of building the whole list."""

from __future__ import annotations

import gc
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
