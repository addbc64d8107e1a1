"""stratadb.connect(): what is particular to a server (the shared data API runs twice in test_api.py).

Auth refusals write nothing; a server that is not there, a bad URL and a closed client raise clear
errors; two clients see each other's commits; a transaction is a server-side session.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import List, Tuple

import pytest

import stratadb

from conftest import Server, add_key


def test_connect_url_repr_info_and_close(server: Tuple[Server, str]) -> None:
    srv, key = server
    with stratadb.connect(srv.url, api_key=key) as db:
        assert db.url == srv.url and srv.url in repr(db)
        info = db.server_info()
        assert isinstance(info, dict) and info, info
        assert db.kv_put("a", 1) == 1
    with pytest.raises(stratadb.InvalidArgument, match="closed"):
        db.kv_get("a")


def test_key_from_environment(server: Tuple[Server, str], monkeypatch: pytest.MonkeyPatch) -> None:
    srv, key = server
    monkeypatch.setenv("STRATA_API_KEY", key)
    assert stratadb.connect(srv.url).kv_put("env", True) == 1
    monkeypatch.setenv("STRATA_API_KEY", "not-a-key")
    with pytest.raises(stratadb.StrataError):
        stratadb.connect(srv.url)


def test_auth_refusals_write_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    admin = add_key(data, "admin", ["*"], ["*"])
    ro = add_key(data, "ro", ["*"], [])
    main_only = add_key(data, "main-only", ["main"], ["main"])
    srv = Server(data)
    try:
        db = stratadb.connect(srv.url, api_key=admin)
        db.kv_put("a", 1)
        db.create_branch("other")
        # No key and a bad key: refused when connecting, with the reason.
        with pytest.raises(stratadb.StrataError) as e:
            stratadb.connect(srv.url, api_key=None)
        assert "key" in str(e.value).lower()
        with pytest.raises(stratadb.StrataError):
            stratadb.connect(srv.url, api_key="not-a-key")
        # A read-only key reads and may not write; a key outside its branches may not touch others.
        reader = stratadb.connect(srv.url, api_key=ro)
        assert reader.kv_get("a") == 1
        with pytest.raises(stratadb.StrataError, match="may not write"):
            reader.kv_put("x", 1)
        with pytest.raises(stratadb.StrataError):
            with reader.transaction("main") as tx:
                tx.kv_put("y", 1)
        with pytest.raises(stratadb.StrataError):
            reader.create_branch("ro-made")
        scoped = stratadb.connect(srv.url, api_key=main_only)
        with pytest.raises(stratadb.StrataError):
            scoped.kv_put("x", 1, branch="other")
        assert scoped.kv_put("fine", 1) == 2
        # Nothing refused was written.
        assert db.kv_get("x") is None and db.kv_get("y") is None
        assert db.kv_get("x", branch="other") is None
        assert [c["version"] for c in db.log()] == [2, 1]
        assert db.log("other") == []
        assert "ro-made" not in [b["name"] for b in db.branches()]
    finally:
        srv.stop()


def test_unreachable_and_bad_urls() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(stratadb.StrataError, match=f"127.0.0.1:{port}"):
        stratadb.connect(f"strata://127.0.0.1:{port}", api_key="k", timeout=5)
    for bad in ["http://127.0.0.1:1", "strata://nohost", "strata://h:1/path"]:
        with pytest.raises(stratadb.StrataError):
            stratadb.connect(bad)
    with pytest.raises(stratadb.InvalidArgument, match="timeout"):
        stratadb.connect("strata://127.0.0.1:1", timeout=0)


def test_errors_match_the_embedded_classes(server: Tuple[Server, str]) -> None:
    srv, key = server
    db = stratadb.connect(srv.url, api_key=key)
    with pytest.raises(stratadb.NotFound):
        db.kv_get("a", branch="nope")
    with pytest.raises(stratadb.NotFound):
        db.kv_get("a", branch="main@5")
    with pytest.raises(stratadb.InvalidArgument):
        db.create_branch("bad name with spaces")
    db.create_branch("x")
    with pytest.raises(stratadb.InvalidArgument):
        db.create_branch("x")
    with pytest.raises(stratadb.InvalidArgument):
        db.kv_put("k", 1, space="_sync")


def test_two_clients_and_threads_share_one_database(server: Tuple[Server, str]) -> None:
    srv, key = server
    a = stratadb.connect(srv.url, api_key=key)
    b = stratadb.connect(srv.url, api_key=key)
    a.kv_put("from-a", 1)
    assert b.kv_get("from-a") == 1
    errors: List[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(20):
                a.kv_put(f"t{n}:{i}", i)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # Every write acknowledged is there, and versions have no gaps.
    assert len(list(b.kv_list("t"))) == 80
    assert [c["version"] for c in b.log(limit=1000)] == list(range(81, 0, -1))


def test_transaction_is_a_session(server: Tuple[Server, str]) -> None:
    srv, key = server
    db = stratadb.connect(srv.url, api_key=key)
    tx = db.transaction("main", message="session", author="py")
    tx.kv_put("a", 1)
    other = stratadb.connect(srv.url, api_key=key)
    assert other.kv_get("a") is None
    assert tx.commit() == 1
    assert other.kv_get("a") == 1
    entry = other.log()[0]
    assert (entry["message"], entry["author"]) == ("session", "py")
    assert "ClientTransaction" in repr(tx)
    with pytest.raises(stratadb.InvalidArgument, match="finished"):
        tx.commit()


def test_sync_runs_on_the_server(tmp_path: Path) -> None:
    # The server's folder has a remote configured on its machine; the client only names it.
    data = tmp_path / "data"
    remote = tmp_path / "remote"
    with stratadb.Strata.open(data) as local:
        local.remote_add("origin", str(remote))
    key = add_key(data, "admin", ["*"], ["*"])
    srv = Server(data)
    try:
        db = stratadb.connect(srv.url, api_key=key)
        assert [r["name"] for r in db.remotes()] == ["origin"]
        db.kv_put("a", 1)
        assert db.push("origin", "main")["remote_version"] == 1
        assert db.sync_status()["ahead_versions"] == 0
        # Another database clones the remote, writes and pushes; the server fetches and pulls it.
        other = stratadb.clone(str(remote), tmp_path / "other")
        other.kv_put("b", 2)
        other.push()
        assert db.fetch()["remote_version"] == 2
        assert db.sync_status()["behind_versions"] == 1
        db.pull()
        assert db.kv_get("b") == 2
        # A push that lost the race is PushRejected; a strict pull with a conflict writes nothing.
        other.kv_put("a", "other side")
        other.push()
        db.kv_put("a", "server side")
        with pytest.raises(stratadb.PushRejected):
            db.push()
        with pytest.raises(stratadb.MergeConflict) as e:
            db.pull(strategy="strict")
        assert [c["key"] for c in e.value.conflicts] == ["a"]
        assert db.kv_get("a") == "server side"
        # "ours" and a conflict branch run on the server too.
        with pytest.raises(stratadb.MergeConflict):
            db.pull(strategy="strict", conflict_branch="conflicts/a")
        assert db.branch_info("conflicts/a")["name"] == "conflicts/a"
        db.pull(strategy="ours")
        assert db.kv_get("a") == "server side"
        with pytest.raises(stratadb.InvalidArgument, match="strategy"):
            db.pull(strategy="mine")  # type: ignore[call-overload]
        with pytest.raises(stratadb.NotFound):
            db.push("nowhere")
    finally:
        srv.stop()


def test_admin_needs_a_key_that_writes_every_branch(tmp_path: Path) -> None:
    # Settings and remotes are the database's, not a branch's: changing them needs write on "*";
    # reading them needs read on "*". Refusals change nothing, and tokens never leave the server.
    data = tmp_path / "data"
    admin = add_key(data, "admin", ["*"], ["*"])
    ro = add_key(data, "ro", ["*"], [])
    agents = add_key(data, "agents", [], ["agent/*"])
    srv = Server(data)
    try:
        db = stratadb.connect(srv.url, api_key=admin)
        db.set_config("user.name", "admin-set")
        db.remote_add("hub", "http://127.0.0.1:9/v1/projects/p", token="SECRET-TOKEN-1")
        reader = stratadb.connect(srv.url, api_key=ro)
        scoped = stratadb.connect(srv.url, api_key=agents)
        for who in (reader, scoped):
            with pytest.raises(stratadb.StrataError, match="every branch"):
                who.set_config("user.name", "intruder")
            with pytest.raises(stratadb.StrataError, match="every branch"):
                who.remote_add("evil", str(tmp_path / "evil"))
            with pytest.raises(stratadb.StrataError, match="every branch"):
                who.remote_remove("hub")
        # The read-only key reads settings and remotes (masked); the branch-limited key may not.
        assert reader.config("user.name") == "admin-set"
        assert reader.remotes()[0]["options"] == {"token": "***"}
        with pytest.raises(stratadb.StrataError, match="every branch"):
            scoped.config_list()
        with pytest.raises(stratadb.StrataError, match="every branch"):
            scoped.remotes()
        # Nothing changed.
        assert db.config_list() == {"user.name": "admin-set"}
        assert [r["name"] for r in db.remotes()] == ["hub"]
        assert "SECRET-TOKEN-1" not in repr(db.remotes())
    finally:
        srv.stop()


def test_client_has_every_method_of_strata() -> None:
    # The same names and signatures; only how a handle is made and named differs.
    import inspect

    def public(cls: type) -> set:  # type: ignore[type-arg]
        return {n for n in dir(cls) if not n.startswith("_")}

    assert public(stratadb.Strata) - public(stratadb.Client) == {"open", "path"}
    assert public(stratadb.Client) - public(stratadb.Strata) == {"url", "server_info"}
    for name in sorted(public(stratadb.Strata) & public(stratadb.Client)):
        a, b = getattr(stratadb.Strata, name), getattr(stratadb.Client, name)
        assert str(inspect.signature(a)) == str(inspect.signature(b)), name
    assert public(stratadb.Transaction) == public(stratadb.ClientTransaction)
