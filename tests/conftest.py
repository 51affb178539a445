"""Shared fixtures: an isolated database per test, on every backend.

``db_url`` is parametrised over the backends: a real SQLite file under
``tmp_path``, and a fresh schema on a real PostgreSQL server (dropped after
the test). Without a reachable server the PostgreSQL cases skip with the
reason shown; with ``CI`` set they fail instead, so CI cannot go green by
skipping them.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memctl.core import Memory
from memctl.storage import Store, open_store

PG_URL = os.environ.get("MEMCTL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgres"]
# The console script installed beside the interpreter running the tests.
MEMCTL = str(Path(sys.executable).with_name("memctl"))


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test touches a user's data or inherits a session from the environment."""
    monkeypatch.setenv("MEMCTL_DB", str(tmp_path / "default" / "memctl.db"))
    for name in (
        "MEMCTL_SESSION",
        "MEMCTL_EPOCH",
        "MEMCTL_OWNER_PID",
        "MEMCTL_DURABLE",
        "NO_COLOR",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def _pg_unavailable() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'memctl[postgres]')"
    try:
        with psycopg.connect(PG_URL, connect_timeout=3):
            return None
    except psycopg.Error as error:
        return f"no PostgreSQL at {PG_URL}: {str(error).splitlines()[0]}"


def require_postgres() -> None:
    reason = _pg_unavailable()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
    pytest.skip(reason)


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    require_postgres()
    import psycopg

    schema = f"memctl_test_{secrets.token_hex(6)}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL on each backend."""
    if request.param == "sqlite":
        return str(tmp_path / "data" / "memctl.db")
    url: str = request.getfixturevalue("pg_schema_url")
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = open_store(db_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def memory(store: Store) -> Memory:
    return Memory(store)


def run_memctl(
    *args: str,
    input: str | bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[Any]:
    """Run the installed ``memctl`` entry point as a real process."""
    full_env = {**os.environ, **(env or {})}
    data = input.encode() if isinstance(input, str) else input
    return subprocess.run(
        [MEMCTL, *args],
        input=data,
        capture_output=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``predicate`` until it holds; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)
