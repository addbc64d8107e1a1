"""Shared fixtures: fresh database folders and remotes (a folder, or a prefix on the moto S3 emulator),
and real stratadb-server processes for stratadb.connect() (`any_db` runs a test on both).

The S3 remote needs the emulator that scripts/emulators.sh starts (scripts/test.sh does). When it is
not configured or not reachable the test FAILS: it never skips.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Tuple, Union
from urllib.parse import urlparse

import pytest

import stratadb

Remote = Tuple[str, Dict[str, str]]


def s3_location(label: str) -> Remote:
    """A fresh prefix on the moto emulator, as (url, options), or a test failure naming what to do."""
    endpoint = os.environ.get("STRATA_TEST_S3_ENDPOINT")
    bucket = os.environ.get("STRATA_TEST_S3_BUCKET")
    if not endpoint or not bucket:
        pytest.fail(
            "STRATA_TEST_S3_ENDPOINT / STRATA_TEST_S3_BUCKET are not set: run the tests through "
            "`bash scripts/test.sh` or `bash scripts/emulators.sh run -- pytest crates/python/tests`"
        )
    if not os.environ.get("AWS_ACCESS_KEY_ID"):
        pytest.fail("AWS_ACCESS_KEY_ID is not set: export dummy credentials (scripts/emulators.sh does)")
    u = urlparse(endpoint)
    try:
        socket.create_connection((u.hostname or "127.0.0.1", u.port or 80), timeout=5).close()
    except OSError as e:
        pytest.fail(f"the S3 emulator at {endpoint} is not reachable ({e}): start it with scripts/emulators.sh")
    options = {
        "endpoint": endpoint,
        "allow_http": "true",
        "region": "us-east-1",
        "max_retries": "2",
        "timeout": "60s",
    }
    return f"s3://{bucket}/py-{label}-{uuid.uuid4().hex}", options


@pytest.fixture
def db(tmp_path: Path) -> Iterator[stratadb.Strata]:
    handle = stratadb.Strata.open(tmp_path / "db")
    yield handle
    handle.close()


@pytest.fixture(params=["folder", "s3"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    """A fresh, empty remote of each kind."""
    if request.param == "folder":
        return str(tmp_path / "remote"), {}
    return s3_location("walk")


# ----- stratadb-server (for stratadb.connect) ---------------------------------------------------------


def server_binary() -> str:
    """The stratadb-server binary that scripts/python_sdk.sh builds and names in STRATADB_SERVER; the
    test FAILS (never skips) without it."""
    path = os.environ.get("STRATADB_SERVER")
    if not path:
        pytest.fail(
            "STRATADB_SERVER is not set: run the tests through `bash scripts/python_sdk.sh` (it builds "
            "stratadb-server), or `cargo build -p strata-server` and export its path"
        )
    if not os.access(path, os.X_OK):
        pytest.fail(f"STRATADB_SERVER={path} is not an executable: build it with `cargo build -p strata-server`")
    return path


def add_key(data_dir: Path, name: str, read: List[str], write: List[str]) -> str:
    """Creates an API key with `stratadb-server keys add` and returns it."""
    args = [server_binary(), "keys", "add", "--data-dir", str(data_dir), "--name", name]
    for r in read:
        args += ["--read", r]
    for w in write:
        args += ["--write", w]
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    return out.stdout.strip()


class Server:
    """A stratadb-server process on 127.0.0.1 port 0, stopped by its PID."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.data_dir = data_dir
        self.proc = subprocess.Popen(
            [server_binary(), "--data-dir", str(data_dir), "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "RUST_LOG": "error"},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.stop()
            pytest.fail(f"stratadb-server did not start: first line {line!r}")
        self.url = "strata://" + line[len("listening on ") :]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Tuple[Server, str]]:
    """A fresh server with a read-write key for every branch; yields it and the key."""
    data = tmp_path / "server-data"
    key = add_key(data, "py", ["*"], ["*"])
    srv = Server(data)
    yield srv, key
    srv.stop()


AnyDb = Union[stratadb.Strata, stratadb.Client]


@pytest.fixture(params=["embedded", "server"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnyDb]:
    """The same tests run on an embedded database and through stratadb.connect() to a real server."""
    if request.param == "embedded":
        handle: AnyDb = stratadb.Strata.open(tmp_path / "db")
        yield handle
        handle.close()
        return
    data = tmp_path / "server-data"
    key = add_key(data, "py", ["*"], ["*"])
    srv = Server(data)
    client = stratadb.connect(srv.url, api_key=key)
    yield client
    client.close()
    srv.stop()
