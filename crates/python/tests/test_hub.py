"""StrataHub remotes from Python, against a real `stratahub` process: the API key comes from `token=`
(stored in the local database, listed as ***) or else from STRATA_TOKEN, and a missing, wrong or
read-only key is refused with a typed error that names the problem and says what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

import stratadb
from conftest import Hub

WRONG = "shub_0000000000000000_00wrong"


@pytest.fixture(autouse=True)
def no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without STRATA_TOKEN, whatever the environment running pytest holds."""


def one_entry(path: Path) -> stratadb.Strata:
    db = stratadb.Strata.open(path)
    db.kv_put("task:1", {"status": "done"})
    return db


def test_stored_token_and_strata_token(hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = hub.project("env")
    key = hub.member_key(url)

    # Without a stored token, STRATA_TOKEN is used (and nothing secret is stored).
    monkeypatch.setenv("STRATA_TOKEN", key)
    a = one_entry(tmp_path / "a")
    a.remote_add("hub", url)
    assert a.remotes() == [{"name": "hub", "url": url, "options": {}}]
    assert a.push("hub", "main")["entries"] == 1
    c = stratadb.clone(url, tmp_path / "c")
    assert c.kv_get("task:1") == {"status": "done"}

    # A stored token is used before STRATA_TOKEN: with a wrong key in the environment it still works.
    monkeypatch.setenv("STRATA_TOKEN", WRONG)
    b = stratadb.Strata.open(tmp_path / "b")
    b.remote_add("hub", url, token=key)
    assert b.pull("hub", "main")["fetch"]["entries"] == 1
    assert b.kv_get("task:1") == {"status": "done"}
    assert key not in repr(b.remotes())
    # ...and the environment's wrong key is refused where nothing is stored.
    with pytest.raises(stratadb.Unauthorized):
        a.push("hub", "main")


def test_missing_token_is_unauthorized(hub: Hub, tmp_path: Path) -> None:
    url = hub.project("nokey")
    a = one_entry(tmp_path / "a")
    a.remote_add("hub", url)
    with pytest.raises(stratadb.Unauthorized) as e:
        a.push("hub", "main")
    msg = str(e.value)
    # It names the remote, the refusal, and how to give the key in Python.
    assert url in msg and "401" in msg and "API key" in msg, msg
    assert "token=" in msg and "STRATA_TOKEN" in msg, msg
    assert isinstance(e.value, stratadb.StrataError) and not isinstance(e.value, RuntimeError)
    assert e.value.retryable is False
    with pytest.raises(stratadb.Unauthorized):
        a.pull("hub", "main")
    with pytest.raises(stratadb.Unauthorized):
        stratadb.clone(url, tmp_path / "c")
    assert not (tmp_path / "c").exists(), "a refused clone leaves no database behind"

    # Nothing was changed locally: with the key given, the first push still sends the entry.
    assert a.branch_info("main")["head"] == 1
    a.remote_remove("hub")
    a.remote_add("hub", url, token=hub.member_key(url))
    assert a.push("hub", "main")["entries"] == 1


def test_wrong_token_is_unauthorized_and_never_shown(hub: Hub, tmp_path: Path) -> None:
    url = hub.project("wrongkey")
    a = one_entry(tmp_path / "a")
    a.remote_add("hub", url, token=WRONG)
    assert a.remotes()[0]["options"] == {"token": "***"}
    for call in (lambda: a.push("hub", "main"), lambda: a.fetch("hub", "main")):
        with pytest.raises(stratadb.Unauthorized) as e:
            call()
        assert "401" in str(e.value) and "token=" in str(e.value), str(e.value)
        assert WRONG not in str(e.value) and WRONG not in repr(e.value)
    with pytest.raises(stratadb.Unauthorized) as e:
        stratadb.clone(url, tmp_path / "c", token=WRONG)
    assert WRONG not in str(e.value)


def test_read_only_key_is_permission_denied(hub: Hub, tmp_path: Path) -> None:
    url = hub.project("readonly")
    writer = one_entry(tmp_path / "w")
    writer.remote_add("hub", url, token=hub.member_key(url, "write"))
    writer.push("hub", "main")

    reader = stratadb.Strata.open(tmp_path / "r")
    reader.remote_add("hub", url, token=hub.member_key(url, "read"))
    reader.pull("hub", "main")  # a reader may pull...
    assert reader.kv_get("task:1") == {"status": "done"}
    reader.kv_put("task:2", {"status": "done"})
    with pytest.raises(stratadb.PermissionDenied) as e:  # ...but not push
        reader.push("hub", "main")
    assert "403" in str(e.value) and "only read" in str(e.value), str(e.value)
    assert not isinstance(e.value, stratadb.Unauthorized)
    st = reader.sync_status("hub", "main")
    assert (st["ahead"], st["behind"]) == (1, 0)
