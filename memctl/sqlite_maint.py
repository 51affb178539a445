"""SQLite housekeeping: a private file to start with, ``db info`` and ``db check``."""

from __future__ import annotations

import os
import sqlite3
import stat
import warnings
from pathlib import Path
from typing import Any

from . import sqlite_search
from .errors import BadInput, StorageUnavailable


class InsecurePermissions(UserWarning):
    """The database file can be read by other users."""


def prepare_file(path: Path) -> None:
    """Create the directory 0700 and the file 0600 before SQLite touches them.

    SQLite creates ``-wal`` and ``-shm`` with the main file's mode, so they
    follow. An existing file open to others is left alone but reported.
    """
    if path.is_dir():
        raise BadInput(f"{path} is a directory: give the database file's path")
    try:
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            warnings.warn(
                f"{path} is readable by other users (mode {mode:o}); "
                f"run 'chmod 600 {path}' to keep agent memory private",
                InsecurePermissions,
                stacklevel=3,
            )
    except OSError as exc:
        raise StorageUnavailable(f"cannot create {path}: {exc.strerror}") from None
    else:
        os.close(fd)


def info(conn: sqlite3.Connection, path: Path, schema_version: int) -> dict[str, Any]:
    """Backend, location, schema version, counts and file sizes."""
    from sqlite_utils import Database

    db = Database(conn)
    sizes = {
        suffix or "db": os.path.getsize(str(path) + suffix)
        for suffix in ("", "-wal")
        if os.path.exists(str(path) + suffix)
    }
    return {
        "backend": "sqlite",
        "location": str(path),
        "schema_version": schema_version,
        "sqlite_version": sqlite3.sqlite_version,
        "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
        "sessions": db["sessions"].count,
        "events": db["events"].count,
        "checkpoints": db["checkpoints"].count,
        "facts": db["facts"].count,
        "bytes": sizes,
    }


def check(conn: sqlite3.Connection) -> list[str]:
    """The file's integrity, the summaries against their logs, the search index."""
    try:
        problems = [
            f"integrity: {row[0]}"
            for row in conn.execute("PRAGMA integrity_check").fetchall()
            if row[0] != "ok"
        ]
    except sqlite3.DatabaseError as exc:
        if type(exc) is not sqlite3.DatabaseError:
            raise  # locked or misused: not a finding about the file
        # Damage bad enough to stop the check itself (a broken schema page).
        return [f"integrity: {exc}; restore the file from a backup or copy"]
    if problems:
        # The checks below read the same damaged pages.
        return problems
    # The summaries must agree with the log they summarise.
    for row in conn.execute(
        "SELECT s.id, s.last_seq, s.events, count(e.pk) AS n, coalesce(max(e.seq), 0) AS top"
        " FROM sessions s LEFT JOIN events e ON e.session = s.id GROUP BY s.id"
    ):
        if row["n"] != row["events"] or row["top"] != row["last_seq"] or row["n"] != row["top"]:
            problems.append(
                f"session {row['id']}: summary says {row['events']} events up to seq "
                f"{row['last_seq']}, log has {row['n']} up to {row['top']}"
            )
    problems.extend(sqlite_search.check(conn))
    return problems
