"""The PostgreSQL adapter (psycopg 3): one memctl shared by many agents and hosts.

``PostgresStore(url)`` keeps one connection, which suits one-shot CLI calls.
A long-lived or multi-threaded program asks for a ``psycopg_pool`` pool,
either with ``PostgresStore(url, pool=8)`` or with ``?pool=8`` in the URL (so
``memctl.open(url)`` and ``MEMCTL_DB`` can ask for one too). Prepared
statements are on from a statement's second use (``prepare_threshold``,
argument or URL parameter; ``off`` turns them off), and turn themselves off
behind a transaction-pooling proxy such as pgbouncer (see ``pg_connect``).

Concurrency is the server's: an append locks its session row (``SELECT ...
FOR UPDATE``), so seqs stay gapless under any number of writers, and event ids
are unique across the table, which makes a record idempotent. Leases and
liveness go by the server's clock (``clock_timestamp()``), the one clock all
hosts share. Stored timestamps are memctl's own text format, as on SQLite.

A connection that drops mid-call is replaced and the call retried once. That
is safe for writes because every id (event, checkpoint) is chosen here before
the first attempt: a retry of a commit whose acknowledgement was lost finds
its rows already there and returns them instead of storing them twice.

psycopg is imported by this module only, and this module only when a
``postgresql://`` URL is opened: SQLite users never pay for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from psycopg.rows import DictRow, tuple_row

from . import pg_maint, pg_schema
from .errors import FencedOut, SessionNotFound, session_exists
from .ids import new_id, new_ids, now_ts
from .ledger import (
    Ownership,
    dumps,
    loads,
    owner_from_row,
    ownership_for_claim,
    ownership_for_write,
    session_from_row,
    stamp,
    writer_owner,
)
from .models import Checkpoint, Event, NewEvent, SessionInfo, Status, event_from_values
from .pg_append import append_batch, bound_lock_wait, prepare
from .pg_connect import Conn, PgConnector
from .pg_conninfo import parse_target
from .pg_copy import PgCopyMethods
from .pg_facts import PgFactMethods
from .pg_search import PgSearchMethods
from .storage import Progress, Writer

# How many sessions ``sessions()`` reads per round trip when the status filter
# has to finish in Python (active and incomplete share the stored state).
_PAGE = 200
# Every read of a session carries the server's clock, which is what leases
# and liveness are judged by.
SESSION_SELECT = """
    SELECT s.*, e.role AS lm_role, e.content AS lm_content, e.ts AS lm_ts,
           extract(epoch from clock_timestamp())::float8 AS db_now
    FROM sessions s
    LEFT JOIN events e ON e.session = s.id AND e.seq = s.last_message_seq
"""


# Event reads name their columns: ``SELECT *`` would also drag the search
# tsvector along, a third of the time of a 10,000-event resume.
_EVENTS_AFTER = (
    "SELECT e.session, e.seq, e.id, e.ts, e.type, e.role, e.content, e.tool_call, e.tool_call_id, e.payload FROM events e"
    " WHERE e.session = %s AND e.seq > %s AND (NOT %s OR e.type = 'message') ORDER BY e.seq"
)
_EVENTS_TAIL = (
    "SELECT * FROM (SELECT e.session, e.seq, e.id, e.ts, e.type, e.role, e.content, e.tool_call, e.tool_call_id, e.payload FROM events e"
    " WHERE e.session = %s AND e.seq > %s AND (NOT %s OR e.type = 'message')"
    " ORDER BY e.seq DESC LIMIT %s) AS t ORDER BY seq"
)
_RECENT_EVENTS = "SELECT e.session, e.seq, e.id, e.ts, e.type, e.role, e.content, e.tool_call, e.tool_call_id, e.payload FROM events e ORDER BY e.ts DESC, e.session DESC, e.seq DESC LIMIT %s"
_EVENTS_AT = (
    "SELECT e.session, e.seq, e.id, e.ts, e.type, e.role, e.content, e.tool_call, e.tool_call_id, e.payload FROM unnest(%s::text[], %s::bigint[]) WITH ORDINALITY"
    " AS k(session, seq, n) JOIN events e USING (session, seq) ORDER BY k.n"
)


def _read_events(conn: Conn, sql: str, params: tuple[Any, ...]) -> list[Event]:
    """Build events from plain tuples: resume reads thousands of rows, and dict rows
    plus lookups by name cost more than the query."""
    cursor = conn.cursor(row_factory=tuple_row)
    return [
        event_from_values(s, q, i, t, k, r, c, loads(tc), tid, loads(p))
        for s, q, i, t, k, r, c, tc, tid, p in cursor.execute(sql, params)
    ]


class PostgresStore(PgSearchMethods, PgFactMethods, PgCopyMethods):
    """``Store`` over a PostgreSQL database (tables in the search_path's schema).

    Search, facts and copying-in live with their SQL in ``pg_search``,
    ``pg_facts`` and ``pg_copy``, as methods over the same connector.
    """

    backend = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        pool: int | bool | None = None,
        prepare_threshold: int | Literal["off"] | None = None,
        progress: Progress | None = None,
    ) -> None:
        target = parse_target(url)
        self._location = target.safe
        self._db = PgConnector(
            target,
            pool_size=target.pool_size if pool is None else (4 if pool is True else (pool or None)),
            prepare_threshold=(
                target.prepare_threshold
                if prepare_threshold is None
                else None
                if prepare_threshold == "off"
                else prepare_threshold
            ),
            progress=progress,
        )
        self._run = self._db.run

    # -- plumbing ----------------------------------------------------------
    def __repr__(self) -> str:
        return f"PostgresStore({self._location!r})"

    def describe(self) -> str:
        return self._location

    def close(self) -> None:
        self._db.close()

    def schema_version(self) -> int:
        return self._run(pg_schema.current_version)

    # -- sessions ----------------------------------------------------------
    def create_session(
        self, session_id: str, title: str | None, metadata: dict[str, Any], writer: Writer
    ) -> SessionInfo:
        now = now_ts()

        def create(conn: Conn, *, retry: bool = False) -> SessionInfo:
            with conn.transaction():
                row = conn.execute(
                    "INSERT INTO sessions (id, title, created_at, last_activity_at, metadata)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING"
                    " RETURNING extract(epoch from clock_timestamp())::float8 AS db_now",
                    (session_id, title, now, now, dumps(metadata)),
                ).fetchone()
                if row is None:
                    existing = _session_row(conn, session_id, lock=False)
                    if retry and existing is not None and _is_own_create(existing, writer, now):
                        return session_from_row(existing, existing["db_now"])
                    raise session_exists(session_id)
                _set_owner(conn, session_id, Ownership(writer_owner(writer, row["db_now"]), 1))
            return _require(conn, session_id)

        return self._run(create, lambda conn: create(conn, retry=True))

    def claim(
        self,
        session_id: str,
        writer: Writer,
        *,
        force: bool = False,
        expected_epoch: int | None = None,
    ) -> SessionInfo:
        def take(conn: Conn, *, retry: bool = False) -> SessionInfo:
            with conn.transaction():
                bound_lock_wait(conn)
                row = _session_row(conn, session_id, lock=True)
                if row is None:
                    raise SessionNotFound(f"no session {session_id}")
                current = session_from_row(row, row["db_now"])
                if (
                    retry
                    and expected_epoch is not None
                    and current.epoch == expected_epoch + 1
                    and writer.identity.matches(current.owner)
                ):
                    return current  # our first attempt won; only its reply was lost
                ownership = ownership_for_claim(
                    current, writer, row["db_now"], force=force, expected_epoch=expected_epoch
                )
                _set_owner(conn, session_id, ownership)
                conn.execute(
                    "UPDATE sessions SET state = 'open', ended_at = NULL WHERE id = %s",
                    (session_id,),
                )
            return _require(conn, session_id)

        return self._run(take, lambda conn: take(conn, retry=True))

    def touch(self, session_id: str, writer: Writer) -> None:
        def beat(conn: Conn) -> None:
            with conn.transaction():
                bound_lock_wait(conn)
                row = _session_row(conn, session_id, lock=True)
                if row is None:
                    raise SessionNotFound(f"no session {session_id}")
                ownership = ownership_for_write(
                    row["state"], owner_from_row(row), row["epoch"], writer, row["db_now"]
                )
                _set_owner(conn, session_id, ownership)

        self._run(beat)

    def end_session(self, session_id: str, state: str, writer: Writer) -> SessionInfo:
        ended_at = now_ts()

        def end(conn: Conn) -> SessionInfo:
            with conn.transaction():
                bound_lock_wait(conn)
                row = conn.execute(
                    "SELECT epoch FROM sessions WHERE id = %s FOR UPDATE", (session_id,)
                ).fetchone()
                if row is None:
                    raise SessionNotFound(f"no session {session_id}")
                if writer.epoch is not None and writer.epoch != row["epoch"]:
                    raise FencedOut()
                conn.execute(
                    "UPDATE sessions SET state = %s, ended_at = %s, lease_until = NULL"
                    " WHERE id = %s",
                    (state, ended_at, session_id),
                )
            return _require(conn, session_id)

        return self._run(end)

    def get_session(self, session_id: str) -> SessionInfo | None:
        def get(conn: Conn) -> SessionInfo | None:
            row = _session_row(conn, session_id, lock=False)
            return session_from_row(row, row["db_now"]) if row is not None else None

        return self._run(get)

    def find_sessions(self, prefix: str, limit: int = 10) -> list[str]:
        # A range on the primary key (COLLATE "C", so byte order as in SQLite)
        # instead of LIKE: no wildcard to escape, and it uses the index.
        def find(conn: Conn) -> list[str]:
            rows = conn.execute(
                "SELECT id FROM sessions WHERE id >= %s AND id < %s ORDER BY id LIMIT %s",
                (prefix, prefix + "\U0010ffff", limit),
            ).fetchall()
            return [row["id"] for row in rows]

        return self._run(find)

    def latest_session_id(self) -> str | None:
        def latest(conn: Conn) -> str | None:
            row = conn.execute(
                "SELECT id FROM sessions ORDER BY last_activity_at DESC, id DESC LIMIT 1"
            ).fetchone()
            return row["id"] if row else None

        return self._run(latest)

    def sessions(
        self,
        *,
        status: Status | None = None,
        since: str | None = None,
        limit: int | None = None,
    ) -> list[SessionInfo]:
        stored = None
        if status is not None:
            stored = "open" if status in (Status.ACTIVE, Status.INCOMPLETE) else status.value
        # Active and incomplete share the stored state 'open', so their filter
        # finishes in Python; pages (keyset, newest first) stop at the limit
        # without reading every session.
        exact = status is None or stored != "open"
        page = limit if exact and limit is not None else _PAGE

        def fetch(conn: Conn) -> list[SessionInfo]:
            found: list[SessionInfo] = []
            after: tuple[str, str] | None = None
            while True:
                rows = conn.execute(
                    SESSION_SELECT + " WHERE (%s::text IS NULL OR s.last_activity_at >= %s)"
                    " AND (%s::text IS NULL OR s.state = %s)"
                    " AND (%s::text IS NULL OR (s.last_activity_at, s.id) < (%s, %s))"
                    " ORDER BY s.last_activity_at DESC, s.id DESC LIMIT %s",
                    (
                        since,
                        since,
                        stored,
                        stored,
                        after[0] if after else None,
                        after[0] if after else None,
                        after[1] if after else None,
                        page,
                    ),
                ).fetchall()
                for row in rows:
                    info = session_from_row(row, row["db_now"])
                    if status is None or info.status is status:
                        found.append(info)
                        if limit is not None and len(found) >= limit:
                            return found
                if len(rows) < page or exact:
                    return found
                after = (rows[-1]["last_activity_at"], rows[-1]["id"])

        return self._run(fetch)

    # -- events ------------------------------------------------------------
    def append(self, session_id: str, events: Sequence[NewEvent], writer: Writer) -> list[int]:
        return self.prepare_append(session_id, events, writer)()

    def prepare_append(
        self, session_id: str, events: Sequence[NewEvent], writer: Writer
    ) -> Callable[[], list[int]]:
        # Ids and times are fixed before the first attempt: a retry after a
        # lost acknowledgement then finds its events instead of adding copies.
        now = now_ts()  # one time for the batch, as on SQLite
        fresh = new_ids("e", len(events))
        batch = prepare(
            session_id, events, [stamp(e, i, now) for e, i in zip(events, fresh, strict=True)]
        )
        return lambda: self._run(
            lambda conn: append_batch(conn, session_id, batch, writer, retry=False),
            lambda conn: append_batch(conn, session_id, batch, writer, retry=True),
        )

    def events(
        self,
        session_id: str,
        *,
        after_seq: int = 0,
        tail: int | None = None,
        messages_only: bool = False,
    ) -> list[Event]:
        def read(conn: Conn) -> list[Event]:
            if tail is None:
                # A plain index range scan; the tail form sorts the session twice.
                return _read_events(conn, _EVENTS_AFTER, (session_id, after_seq, messages_only))
            return _read_events(conn, _EVENTS_TAIL, (session_id, after_seq, messages_only, tail))

        return self._run(read)

    def recent_events(self, limit: int) -> list[Event]:
        def read(conn: Conn) -> list[Event]:
            return _read_events(conn, _RECENT_EVENTS, (limit,))

        return self._run(read)

    def get_events(self, keys: Sequence[tuple[str, int]]) -> list[Event]:
        def read(conn: Conn) -> list[Event]:
            keyed = ([session for session, _ in keys], [seq for _, seq in keys])
            return _read_events(conn, _EVENTS_AT, keyed)

        return self._run(read) if keys else []

    # -- checkpoints -------------------------------------------------------
    def checkpoint(
        self, session_id: str, state: Any, note: str | None, writer: Writer
    ) -> Checkpoint:
        checkpoint_id, ts, state_json = new_id("c"), now_ts(), dumps(state)

        def write(conn: Conn) -> Checkpoint:
            with conn.transaction():
                bound_lock_wait(conn)
                row = _session_row(conn, session_id, lock=True)
                if row is None:
                    raise SessionNotFound(f"no session {session_id}")
                done = _checkpoint_by_id(conn, checkpoint_id)
                if done is not None:
                    return done  # a retry: the first attempt committed
                ownership = ownership_for_write(
                    row["state"], owner_from_row(row), row["epoch"], writer, row["db_now"]
                )
                seq = int(row["last_seq"])
                conn.execute(
                    "INSERT INTO checkpoints (session, seq, id, ts, note, state)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    (session_id, seq, checkpoint_id, ts, note, state_json),
                )
                conn.execute(
                    "UPDATE sessions SET checkpoint_seq = %s, checkpoint_ts = %s,"
                    " checkpoint_note = %s WHERE id = %s",
                    (seq, ts, note, session_id),
                )
                _set_owner(conn, session_id, ownership)
            return Checkpoint(session_id, seq, checkpoint_id, ts, note, loads(state_json))

        return self._run(write)

    def latest_checkpoint(self, session_id: str) -> Checkpoint | None:
        def latest(conn: Conn) -> Checkpoint | None:
            row = conn.execute(
                "SELECT * FROM checkpoints WHERE session = %s ORDER BY pk DESC LIMIT 1",
                (session_id,),
            ).fetchone()
            return _checkpoint_from_row(row) if row is not None else None

        return self._run(latest)

    def checkpoints(self, session_id: str) -> list[Checkpoint]:
        def read(conn: Conn) -> list[Checkpoint]:
            rows = conn.execute(
                "SELECT * FROM checkpoints WHERE session = %s ORDER BY pk", (session_id,)
            ).fetchall()
            return [_checkpoint_from_row(row) for row in rows]

        return self._run(read)

    # -- maintenance -------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return self._run(lambda conn: pg_maint.info(conn, self.backend, self._location))

    def check(self) -> list[str]:
        return self._run(pg_maint.check)


def _session_row(conn: Conn, session_id: str, *, lock: bool) -> DictRow | None:
    # FOR UPDATE OF s: the joined last message is on the nullable side of the
    # outer join and cannot (and need not) be locked.
    query = SESSION_SELECT + " WHERE s.id = %s" + (" FOR UPDATE OF s" if lock else "")
    return conn.execute(query, (session_id,)).fetchone()


def _require(conn: Conn, session_id: str) -> SessionInfo:
    row = _session_row(conn, session_id, lock=False)
    if row is None:
        raise SessionNotFound(f"no session {session_id}")
    return session_from_row(row, row["db_now"])


def _is_own_create(row: DictRow, writer: Writer, created_at: str) -> bool:
    """Whether an existing session is the one our unacknowledged first attempt made."""
    return (
        row["created_at"] == created_at
        and row["epoch"] == 1
        and writer.identity.matches(owner_from_row(row))
    )


def _set_owner(conn: Conn, session_id: str, ownership: Ownership) -> None:
    owner = ownership.owner
    conn.execute(
        "UPDATE sessions SET owner_host = %s, owner_pid = %s, owner_start = %s,"
        " owner_boot = %s, lease_until = %s, epoch = %s WHERE id = %s",
        (
            owner.host if owner else None,
            owner.pid if owner else None,
            owner.start_time if owner else None,
            owner.boot_id if owner else None,
            owner.lease_until if owner else None,
            ownership.epoch,
            session_id,
        ),
    )


def _checkpoint_by_id(conn: Conn, checkpoint_id: str) -> Checkpoint | None:
    row = conn.execute("SELECT * FROM checkpoints WHERE id = %s", (checkpoint_id,)).fetchone()
    return _checkpoint_from_row(row) if row is not None else None


def _checkpoint_from_row(row: DictRow) -> Checkpoint:
    return Checkpoint(
        session=row["session"],
        seq=int(row["seq"]),
        id=row["id"],
        ts=row["ts"],
        note=row["note"],
        state=loads(row["state"]),
    )
