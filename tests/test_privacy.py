"""File modes, and databases memctl must refuse: newer schema, corrupt files."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memctl.cli import app
from tests.conftest import MEMCTL, run_memctl


def record_text(db: Path, session_id: str, text: str) -> None:
    """Store one message in-process (setup, where no separate process is needed)."""
    result = CliRunner().invoke(app, ["--db", str(db), "record", "-s", session_id, text])
    assert result.exit_code == 0, result.output


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def umask(value: int) -> Iterator[None]:
    """A permissive umask, so only memctl's own choice of modes keeps files private."""
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def assert_one_line_error(result: subprocess.CompletedProcess[bytes]) -> str:
    err: str = result.stderr.decode()
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("memctl: ")
    return err


def test_new_database_file_is_0600(tmp_path: Path) -> None:
    """A database memctl creates is readable by its owner only, whatever the umask."""
    db = tmp_path / "data" / "memctl.db"
    with umask(0):
        result = run_memctl("--db", str(db), "record", "-s", "priv-1", "secret")
    assert result.returncode == 0, result.stderr
    assert mode(db) == 0o600


def test_new_database_directory_is_0700(tmp_path: Path) -> None:
    """The directory memctl creates for its database is private."""
    db = tmp_path / "fresh" / "memctl.db"
    with umask(0):
        result = run_memctl("--db", str(db), "list")
    assert result.returncode == 0, result.stderr
    assert mode(db.parent) == 0o700


def test_wal_and_shm_follow_the_database_mode(tmp_path: Path) -> None:
    """-wal and -shm, which hold recent events, are as private as the database."""
    db = tmp_path / "data" / "memctl.db"
    with umask(0):
        proc = subprocess.Popen(
            [MEMCTL, "--db", str(db), "record", "-s", "priv-wal"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        # While the writer still holds its connection, the WAL files exist.
        proc.stdin.write(json.dumps({"role": "user", "content": "secret"}).encode() + b"\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == b"1"
        wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
        assert wal.exists() and shm.exists()
        assert mode(wal) == 0o600 and mode(shm) == 0o600
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == 0


def test_world_readable_database_gets_a_warning(tmp_path: Path) -> None:
    """An existing database readable by others is used, with a warning on stderr."""
    db = tmp_path / "shared.db"
    record_text(db, "priv-warn", "hi")
    db.chmod(0o644)
    result = run_memctl("--db", str(db), "list", "--json")
    assert result.returncode == 0
    assert "readable by other users" in result.stderr.decode()
    assert [s["id"] for s in json.loads(result.stdout)] == ["priv-warn"]


def test_private_database_gets_no_warning(tmp_path: Path) -> None:
    """A database that is already private is opened silently."""
    db = tmp_path / "quiet.db"
    assert run_memctl("--db", str(db), "record", "-s", "priv-quiet", "hi").returncode == 0
    result = run_memctl("--db", str(db), "list", "--json")
    assert result.returncode == 0 and result.stderr == b""


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database from a newer memctl is refused with exit 5 and left untouched."""
    db = tmp_path / "future.db"
    record_text(db, "priv-new", "kept")
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 999")
    conn.close()
    for args in (["list"], ["record", "-s", "priv-new", "more"], ["show", "priv-new"]):
        result = run_memctl("--db", str(db), *args)
        assert result.returncode == 5, (args, result.stderr)
        err = assert_one_line_error(result)
        assert "upgrade memctl" in err
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 999
        assert conn.execute("SELECT content FROM events").fetchall() == [("kept",)]
    conn.close()


def test_garbage_file_is_refused(tmp_path: Path) -> None:
    """A file of garbage bytes is exit 5 with a one-line message, not a traceback."""
    db = tmp_path / "garbage.db"
    db.write_bytes(bytes(range(256)) * 32)
    db.chmod(0o600)
    result = run_memctl("--db", str(db), "list")
    assert result.returncode == 5
    assert_one_line_error(result)
    assert db.read_bytes() == bytes(range(256)) * 32


@pytest.mark.parametrize("command", [["list"], ["show", "priv-c1"], ["db", "check"]])
def test_corrupt_pages_are_refused(tmp_path: Path, command: list[str]) -> None:
    """A database whose header is fine but whose pages are garbage is exit 5, one line."""
    db = tmp_path / "corrupt.db"
    for n in range(1, 6):
        record_text(db, f"priv-c{n}", "x")
    data = bytearray(db.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    data[page_size:] = b"\xab" * (len(data) - page_size)
    db.write_bytes(bytes(data))
    result = run_memctl("--db", str(db), *command)
    assert result.returncode == 5, result.stderr
    assert_one_line_error(result)


def test_uncreatable_directory_is_storage_unavailable(tmp_path: Path) -> None:
    """A database path under a regular file is exit 5 with a one-line message."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    result = run_memctl("--db", str(blocker / "sub" / "memctl.db"), "list")
    assert result.returncode == 5, result.stderr
    assert_one_line_error(result)


def test_password_never_printed_by_db_path() -> None:
    """`db path` shows a PostgreSQL URL without its password."""
    result = run_memctl(
        "--db", "postgresql://agent:hunter2secret@db.example:5432/mem", "db", "path"
    )
    assert result.returncode == 0
    out = result.stdout.decode() + result.stderr.decode()
    assert "hunter2secret" not in out and "db.example" in out
