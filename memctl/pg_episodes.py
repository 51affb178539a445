"""``PostgresEpisodeStorage``: the seed's async episode store on memctl's PostgreSQL schema.

Built on an application's ``psycopg_pool.AsyncConnectionPool``, as in the
seed::

    pool = AsyncConnectionPool("postgresql://...", open=False)
    await pool.open()
    storage = PostgresEpisodeStorage(pool)
    await storage.save(EpisodeEvent(datetime.now(timezone.utc), "tool_called", {...}, "s1"))

The pool's connections must see memctl's tables (same database, same
``search_path``). An empty or older schema is migrated on first use, through
memctl's ordinary (synchronous) migration on a connection of its own: one
code path for schema changes whatever the driver mode.

Episodes are ordinary memctl events, written with memctl's rules: the session
row is locked (``FOR UPDATE``) before the next seq is taken, so seqs stay
gapless beside any other writer; the summary and ownership are decided by
``ledger`` (the writer is this process, as for the seed's other classes);
the search vector is set as every writer sets it. ``search`` is memctl's
full-text search, best match first. The queries read json columns as text and
use their own dict-row cursors, so the pool may be configured any way.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import DictRow, dict_row

from . import pg_schema
from .core import check_count, check_session_id
from .episodes import EpisodeStorage
from .errors import SchemaTooNew, StorageUnavailable
from .ids import new_id, now_ts
from .inputs import check_size, max_event_bytes
from .ledger import (
    Ownership,
    Summary,
    dumps,
    event_from_row,
    loads,
    owner_from_row,
    ownership_for_write,
    stamp,
    summarise,
    writer_owner,
)
from .models import NewEvent
from .owners import Identity
from .pg_append import lock_timeout
from .pg_conninfo import migration_failure
from .pg_search import EVENT_COLUMNS, build, event_vector, is_connection_lost, query_error
from .seed import EpisodeEvent, episode_to_new_event
from .storage import SearchFilters, Writer

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

_LOCK = """
    SELECT state, epoch, last_seq, events, messages, last_message_seq, last_activity_at,
           pending_tool_call::text AS pending_tool_call, owner_host, owner_pid, owner_start,
           owner_boot, lease_until, extract(epoch from clock_timestamp())::float8 AS db_now
    FROM sessions WHERE id = %s FOR UPDATE
"""

_CREATE = """
    INSERT INTO sessions (id, created_at, last_activity_at) VALUES (%s, %s, %s)
    ON CONFLICT (id) DO NOTHING RETURNING id
"""

_INSERT = """
    INSERT INTO events (session, seq, id, ts, type, role, content, tool_call, tool_call_id,
                        payload, search)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s::json, %s, %s::json, %s::tsvector)
"""

_SUMMARISE = """
    UPDATE sessions SET last_seq = %s, events = %s, messages = %s, last_message_seq = %s,
        last_activity_at = %s, pending_tool_call = %s::json,
        state = 'open', ended_at = NULL,
        owner_host = %s, owner_pid = %s, owner_start = %s, owner_boot = %s,
        lease_until = %s, epoch = %s
    WHERE id = %s
"""


class PostgresEpisodeStorage(EpisodeStorage):
    """``EpisodeStorage`` over memctl's PostgreSQL schema, through an async pool."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool
        self._ready = False
        self._schema_lock: asyncio.Lock | None = None

    # -- plumbing ----------------------------------------------------------
    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        async with self.pool.connection() as conn:
            if not self._ready:
                await self._ensure_schema(conn)
            yield conn

    async def _ensure_schema(self, conn: AsyncConnection[Any]) -> None:
        # One check per storage object: afterwards the schema cannot go back.
        if self._schema_lock is None:
            self._schema_lock = asyncio.Lock()
        async with self._schema_lock:
            if self._ready:
                return
            async with conn.cursor() as cur:
                await cur.execute("SELECT to_regclass(%s) IS NOT NULL", (pg_schema.VERSION_TABLE,))
                row = await cur.fetchone()
                version = 0
                if row is not None and row[0]:
                    await cur.execute("SELECT coalesce(max(version), 0) FROM memctl_migrations")
                    found = await cur.fetchone()
                    version = int(found[0]) if found is not None else 0
                await cur.execute("SELECT current_setting('search_path')")
                path = await cur.fetchone()
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                await conn.rollback()  # nothing written; leave no transaction open
            if version > pg_schema.LATEST_VERSION:
                raise SchemaTooNew(
                    f"the database has schema version {version}, newer than this memctl knows "
                    f"({pg_schema.LATEST_VERSION}); upgrade memctl"
                )
            if version < pg_schema.LATEST_VERSION:
                dsn = psycopg.conninfo.make_conninfo(conn.info.dsn, password=conn.info.password)
                where = f"{conn.info.host}:{conn.info.port}/{conn.info.dbname}"
                secrets = (conn.info.password,) if conn.info.password else ()
                await asyncio.to_thread(_migrate, dsn, path[0] if path else None, where, secrets)
            self._ready = True

    # -- the seed's interface ----------------------------------------------
    async def save(self, event: EpisodeEvent) -> None:
        """Append the episode to its session (created if new) at the next seq."""
        check_session_id(event.session_id)
        new = episode_to_new_event(event.event_type, event.payload, ts=event.timestamp)
        check_size(new, max_event_bytes())
        # The seed's calls carry no claim: they write as this process, like the CLI.
        writer = Writer(Identity.of(os.getpid()))
        event_id, ts = stamp(new, new_id("e"), now_ts())
        vector = event_vector(new.content, new.tool_call, new.payload)
        try:
            await self._save(event, new, writer, (event_id, ts, vector))
        except psycopg.errors.LockNotAvailable as exc:
            locked = str(exc).strip().partition("\n")[0] or "lock timeout"
        else:
            return
        # Raised outside the except block: the driver's error is not chained.
        raise StorageUnavailable(
            f"gave up waiting for a lock on session {event.session_id} ({locked}): another "
            "connection holds it (a stopped or hung process?); try again"
        )

    async def _save(
        self, event: EpisodeEvent, new: NewEvent, writer: Writer, stored: tuple[str, str, str]
    ) -> None:
        """``save``'s transaction: ``stored`` is the event's id, time and search vector."""
        event_id, ts, vector = stored
        async with (
            self._connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            # As every memctl write: a stuck writer holding the row is waited
            # for LOCK_TIMEOUT_SECONDS, for this transaction only.
            await cur.execute("SELECT set_config('lock_timeout', %s, true)", (lock_timeout(),))
            row = await _lock(cur, event.session_id)
            created = row is None
            if row is None:
                # A concurrent first writer makes this wait for its commit
                # and do nothing; the lock then finds its row.
                now = now_ts()
                await cur.execute(_CREATE, (event.session_id, now, now))
                created = await cur.fetchone() is not None
                row = await _lock(cur, event.session_id)
                assert row is not None
            if created:
                ownership = Ownership(writer_owner(writer, row["db_now"]), 1)
            else:
                ownership = ownership_for_write(
                    row["state"], owner_from_row(row), row["epoch"], writer, row["db_now"]
                )
            seq = int(row["last_seq"]) + 1
            summary = summarise(
                Summary(
                    int(row["last_seq"]),
                    int(row["events"]),
                    int(row["messages"]),
                    row["last_message_seq"],
                    row["last_activity_at"],
                    loads(row["pending_tool_call"]),
                ),
                new,
                seq,
                ts,
            )
            await cur.execute(
                _INSERT,
                (event.session_id, seq, event_id, ts, new.type, new.role, new.content,
                 dumps(new.tool_call), new.tool_call_id, dumps(new.payload), vector),
            )  # fmt: skip
            owner = ownership.owner
            await cur.execute(
                _SUMMARISE,
                (
                    summary.last_seq,
                    summary.events,
                    summary.messages,
                    summary.last_message_seq,
                    summary.last_activity_at,
                    dumps(summary.pending_tool_call),
                    owner.host if owner else None,
                    owner.pid if owner else None,
                    owner.start_time if owner else None,
                    owner.boot_id if owner else None,
                    owner.lease_until if owner else None,
                    ownership.epoch,
                    event.session_id,
                ),
            )

    async def get_by_session(self, session_id: str) -> list[EpisodeEvent]:
        """The session's episodes in seq (time) order."""
        return await self._episodes(
            f"SELECT {EVENT_COLUMNS} FROM events e WHERE e.session = %s ORDER BY e.seq",  # noqa: S608 (a constant)
            (session_id,),
        )

    async def get_recent(self, limit: int) -> list[EpisodeEvent]:
        """The newest episodes across sessions, newest first."""
        return await self._episodes(
            f"SELECT {EVENT_COLUMNS} FROM events e"  # noqa: S608 (a constant)
            " ORDER BY e.ts DESC, e.session DESC, e.seq DESC LIMIT %s",
            (check_count(limit, "limit"),),
        )

    async def search(self, query: str, limit: int) -> list[EpisodeEvent]:
        """memctl's full-text search (words, "phrases", prefix*, OR, -word), best first."""
        built = build(query, SearchFilters(limit=check_count(limit, "limit")))
        failure: psycopg.Error | None = None
        async with self._connection() as conn:
            try:
                return await self._read(conn, built.sql, built.params)
            except psycopg.Error as exc:
                if is_connection_lost(exc, conn):
                    raise
                failure = exc
        assert failure is not None
        # Raised outside the except block: the driver's error is not chained.
        raise query_error(query, failure)

    # -- reading -----------------------------------------------------------
    async def _episodes(self, sql: str, params: tuple[Any, ...]) -> list[EpisodeEvent]:
        async with self._connection() as conn:
            return await self._read(conn, sql, params)

    async def _read(self, conn: AsyncConnection[Any], sql: str, params: Any) -> list[EpisodeEvent]:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            rows = await cur.fetchall()
        return [EpisodeEvent.from_event(event_from_row(row)) for row in rows]


async def _lock(cur: psycopg.AsyncCursor[DictRow], session_id: str) -> DictRow | None:
    await cur.execute(_LOCK, (session_id,))
    return await cur.fetchone()


def _migrate(dsn: str, search_path: str | None, where: str, secrets: tuple[str, ...]) -> None:
    """Migrate the pool's schema with memctl's own (synchronous) migration."""
    failure = None
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            if search_path is not None:
                # The pool may set its search_path when it configures a
                # connection rather than in the URL: use the one it sees.
                conn.execute("SELECT set_config('search_path', %s, false)", (search_path,))
            pg_schema.migrate(conn, where)
    except psycopg.Error as exc:
        failure = migration_failure(exc, secrets)
    if failure is not None:
        # Raised outside the except block: libpq's text can quote the URL.
        raise StorageUnavailable(f"cannot migrate {where}: {failure}")
