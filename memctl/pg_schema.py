"""PostgreSQL schema, as numbered migrations recorded in the database.

``MIGRATIONS[i]`` produces schema version ``i + 1``; each applied version is a
row of ``memctl_migrations``. Tables are created unqualified, in the first
schema of the connection's ``search_path``: one server can hold several
memctl databases side by side (``?options=-csearch_path%3Dteam_a``), which is
also how the tests isolate themselves.

Rules for a migration: append only (never edit one that has shipped), and
every statement must run inside a transaction (no ``CREATE INDEX
CONCURRENTLY``, no ``VACUUM``), because the whole upgrade is one transaction
holding an advisory lock: two processes starting at once on a fresh database
queue on the lock instead of both creating the tables.

Text that memctl sorts or compares by prefix (ids, timestamps) is ``COLLATE
"C"``: byte order, the same as SQLite, whatever the database's locale. JSON
columns are ``json``, not ``jsonb``: the server validates them but keeps the
text as written, so key order and numbers round-trip exactly as on SQLite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import SchemaTooNew

if TYPE_CHECKING:
    from psycopg import Connection

VERSION_TABLE = "memctl_migrations"
# First key of the two-key advisory lock; the second is the schema's hash, so
# migrations of different schemas on one server do not wait for each other.
LOCK_CLASS = 0x6D656D  # "mem"

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "0001_sessions_events_checkpoints",
        [
            """
            CREATE TABLE sessions (
                id text COLLATE "C" PRIMARY KEY,
                title text,
                state text NOT NULL DEFAULT 'open'
                    CHECK (state IN ('open', 'ended', 'abandoned')),
                created_at text COLLATE "C" NOT NULL,
                last_activity_at text COLLATE "C" NOT NULL,
                ended_at text COLLATE "C",
                metadata json NOT NULL DEFAULT '{}',
                last_seq bigint NOT NULL DEFAULT 0,
                events bigint NOT NULL DEFAULT 0,
                messages bigint NOT NULL DEFAULT 0,
                last_message_seq bigint,
                pending_tool_call json,
                checkpoint_seq bigint,
                checkpoint_ts text COLLATE "C",
                checkpoint_note text,
                owner_host text,
                owner_pid bigint,
                owner_start bigint,
                owner_boot text,
                lease_until double precision,
                epoch bigint NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX sessions_by_activity ON sessions (last_activity_at, id)",
            """
            CREATE TABLE events (
                session text COLLATE "C" NOT NULL,
                seq bigint NOT NULL,
                id text COLLATE "C" NOT NULL UNIQUE,
                ts text COLLATE "C" NOT NULL,
                type text NOT NULL,
                role text,
                content text,
                tool_call json,
                tool_call_id text,
                payload json,
                PRIMARY KEY (session, seq)
            )
            """,
            """
            CREATE TABLE checkpoints (
                pk bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                session text COLLATE "C" NOT NULL,
                seq bigint NOT NULL,
                id text COLLATE "C" NOT NULL UNIQUE,
                ts text COLLATE "C" NOT NULL,
                note text,
                state json
            )
            """,
            "CREATE INDEX checkpoints_by_session ON checkpoints (session, pk)",
        ],
    ),
    (
        # recent_events() reads the newest events of all sessions.
        "0002_events_by_time",
        ["CREATE INDEX events_by_ts ON events (ts)"],
    ),
]

LATEST_VERSION = len(MIGRATIONS)


def current_version(conn: Connection[Any]) -> int:
    """The schema version of the search_path's schema (0: memctl never ran there)."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSION_TABLE,)).fetchone()
    if row is None or not _first(row):
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM memctl_migrations").fetchone()
    return int(_first(row)) if row is not None else 0


def migrate(conn: Connection[Any], where: str) -> int:
    """Bring the schema up to LATEST_VERSION; return the version found before.

    ``conn`` must be in autocommit mode; ``where`` names the database in
    messages (already free of passwords).
    """
    found = current_version(conn)
    if found == LATEST_VERSION:
        return found  # the common case costs two reads and no lock
    _refuse_newer(found, where)
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(coalesce(current_schema(), '')))",
            (LOCK_CLASS,),
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS memctl_migrations ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
        # Read again under the lock: a process that got it first may have
        # migrated meanwhile (READ COMMITTED: this statement sees its commit).
        found = current_version(conn)
        _refuse_newer(found, where)
        for version, (name, statements) in enumerate(MIGRATIONS, start=1):
            if version <= found:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO memctl_migrations (version, name) VALUES (%s, %s)", (version, name)
            )
    return found


def _refuse_newer(version: int, where: str) -> None:
    if version > LATEST_VERSION:
        raise SchemaTooNew(
            f"{where} has schema version {version}, newer than this memctl knows "
            f"({LATEST_VERSION}); upgrade memctl"
        )


def _first(row: Any) -> Any:
    """Column 0 of a tuple row or a dict row."""
    if isinstance(row, dict):
        return next(iter(row.values()))
    return row[0]
