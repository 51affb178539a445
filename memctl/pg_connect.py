"""Connections to PostgreSQL for the adapter: one, or a pool; retried once when lost.

Statements are prepared from their second use (``pg_conninfo``). Behind a
transaction-pooling proxy that cannot route them, a statement fails because
its prepared twin is missing on (or already exists on) the server connection
the proxy picked; ``run`` then turns preparing off for good and runs the work
once more, as the variant a write passes for retries after a lost connection
(its first attempt may have committed part of the work before failing).

Everything that touches libpq's error text lives here, because that text can
quote the URL (password included): each message is scrubbed to one line and
raised outside the ``except`` block that caught the driver's exception, so the
original is not even attached as the context of the error memctl shows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg.types.string import TextLoader

from . import pg_schema
from .errors import BadInput, StorageUnavailable
from .pg_conninfo import PgTarget, migration_failure, one_line
from .storage import Progress

T = TypeVar("T")
Conn = psycopg.Connection[DictRow]

CONNECT_TIMEOUT_SECONDS = 10


class PgConnector:
    """Hands out connections to one database and runs work on them."""

    def __init__(
        self,
        target: PgTarget,
        *,
        pool_size: int | None,
        prepare_threshold: int | None,
        progress: Progress | None = None,
    ):
        self._target = target
        self._location = target.safe
        self._prepare_threshold = prepare_threshold
        self._lock = threading.RLock()
        self.conn: Conn | None = None
        self.pool: Any = None
        # Migrate on a plain connection first: it also proves the URL and the
        # credentials work, and fails with one clear line if they do not.
        conn = self._connect()
        failure = None
        try:
            # Unprepared: the migration runs once, and a prepared statement
            # behind a transaction-pooling proxy would fail outside ``run``.
            conn.prepare_threshold = None
            pg_schema.migrate(conn, self._location, progress)
            conn.prepare_threshold = prepare_threshold
        except psycopg.Error as exc:
            failure = migration_failure(exc, target.secrets)
        finally:
            if failure is not None or pool_size:
                conn.close()
        if failure is not None:
            raise StorageUnavailable(f"cannot migrate {self._location}: {failure}")
        if pool_size:
            self.pool = self._open_pool(pool_size)
        else:
            self.conn = conn

    def close(self) -> None:
        with self._lock:
            if self.pool is not None:
                self.pool.close()
            if self.conn is not None:
                self.conn.close()

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
            # No check at checkout (a round trip on every call): ``_run``
            # checks the idle connections only after one was found dead.
            name="memctl",
            open=True,
        )

    @contextmanager
    def connection(self) -> Iterator[Conn]:
        if self.pool is not None:
            with self.pool.connection() as conn:
                # Pooled connections opened before preparing was turned off.
                conn.prepare_threshold = self._prepare_threshold
                yield conn
            return
        with self._lock:
            if self.conn is None or self.conn.closed:
                self.conn = self._connect()
            yield self.conn

    def _stop_preparing(self, conn: Conn | None) -> None:
        """Turn prepared statements off: for ``conn`` and every later connection."""
        with self._lock:
            self._prepare_threshold = None
            if conn is not None and not conn.closed:
                conn.prepare_threshold = None

    def run(self, op: Callable[[Conn], T], retried: Callable[[Conn], T] | None = None) -> T:
        """Run ``op`` on a connection, again if the connection drops or cannot prepare.

        Two retries, one of each kind at most: once on a new connection after
        a lost one, and once unprepared after a proxy refused a prepared
        statement on a connection that was preparing (each connection decides
        for itself: another thread may have turned preparing off meanwhile).
        Every retry runs ``retried`` (default ``op``): writes pass a variant
        that recognises its own first attempt, committed but unacknowledged.
        """
        attempt, lost_retry, unprepared_retry = op, True, True
        while True:
            failure, outcome = "", "lost"
            used: Conn | None = None
            preparing = False
            try:
                # The error leaves the ``with``: a pool then rolls back and
                # discards a broken connection instead of committing on it.
                with self.connection() as conn:
                    used = conn
                    preparing = conn.prepare_threshold is not None
                    return attempt(conn)
            except (*PREPARED_STATEMENT_ERRORS, psycopg.errors.FeatureNotSupported) as exc:
                failure, outcome = one_line(str(exc), self._target.secrets), "error"
                if preparing and unprepared_retry and refused_prepared(exc):
                    unprepared_retry, outcome = False, "unprepared"
                    self._stop_preparing(used)
            except psycopg.errors.LockNotAvailable as exc:
                failure, outcome = one_line(str(exc), self._target.secrets), "locked"
            except psycopg.DataError as exc:
                # Values PostgreSQL cannot hold (a NUL character) that the
                # input layer normally replaces before they get here.
                failure, outcome = one_line(str(exc), self._target.secrets), "bad"
            except psycopg.OperationalError as exc:
                failure = one_line(str(exc), self._target.secrets)
                if used is None:
                    outcome = "unreachable"  # the pool found no connection in time
                elif not _connection_lost(exc, used):
                    outcome = "error"
            if outcome == "lost" and lost_retry:
                lost_retry = False
                self._drop_dead_connections()
            elif outcome != "unprepared":
                break
            attempt = retried or op
        # Raised here, outside the except blocks, so no driver exception is chained.
        if outcome == "bad":
            raise BadInput(f"cannot store this value: {failure}")
        if outcome == "locked":
            raise StorageUnavailable(
                f"gave up waiting for a lock on {self._location} ({failure}): another "
                "connection holds the session, or an event id it has not committed yet "
                "(a stopped or hung process?); try again"
            )
        if outcome == "unreachable":
            raise StorageUnavailable(f"cannot connect to {self._location}: {failure}")
        if outcome == "error":
            raise StorageUnavailable(f"database error on {self._location}: {failure}")
        raise StorageUnavailable(f"lost the connection to {self._location}: {failure}")

    def _drop_dead_connections(self) -> None:
        if self.pool is not None:
            # After a server restart every idle connection is dead: drop
            # them all now, or the retry would just draw the next corpse.
            self.pool.check()
        else:
            with self._lock:
                if self.conn is not None:
                    self.conn.close()  # connection() opens a fresh one


# What a transaction-pooling proxy does to prepared statements: the server
# connection it picked lacks the one psycopg prepared (26000), or already has
# one of that name from another client (42P05).
PREPARED_STATEMENT_ERRORS = (
    psycopg.errors.InvalidSqlStatementName,
    psycopg.errors.DuplicatePreparedStatement,
)


def refused_prepared(exc: psycopg.Error) -> bool:
    """Whether ``exc`` is a prepared statement's fault, so running unprepared helps.

    Besides a proxy's errors: a statement prepared before another process
    migrated the schema (``SELECT s.*`` gained a column) fails with
    "cached plan must not change result type" (0A000).
    """
    if isinstance(exc, PREPARED_STATEMENT_ERRORS):
        return True
    return "cached plan must not change result type" in str(exc)


def _connection_lost(exc: psycopg.OperationalError, conn: Conn) -> bool:
    """Whether ``exc`` means the connection is gone (rather than a refused statement).

    Errors raised by libpq itself carry no SQLSTATE ("server closed the
    connection unexpectedly", "sending query failed"); the server says 57P0x
    when it terminates a backend and 08xxx for connection failures.
    """
    state = exc.sqlstate
    return conn.closed or conn.broken or state is None or state.startswith(("57P", "08"))


def _configure(conn: Conn) -> None:
    # json columns come back as text, to be decoded by the ledger exactly as
    # SQLite's are (psycopg would decode them itself, and a JSON scalar such
    # as a checkpoint state of 2 would then not survive ledger.loads).
    conn.adapters.register_loader("json", TextLoader)
