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
queue on the lock instead of both creating the tables. A step may also be a
Python function, run at that point of the same transaction: that is how the
search migration indexes the events a database already holds (its work is
complete or absent, never half done).

Text that memctl sorts or compares by prefix (ids, timestamps) is ``COLLATE
"C"``: byte order, the same as SQLite, whatever the database's locale. JSON
columns are ``json``, not ``jsonb``: the server validates them but keeps the
text as written, so key order and numbers round-trip exactly as on SQLite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Union

from .errors import SchemaTooNew

if TYPE_CHECKING:
    from psycopg import Connection

# progress(done, total) for migrations that backfill.
Progress = Callable[[int, int], None]
# A step of a migration: an SQL statement, or Python work (a backfill) that
# runs at that point of the same transaction.
Step = Union[str, Callable[["Connection[Any]", Union[Progress, None]], object]]


def _index_events(conn: Connection[Any], progress: Progress | None) -> int:
    # Imported here: pg_search is only needed by a database that predates search.
    from .pg_search import backfill

    return backfill(conn, progress)


def _exact_vectors(conn: Connection[Any], progress: Progress | None) -> int:
    from .pg_search import rebuild, rebuild_facts

    rebuild_facts(conn)
    return rebuild(conn, progress)


VERSION_TABLE = "memctl_migrations"
# First key of the two-key advisory lock; the second is the schema's hash, so
# migrations of different schemas on one server do not wait for each other.
LOCK_CLASS = 0x6D656D  # "mem"

MIGRATIONS: list[tuple[str, list[Step]]] = [
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
    (
        # Full-text search: memctl's tokens as a tsvector (see pg_search). The
        # events already there are indexed in Python before the GIN index is
        # built, so the index is built once instead of updated row by row.
        "0003_search",
        [
            "ALTER TABLE events ADD COLUMN search tsvector",
            _index_events,
            "CREATE INDEX events_search ON events USING gin (search)",
        ],
    ),
    (
        # Semantic memory, as SQLite's 0002_facts plus a search vector.
        "0004_facts",
        [
            """
            CREATE TABLE facts (
                pk bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                id text COLLATE "C" NOT NULL UNIQUE,
                key text COLLATE "C" UNIQUE,
                text text NOT NULL,
                tags text[] NOT NULL DEFAULT '{}',
                session text COLLATE "C",
                seq bigint,
                created_at text COLLATE "C" NOT NULL,
                updated_at text COLLATE "C" NOT NULL,
                search tsvector NOT NULL
            )
            """,
            "CREATE INDEX facts_by_update ON facts (updated_at, pk)",
            "CREATE INDEX facts_search ON facts USING gin (search)",
            """
            CREATE TABLE fact_history (
                pk bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                fact text COLLATE "C" NOT NULL,
                key text COLLATE "C",
                action text NOT NULL CHECK (action IN ('ADD', 'UPDATE', 'DELETE')),
                text text,
                tags text[] NOT NULL DEFAULT '{}',
                ts text COLLATE "C" NOT NULL
            )
            """,
            "CREATE INDEX fact_history_by_fact ON fact_history (fact, pk)",
            "CREATE INDEX fact_history_by_key ON fact_history (key, pk)",
        ],
    ),
    (
        # Search vectors hold memctl's tokens exactly (pg_search.vector_text)
        # instead of what to_tsvector's parser made of them: it splits or
        # drops some 56,000 code points, "½" and "x²" among them, which SQLite
        # indexes. Every vector is computed again; only those that differ are
        # written, so for most databases this reads and changes nothing.
        "0005_exact_search_vectors",
        [_exact_vectors],
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


def migrate(conn: Connection[Any], where: str, progress: Progress | None = None) -> int:
    """Bring the schema up to LATEST_VERSION; return the version found before.

    ``conn`` must be in autocommit mode; ``where`` names the database in
    messages (already free of passwords). ``progress`` hears from steps that
    backfill (indexing the events of a database that predates search).
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
            for step in statements:
                if isinstance(step, str):
                    conn.execute(step)
                else:
                    step(conn, progress)
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
