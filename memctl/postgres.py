"""The PostgreSQL adapter (psycopg 3): one memctl shared by many agents and hosts.

``PostgresStore(url)`` keeps one connection, which suits one-shot CLI calls.
A long-lived or multi-threaded program asks for a ``psycopg_pool`` pool,
either with ``PostgresStore(url, pool=8)`` or with ``?pool=8`` in the URL (so
``memctl.open(url)`` and ``MEMCTL_DB`` can ask for one too). Prepared
statements are off unless ``prepare_threshold`` is given (argument or URL
parameter), so transaction-pooling proxies such as pgbouncer work.

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

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, TypeVar

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg.types.string import TextLoader

from . import pg_schema
from .errors import BadInput, Conflict, FencedOut, SessionNotFound, StorageUnavailable
from .ids import new_id, now_ts
from .ledger import (
    Ownership,
    dumps,
    event_from_row,
    loads,
    owner_from_row,
    ownership_for_claim,
    ownership_for_write,
    session_from_row,
    writer_owner,
)
from .models import Checkpoint, Event, NewEvent, SessionInfo, Status
from .pg_append import append_events
from .pg_conninfo import one_line, parse_target
from .storage import Writer

T = TypeVar("T")
Conn = psycopg.Connection[DictRow]

CONNECT_TIMEOUT_SECONDS = 10
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


class PostgresStore:
    """``Store`` over a PostgreSQL database (tables in the search_path's schema)."""

    backend = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        pool: int | bool | None = None,
        prepare_threshold: int | None = None,
    ) -> None:
        target = parse_target(url)
        self._target = target
        self._location = target.safe
        self._prepare_threshold = (
            prepare_threshold if prepare_threshold is not None else target.prepare_threshold
        )
        size = target.pool_size if pool is None else (4 if pool is True else (pool or None))
        self._lock = threading.RLock()
        self._conn: Conn | None = None
        self._pool: Any = None
        # Migrate on a plain connection first: it also proves the URL and the
        # credentials work, and fails with one clear line if they do not.
        conn = self._connect()
        failure = None
        try:
            pg_schema.migrate(conn, self._location)
        except psycopg.Error as exc:
            failure = one_line(str(exc), target.secrets)
        finally:
            if failure is not None or size:
                conn.close()
        if failure is not None:
            raise StorageUnavailable(f"cannot migrate {self._location}: {failure}")
        if size:
            self._pool = self._open_pool(size)
        else:
            self._conn = conn

    # -- plumbing ----------------------------------------------------------
    def __repr__(self) -> str:
        return f"PostgresStore({self._location!r})"

    def describe(self) -> str:
        return self._location

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
            if self._conn is not None:
                self._conn.close()

    def schema_version(self) -> int:
        return self._run(pg_schema.current_version)

    def _connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "row_factory": dict_row,
            "prepare_threshold": self._prepare_threshold,
        }
        return kwargs

    def _conninfo(self) -> str:
        """The URL for libpq, with memctl's defaults where the URL sets none."""
        failure = None
        try:
            given = psycopg.conninfo.conninfo_to_dict(self._target.conninfo)
        except psycopg.Error as exc:
            failure = one_line(str(exc), self._target.secrets)
        if failure is not None:
            # Raised outside the except block, so the driver's exception
            # (libpq quotes a malformed URL, password and all) is not even
            # attached as the context.
            raise StorageUnavailable(f"invalid database URL {self._location}: {failure}")
        extra: dict[str, Any] = {}
        if "connect_timeout" not in given:
            extra["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
        if "application_name" not in given:
            extra["application_name"] = "memctl"
        return psycopg.conninfo.make_conninfo(self._target.conninfo, **extra)

    def _connect(self) -> Conn:
        failure = ""
        try:
            conn = psycopg.connect(self._conninfo(), **self._connect_kwargs())
        except psycopg.Error as exc:
            failure = one_line(str(exc), self._target.secrets)
        else:
            _configure(conn)
            return conn
        raise StorageUnavailable(f"cannot connect to {self._location}: {failure}")

    def _open_pool(self, size: int) -> Any:
        from psycopg_pool import ConnectionPool

        return ConnectionPool(
            self._conninfo(),
            min_size=1,
            max_size=size,
            kwargs=self._connect_kwargs(),
            configure=_configure,
            # A connection that died while idle in the pool is replaced at
            # checkout instead of failing the caller's first statement.
            check=ConnectionPool.check_connection,
            name="memctl",
            open=True,
        )

    @contextmanager
    def _connection(self) -> Iterator[Conn]:
        if self._pool is not None:
            with self._pool.connection() as conn:
                yield conn
            return
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            yield self._conn

    def _run(self, op: Callable[[Conn], T], retried: Callable[[Conn], T] | None = None) -> T:
        """Run ``op`` on a connection; if the connection drops, once more on a new one.

        ``retried`` (default ``op``) is what runs the second time: writes pass a
        variant that recognises its own first attempt, committed but unacknowledged.
        """
        failure = ""
        for number, attempt in enumerate((op, retried or op)):
            try:
                with self._connection() as conn:
                    try:
                        return attempt(conn)
                    except psycopg.OperationalError as exc:
                        lost = conn.closed or conn.broken
                        failure = one_line(str(exc), self._target.secrets)
            except psycopg.DataError as exc:
                # Values PostgreSQL cannot hold (a NUL character) that the
                # input layer normally replaces before they get here.
                failure = one_line(str(exc), self._target.secrets)
                lost = False
                raise BadInput(f"cannot store this value: {failure}") from None
            except psycopg.Error as exc:
                if self._pool is None or not isinstance(exc, _pool_errors()):
                    raise
                failure, lost = one_line(str(exc), self._target.secrets), False
            if not lost or number:
                break
        raise StorageUnavailable(f"lost the connection to {self._location}: {failure}")

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
                    raise Conflict(
                        f"session {session_id} already exists; use 'memctl resume {session_id}'"
                    )
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
        # Ids and times are fixed before the first attempt: a retry after a
        # lost acknowledgement then finds its events instead of adding copies.
        chosen = [e.id is not None for e in events]
        stamped = [replace(e, id=e.id or new_id("e"), ts=e.ts or now_ts()) for e in events]
        return self._run(
            lambda conn: append_events(conn, session_id, stamped, writer, chosen, retry=False),
            lambda conn: append_events(conn, session_id, stamped, writer, chosen, retry=True),
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
            rows = conn.execute(
                "SELECT * FROM (SELECT * FROM events WHERE session = %s AND seq > %s"
                " AND (NOT %s OR type = 'message') ORDER BY seq DESC LIMIT %s) AS t"
                " ORDER BY seq",
                (session_id, after_seq, messages_only, tail),
            ).fetchall()
            return [event_from_row(row) for row in rows]

        return self._run(read)

    # -- checkpoints -------------------------------------------------------
    def checkpoint(
        self, session_id: str, state: Any, note: str | None, writer: Writer
    ) -> Checkpoint:
        checkpoint_id, ts, state_json = new_id("c"), now_ts(), dumps(state)

        def write(conn: Conn) -> Checkpoint:
            with conn.transaction():
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

    # -- maintenance -------------------------------------------------------
    def info(self) -> dict[str, Any]:
        def gather(conn: Conn) -> dict[str, Any]:
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM sessions) AS sessions,"
                " (SELECT count(*) FROM events) AS events,"
                " (SELECT count(*) FROM checkpoints) AS checkpoints,"
                " current_database() AS database, current_schema() AS schema,"
                " current_setting('server_version') AS server_version"
            ).fetchone()
            assert counts is not None
            sizes = {
                table: int(row["size"])
                for table in ("sessions", "events", "checkpoints")
                for row in conn.execute(
                    "SELECT pg_total_relation_size(to_regclass(%s)) AS size", (table,)
                ).fetchall()
                if row["size"] is not None
            }
            return {
                "backend": self.backend,
                "location": self._location,
                "schema_version": pg_schema.current_version(conn),
                "server_version": counts["server_version"],
                "database": counts["database"],
                "schema": counts["schema"],
                "sessions": int(counts["sessions"]),
                "events": int(counts["events"]),
                "checkpoints": int(counts["checkpoints"]),
                "bytes": sizes,
            }

        return self._run(gather)

    def check(self) -> list[str]:
        def inspect(conn: Conn) -> list[str]:
            problems = []
            version = pg_schema.current_version(conn)
            if version != pg_schema.LATEST_VERSION:
                problems.append(f"schema version {version}, expected {pg_schema.LATEST_VERSION}")
            # The summaries must agree with the log they summarise.
            for row in conn.execute(
                "SELECT s.id, s.last_seq, s.events, count(e.seq) AS n,"
                " coalesce(max(e.seq), 0) AS top"
                " FROM sessions s LEFT JOIN events e ON e.session = s.id GROUP BY s.id"
                " ORDER BY s.id"
            ):
                n, top = int(row["n"]), int(row["top"])
                if n != row["events"] or top != row["last_seq"] or n != top:
                    problems.append(
                        f"session {row['id']}: summary says {row['events']} events up to seq "
                        f"{row['last_seq']}, log has {n} up to {top}"
                    )
            return problems

        return self._run(inspect)


def _configure(conn: Conn) -> None:
    # json columns come back as text, to be decoded by the ledger exactly as
    # SQLite's are (psycopg would decode them itself, and a JSON scalar such
    # as a checkpoint state of 2 would then not survive ledger.loads).
    conn.adapters.register_loader("json", TextLoader)


def _pool_errors() -> tuple[type[Exception], ...]:
    from psycopg_pool import PoolTimeout

    return (PoolTimeout,)


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
