"""SQLite schema, as numbered migrations recorded in the database.

Migrations are registered with sqlite-utils' ``Migrations("memctl")``, which
records each applied one in ``_sqlite_migrations``. memctl also mirrors the
count in ``PRAGMA user_version``: reading that costs nothing, so an up-to-date
database is opened without importing sqlite-utils at all (it takes longer to
import than the rest of ``memctl record`` takes to run).

Append only: never edit a migration that has shipped; add the next one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .search import FTS5_TOKENIZER
from .sqlite_search import MIGRATION as SEARCH_MIGRATION

if TYPE_CHECKING:
    from sqlite_utils import Database
    from sqlite_utils.migrations import Migrations

# Each entry is one migration: a name and its statements. The index + 1 is the
# schema version that applying it produces.
MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "0001_sessions_events_checkpoints",
        [
            """
            CREATE TABLE sessions (
                id TEXT PRIMARY KEY,
                title TEXT,
                state TEXT NOT NULL DEFAULT 'open'
                    CHECK (state IN ('open', 'ended', 'abandoned')),
                created_at TEXT NOT NULL,
                last_activity_at TEXT NOT NULL,
                ended_at TEXT,
                metadata TEXT NOT NULL DEFAULT '{}',
                last_seq INTEGER NOT NULL DEFAULT 0,
                events INTEGER NOT NULL DEFAULT 0,
                messages INTEGER NOT NULL DEFAULT 0,
                last_message_seq INTEGER,
                pending_tool_call TEXT,
                checkpoint_seq INTEGER,
                checkpoint_ts TEXT,
                checkpoint_note TEXT,
                owner_host TEXT,
                owner_pid INTEGER,
                owner_start INTEGER,
                owner_boot TEXT,
                lease_until REAL,
                epoch INTEGER NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX sessions_by_activity ON sessions (last_activity_at)",
            """
            CREATE TABLE events (
                pk INTEGER PRIMARY KEY,
                session TEXT NOT NULL,
                seq INTEGER NOT NULL,
                id TEXT NOT NULL UNIQUE,
                ts TEXT NOT NULL,
                type TEXT NOT NULL,
                role TEXT,
                content TEXT,
                tool_call TEXT,
                tool_call_id TEXT,
                payload TEXT,
                UNIQUE (session, seq)
            )
            """,
            """
            CREATE TABLE checkpoints (
                pk INTEGER PRIMARY KEY,
                session TEXT NOT NULL,
                seq INTEGER NOT NULL,
                id TEXT NOT NULL UNIQUE,
                ts TEXT NOT NULL,
                note TEXT,
                state TEXT
            )
            """,
            "CREATE INDEX checkpoints_by_session ON checkpoints (session, pk)",
        ],
    ),
    (
        "0002_facts",
        [
            """
            CREATE TABLE facts (
                pk INTEGER PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                key TEXT UNIQUE,
                text TEXT NOT NULL,
                tags TEXT NOT NULL DEFAULT '[]',
                session TEXT,
                seq INTEGER,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE fact_history (
                pk INTEGER PRIMARY KEY,
                fact TEXT NOT NULL,
                key TEXT,
                action TEXT NOT NULL CHECK (action IN ('ADD', 'UPDATE', 'DELETE')),
                text TEXT,
                tags TEXT NOT NULL DEFAULT '[]',
                ts TEXT NOT NULL
            )
            """,
            "CREATE INDEX fact_history_by_fact ON fact_history (fact, pk)",
        ],
    ),
]

MIGRATIONS.append(SEARCH_MIGRATION)
# Applying this version indexes every existing event (a backfill with progress).
SEARCH_VERSION = len(MIGRATIONS)
MIGRATIONS.append(
    (
        "0004_fact_search",
        [
            f'CREATE VIRTUAL TABLE facts_fts USING fts5(body, tokenize="{FTS5_TOKENIZER}")',
            "INSERT INTO facts_fts (rowid, body) SELECT pk, text FROM facts",
        ],
    )
)

LATEST_VERSION = len(MIGRATIONS)


def build_migrations() -> Migrations:
    """The sqlite-utils migration set for MIGRATIONS (imports sqlite-utils)."""
    from sqlite_utils.migrations import Migrations

    migrations = Migrations("memctl")
    for name, statements in MIGRATIONS:
        _register(migrations, name, statements)
    return migrations


def _register(migrations: Migrations, name: str, statements: list[str]) -> None:
    def migrate(db: Database) -> None:
        # One statement at a time: executescript() would COMMIT the caller's
        # BEGIN IMMEDIATE, and with it the lock that serialises migrators.
        for statement in statements:
            db.execute(statement)

    migrate.__name__ = name
    migrations(name=name)(migrate)
