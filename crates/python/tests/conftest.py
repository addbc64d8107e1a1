"""Shared fixtures: fresh database folders and remotes (a folder, or a prefix on the moto S3 emulator).

The S3 remote needs the emulator that scripts/emulators.sh starts (scripts/test.sh does). When it is
not configured or not reachable the test FAILS: it never skips.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Dict, Iterator, Tuple
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
