"""Shared fixtures: fresh database folders and remotes (a folder, a prefix on the moto S3 emulator, or a
project on a real `stratahub` process).

The S3 remote needs the emulator that scripts/emulators.sh starts (scripts/test.sh does); the hub remote
needs the `stratahub` binary named by STRATA_TEST_STRATAHUB (scripts/python_sdk.sh builds it and sets
it). When either is missing or not reachable the test FAILS: it never skips.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple
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


class Hub:
    """A real `stratahub serve` process on 127.0.0.1 (port 0) over a fresh folder, with an admin key."""

    def __init__(self, binary: str, root: Path) -> None:
        self.binary = binary
        self.root = root
        storage = str(root / "storage")
        created = subprocess.run(
            [binary, "keys", "create", "--storage", storage, "--name", "admin", "--admin"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if created.returncode != 0:
            pytest.fail(f"`stratahub keys create` failed: {created.stderr}")
        self.admin = created.stdout.strip()
        assert self.admin.startswith("shub_"), created.stdout
        self.log_path = root / "hub.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, "serve", "--storage", storage, "--listen", "127.0.0.1:0"],
                stdout=subprocess.PIPE,
                stderr=log,
                env={**os.environ, "RUST_LOG": os.environ.get("HUB_LOG", "warn")},
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        prefix = "stratahub listening on "
        if not line.startswith(prefix):
            self.stop()
            pytest.fail(f"unexpected first line from stratahub: {line!r}; log: {self.log()}")
        self.url = line[len(prefix) :]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def api(self, method: str, path: str, key: str, body: Optional[Dict[str, Any]] = None) -> Any:
        """One request to the hub's API as `key`; the JSON answer (the test fails on an error status)."""
        req = urllib.request.Request(
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            pytest.fail(f"{method} {path}: HTTP {e.code}: {e.read().decode(errors='replace')}")
        return json.loads(raw) if raw else None

    def project(self, label: str) -> str:
        """Creates a fresh project; its remote URL (`http://127.0.0.1:PORT/owner/name`)."""
        name = f"{label}-{uuid.uuid4().hex[:12]}"
        self.api("POST", "/v1/projects", self.admin, {"owner": "acme", "name": name})
        return f"{self.url}/acme/{name}"

    def member_key(self, project_url: str, role: str = "write") -> str:
        """A new (non-admin) API key, made a member of the project with `role`."""
        project = project_url[len(self.url) + 1 :]
        made = self.api("POST", "/v1/keys", self.admin, {"name": f"agent-{uuid.uuid4().hex[:8]}"})
        self.api("PUT", f"/v1/projects/{project}/members/{made['id']}", self.admin, {"role": role})
        key: str = made["key"]
        return key


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """One `stratahub` process for the session (each test makes its own project on it)."""
    binary = os.environ.get("STRATA_TEST_STRATAHUB")
    if not binary:
        pytest.fail(
            "STRATA_TEST_STRATAHUB is not set: it names the `stratahub` binary (scripts/python_sdk.sh "
            "builds it with `cargo build -p strata-hub --bin stratahub` and sets it)"
        )
    if not os.access(binary, os.X_OK):
        pytest.fail(f"STRATA_TEST_STRATAHUB={binary} is not an executable: build it with "
                    "`cargo build -p strata-hub --bin stratahub`")
    h = Hub(binary, tmp_path_factory.mktemp("hub"))
    yield h
    h.stop()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[stratadb.Strata]:
    handle = stratadb.Strata.open(tmp_path / "db")
    yield handle
    handle.close()


@pytest.fixture(params=["folder", "s3", "hub"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    """A fresh, empty remote of each kind: a folder, an S3 prefix (moto), a hub project (with a
    write member's API key as the `token` option)."""
    if request.param == "folder":
        return str(tmp_path / "remote"), {}
    if request.param == "s3":
        return s3_location("walk")
    h: Hub = request.getfixturevalue("hub")
    url = h.project("walk")
    return url, {"token": h.member_key(url)}
