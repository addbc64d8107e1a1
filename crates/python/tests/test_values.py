"""Values map to Python natively and come back with the same types."""

from __future__ import annotations

import math
from typing import Any

import pytest

import stratadb

ROUND_TRIPS: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**53 + 1,  # beyond a double's exact range
    2**63 - 1,
    -(2**63),
    1.5,
    -0.0,
    float("inf"),
    "",
    "héllo ✓ 😀",
    b"",
    b"\x00\xff binary",
    [],
    [1, "two", None, [3.0, b"4"]],
    {},
    {"nested": {"deeper": {"list": [1, {"x": b"y"}], "big": 2**62}}, "": "empty key"},
]


@pytest.mark.parametrize("value", ROUND_TRIPS, ids=repr)
def test_round_trip(db: stratadb.Strata, value: Any) -> None:
    db.kv_put("k", value)
    got = db.kv_get("k")
    assert got == value
    assert type(got) is type(value)
    db.doc_put("d", value)
    assert db.doc_get("d") == value
    db.state_set("s", value)
    assert db.state_get("s") == value


def test_types_are_exact(db: stratadb.Strata) -> None:
    db.kv_put("k", {"i": 1, "f": 1.0, "b": True, "n": None, "s": "1", "y": b"1"})
    got = db.kv_get("k")
    assert [type(got[k]).__name__ for k in "ifbnsy"] == ["int", "float", "bool", "NoneType", "str", "bytes"]


def test_nan_bytearray_and_tuple(db: stratadb.Strata) -> None:
    db.kv_put("nan", float("nan"))
    assert math.isnan(db.kv_get("nan"))
    db.kv_put("ba", bytearray(b"abc"))
    assert db.kv_get("ba") == b"abc"
    db.kv_put("t", (1, (2, 3)))
    assert db.kv_get("t") == [1, [2, 3]]


@pytest.mark.parametrize("bad", [2**63, -(2**63) - 1, 2**100])
def test_int_out_of_range_is_refused(db: stratadb.Strata, bad: int) -> None:
    with pytest.raises(stratadb.InvalidArgument, match="64-bit"):
        db.kv_put("k", bad)
    assert db.kv_get("k") is None


def test_unsupported_values_are_refused(db: stratadb.Strata) -> None:
    with pytest.raises(stratadb.InvalidArgument, match="set"):
        db.kv_put("k", {1, 2})
    with pytest.raises(stratadb.InvalidArgument, match="dict keys must be str"):
        db.kv_put("k", {1: "x"})
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(stratadb.InvalidArgument, match="nested"):
        db.kv_put("k", loop)
    assert db.branch_info("main")["head"] == 0


def test_large_value_10mb(db: stratadb.Strata) -> None:
    import os

    blob = os.urandom(10 * 1024 * 1024)
    db.kv_put("big", blob)
    assert db.kv_get("big") == blob
    doc = {"chunks": [blob[:1024]] * 10, "text": "x" * (10 * 1024 * 1024)}
    db.doc_put("bigdoc", doc)
    assert db.doc_get("bigdoc") == doc
