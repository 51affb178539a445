"""The SQLite adapter: the embedded default.

One connection per store, configured here rather than by a library: WAL so
readers never block the writer, ``busy_timeout`` so writers queue instead of
failing, ``synchronous=NORMAL`` (a committed event survives a process crash) or
``FULL`` (it survives power loss too). Every write runs in ``BEGIN IMMEDIATE``:
a deferred transaction that reads and then writes fails at once with
SQLITE_BUSY when another writer got there first, whatever the timeout.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import sqlite_copy, sqlite_facts, sqlite_maint, sqlite_search
from .errors import (
    BadInput,
    FencedOut,
    SchemaTooNew,
    SessionNotFound,
    StorageUnavailable,
    session_exists,
)
from .ids import new_id, new_ids, now_ts
from .ledger import (
    Ownership,
    Summary,
    batch_effect,
    dumps,
    eligible,
    owner_from_row,
    ownership_for_claim,
    ownership_for_write,
    session_from_row,
    stamp,
    summarise,
    writer_owner,
)
from .models import (
    Checkpoint,
    Event,
    Fact,
    FactChange,
    NewEvent,
    SessionInfo,
    Status,
)
from .search import SearchHit
from .sqlite_schema import LATEST_VERSION, MIGRATIONS, SEARCH_VERSION, build_migrations
from .sqlite_sql import (
    APPEND_FAST,
    EVENT_AT,
    EVENTS_AFTER,
    EVENTS_TAIL,
    LAST_SEQ,
    MESSAGES_AFTER,
    RECENT_EVENTS,
    SESSION_SELECT,
    SET_OWNER,
    WRITE_SUMMARY,
    checkpoint_from_row,
    insert_event,
    owner_values,
    read_events,
)
from .storage import Progress, SearchFilters, Writer

BUSY_TIMEOUT_SECONDS = 30.0
WAL_AUTOCHECKPOINT_PAGES = 10_000
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024


class SQLiteStore:
    """``Store`` over one SQLite file."""

    backend = "sqlite"

    def __init__(
        self, path: Path, *, durability: str = "normal", progress: Progress | None = None
    ) -> None:
        self.path = path
        self._progress = progress
        self._lock = threading.RLock()
        self._timeout = BUSY_TIMEOUT_SECONDS
        sqlite_maint.prepare_file(path)
        try:
            self._conn = sqlite3.connect(
                str(path),
                timeout=self._timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
            # Checkpoint the WAL every ~40 MB instead of SQLite's ~4 MB: each
            # checkpoint writes back the pages every append touches (the
            # session row, index leaves, the search index), so doing it ten
            # times less often cut the durable append's cost by about a
            # tenth. The WAL file is cut back to 64 MiB after a checkpoint.
            self._conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            self._conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StorageUnavailable(f"cannot open {path}: {exc}") from None

    # -- plumbing ----------------------------------------------------------
    def describe(self) -> str:
        return str(self.path)

    def close(self) -> None:
        self._conn.close()

    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self.schema_version()
        if version == LATEST_VERSION:
            return
        if version > LATEST_VERSION:
            raise SchemaTooNew(
                f"{self.path} has schema version {version}, newer than this memctl knows "
                f"({LATEST_VERSION}); upgrade memctl"
            )
        self._execute_retrying("PRAGMA journal_mode=WAL")
        with self._write():
            # Re-read under the lock: another process may have migrated meanwhile.
            if self.schema_version() >= LATEST_VERSION:
                return
            from sqlite_utils import Database

            migrations = build_migrations()
            db = Database(self._conn)
            known = {name for name, _ in MIGRATIONS}
            unknown = [m.name for m in migrations.applied(db) if m.name not in known]
            if unknown:
                raise SchemaTooNew(
                    f"{self.path} has migrations this memctl does not know: {unknown}"
                )
            migrations.apply(db)
            if version < SEARCH_VERSION:
                # Inside the migration's transaction: the index is complete or absent.
                sqlite_search.backfill(self._conn, self._progress)
            self._conn.execute(f"PRAGMA user_version={LATEST_VERSION}")

    def _execute_retrying(self, sql: str) -> None:
        """Run a constant statement, retrying SQLITE_BUSY that bypasses the busy handler.

        WAL recovery and some lock upgrades return BUSY without waiting; a
        short back-off until the timeout keeps "database is locked" away from
        users, as promised. The first try costs nothing extra: appends begin
        and commit through here.
        """
        # The first try may already have waited out busy_timeout inside SQLite.
        deadline = time.monotonic() + self._timeout
        try:
            self._conn.execute(sql)
            return
        except sqlite3.OperationalError as exc:
            self._check_busy(exc)
        delay = 0.001
        try:
            while True:
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StorageUnavailable(
                        f"{self.path} stayed locked by another process for "
                        f"{self._timeout:.0f}s; try again"
                    )
                # A retry may wait inside SQLite too, but only for what is
                # left: each one waiting a whole busy_timeout made a held lock
                # cost twice the promised time.
                self._conn.execute(f"PRAGMA busy_timeout={max(1, int(left * 1000))}")
                try:
                    self._conn.execute(sql)
                    return
                except sqlite3.OperationalError as exc:
                    self._check_busy(exc)
        finally:
            self._conn.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")

    @staticmethod
    def _check_busy(exc: sqlite3.OperationalError) -> None:
        """Re-raise ``exc`` unless it says the database is busy or locked."""
        message = str(exc)
        if "locked" not in message and "busy" not in message:
            raise exc

    def _commit(self) -> None:
        try:
            self._execute_retrying("COMMIT")
        except BaseException:
            self._rollback()  # never leave the connection inside a transaction
            raise

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._execute_retrying("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._rollback()
                raise
            else:
                self._commit()

    def _session_row(self, session_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._conn.execute(
            SESSION_SELECT + " WHERE s.id = ?", (session_id,)
        ).fetchone()
        return row

    def _set_owner(self, session_id: str, ownership: Ownership) -> None:
        self._conn.execute(
            SET_OWNER,
            (*owner_values(ownership), session_id),
        )

    # -- sessions ----------------------------------------------------------
    def create_session(
        self, session_id: str, title: str | None, metadata: dict[str, Any], writer: Writer
    ) -> SessionInfo:
        now = now_ts()
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone():
                raise session_exists(session_id)
            conn.execute(
                "INSERT INTO sessions (id, title, created_at, last_activity_at, metadata)"
                " VALUES (?, ?, ?, ?, ?)",
                (session_id, title, now, now, dumps(metadata)),
            )
            self._set_owner(session_id, Ownership(writer_owner(writer, time.time()), 1))
        return self._require(session_id)

    def claim(
        self,
        session_id: str,
        writer: Writer,
        *,
        force: bool = False,
        expected_epoch: int | None = None,
    ) -> SessionInfo:
        with self._write():
            row = self._session_row(session_id)
            if row is None:
                raise SessionNotFound(f"no session {session_id}")
            now = time.time()
            current = session_from_row(row, now)
            ownership = ownership_for_claim(
                current, writer, now, force=force, expected_epoch=expected_epoch
            )
            self._set_owner(session_id, ownership)
            self._conn.execute(
                "UPDATE sessions SET state = 'open', ended_at = NULL WHERE id = ?", (session_id,)
            )
        return self._require(session_id)

    def touch(self, session_id: str, writer: Writer) -> None:
        with self._write():
            row = self._session_row(session_id)
            if row is None:
                raise SessionNotFound(f"no session {session_id}")
            ownership = ownership_for_write(
                row["state"], owner_from_row(row), row["epoch"], writer, time.time()
            )
            self._set_owner(session_id, ownership)

    def end_session(self, session_id: str, state: str, writer: Writer) -> SessionInfo:
        with self._write():
            row = self._session_row(session_id)
            if row is None:
                raise SessionNotFound(f"no session {session_id}")
            if writer.epoch is not None and writer.epoch != row["epoch"]:
                raise FencedOut()
            self._conn.execute(
                "UPDATE sessions SET state = ?, ended_at = ?, lease_until = NULL WHERE id = ?",
                (state, now_ts(), session_id),
            )
        return self._require(session_id)

    def _require(self, session_id: str) -> SessionInfo:
        found = self.get_session(session_id)
        if found is None:
            raise SessionNotFound(f"no session {session_id}")
        return found

    def get_session(self, session_id: str) -> SessionInfo | None:
        row = self._session_row(session_id)
        return session_from_row(row, time.time()) if row is not None else None

    def find_sessions(self, prefix: str, limit: int = 10) -> list[str]:
        # A range on the primary key instead of LIKE: no wildcard to escape,
        # and it uses the index.
        upper = prefix + "\U0010ffff"
        rows = self._conn.execute(
            "SELECT id FROM sessions WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
            (prefix, upper, limit),
        ).fetchall()
        return [row[0] for row in rows]

    def latest_session_id(self) -> str | None:
        row = self._conn.execute(
            "SELECT id FROM sessions ORDER BY last_activity_at DESC LIMIT 1"
        ).fetchone()
        return row[0] if row else None

    def sessions(
        self,
        *,
        status: Status | None = None,
        since: str | None = None,
        limit: int | None = None,
    ) -> list[SessionInfo]:
        clauses, params = [], []
        if since is not None:
            clauses.append("s.last_activity_at >= ?")
            params.append(since)
        if status is not None:
            clauses.append("s.state = ?")
            params.append("open" if status in (Status.ACTIVE, Status.INCOMPLETE) else status.value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        cursor = self._conn.execute(
            SESSION_SELECT + where + " ORDER BY s.last_activity_at DESC", params
        )
        now = time.time()
        found: list[SessionInfo] = []
        # Active and incomplete share the stored state 'open', so the status
        # filter finishes in Python; the cursor stops reading at the limit.
        for row in cursor:
            info = session_from_row(row, now)
            if status is not None and info.status is not status:
                continue
            found.append(info)
            if limit is not None and len(found) >= limit:
                break
        cursor.close()
        return found

    # -- events ------------------------------------------------------------
    def prepare_append(
        self, session_id: str, events: Sequence[NewEvent], writer: Writer
    ) -> Callable[[], list[int]]:
        # Nothing to do ahead: SQLite's own work is the append.
        batch = list(events)
        return lambda: self.append(session_id, batch, writer)

    def append(self, session_id: str, events: Sequence[NewEvent], writer: Writer) -> list[int]:
        # _write() spelled out: this is the hot path, and a generator-based
        # context manager costs a few percent of an append.
        with self._lock:
            self._execute_retrying("BEGIN IMMEDIATE")
            try:
                seqs = None
                if events and eligible(writer) and all(event.id is None for event in events):
                    seqs = self._append_fast(self._conn, session_id, events, writer)
                if seqs is None:
                    seqs = self._append_general(self._conn, session_id, events, writer)
            except BaseException:
                self._rollback()
                raise
            self._commit()
        return seqs

    def _append_fast(
        self,
        conn: sqlite3.Connection,
        session_id: str,
        events: Sequence[NewEvent],
        writer: Writer,
    ) -> list[int] | None:
        """The common append: one UPDATE of the session, then the inserts.

        None (nothing written) when the session is not in the state
        ``APPEND_FAST`` handles; ids are memctl's own, so none can be taken.
        """
        stamp_now = now_ts()
        stamps = [
            (event_id, event.ts or stamp_now)
            for event, event_id in zip(events, new_ids("e", len(events)), strict=True)
        ]
        effect = batch_effect(events, stamps)
        if effect is None:
            return None
        me = writer.identity
        updated = conn.execute(
            APPEND_FAST,
            (
                session_id,
                writer.epoch,
                me.host,
                me.pid,
                me.start_time,
                me.boot_id,
                time.time() + writer.lease_seconds,
                effect.count,
                effect.messages,
                effect.last_message,
                effect.newest,
                effect.sets_pending,
                dumps(effect.pending),
                dumps(effect.answered) if effect.answered else "[]",
            ),
        ).rowcount
        if not updated:
            return None
        last = int(conn.execute(LAST_SEQ, (session_id,)).fetchone()[0])
        first = last - effect.count + 1
        pks = [
            insert_event(conn, session_id, seq, event_id, ts, event)
            for seq, event, (event_id, ts) in zip(
                range(first, last + 1), events, stamps, strict=True
            )
        ]
        if sqlite_search.due(pks):
            sqlite_search.catch_up(conn)
        return list(range(first, last + 1))

    def _append_general(
        self,
        conn: sqlite3.Connection,
        session_id: str,
        events: Sequence[NewEvent],
        writer: Writer,
    ) -> list[int]:
        """Any append, with ``ledger`` deciding from the session row as read."""
        seqs: list[int] = []
        pks: list[int] = []
        now = time.time()
        row = conn.execute(
            "SELECT state, epoch, last_seq, events, messages, last_message_seq,"
            " last_activity_at, pending_tool_call, owner_host, owner_pid, owner_start,"
            " owner_boot, lease_until FROM sessions WHERE id = ?",
            (session_id,),
        ).fetchone()
        stamp_now = now_ts()
        if row is None:
            conn.execute(
                "INSERT INTO sessions (id, created_at, last_activity_at) VALUES (?, ?, ?)",
                (session_id, stamp_now, stamp_now),
            )
            ownership = Ownership(writer_owner(writer, now), 1)
            summary = Summary.empty(stamp_now)
            state = "open"
        else:
            ownership = ownership_for_write(
                row["state"], owner_from_row(row), row["epoch"], writer, now
            )
            summary = Summary.from_row(row)
            state = row["state"]
        for event in events:
            if event.id is not None:
                existing = conn.execute(
                    "SELECT session, seq FROM events WHERE id = ?", (event.id,)
                ).fetchone()
                if existing is not None:
                    seqs.append(_idempotent_seq(existing, event.id, session_id))
                    continue
            event_id, ts = stamp(event, new_id("e"), stamp_now)
            seq = summary.last_seq + 1
            pks.append(insert_event(conn, session_id, seq, event_id, ts, event))
            summary = summarise(summary, event, seq, ts)
            seqs.append(seq)
        if sqlite_search.due(pks):
            sqlite_search.catch_up(conn)
        self._write_summary(session_id, summary, ownership, reopen=state != "open")
        return seqs

    def _write_summary(
        self, session_id: str, summary: Summary, ownership: Ownership, *, reopen: bool
    ) -> None:
        self._conn.execute(
            WRITE_SUMMARY,
            (
                summary.last_seq,
                summary.events,
                summary.messages,
                summary.last_message_seq,
                summary.last_activity_at,
                dumps(summary.pending_tool_call),
                reopen,
                reopen,
                *owner_values(ownership),
                session_id,
            ),
        )

    def events(
        self,
        session_id: str,
        *,
        after_seq: int = 0,
        tail: int | None = None,
        messages_only: bool = False,
    ) -> list[Event]:
        if tail is not None:
            sql = EVENTS_TAIL
            params: tuple[object, ...] = (session_id, after_seq, int(messages_only), tail)
        else:
            # A plain range scan: wrapping it like the tail query makes SQLite
            # sort the whole session again in a temporary b-tree.
            sql = MESSAGES_AFTER if messages_only else EVENTS_AFTER
            params = (session_id, after_seq)
        return self._read_events(sql, params)

    def _read_events(self, sql: str, params: tuple[object, ...]) -> list[Event]:
        return read_events(self._conn, sql, params)

    def recent_events(self, limit: int) -> list[Event]:
        return self._read_events(RECENT_EVENTS, (limit,))

    # -- checkpoints -------------------------------------------------------
    def checkpoint(
        self, session_id: str, state: Any, note: str | None, writer: Writer
    ) -> Checkpoint:
        with self._write() as conn:
            row = self._session_row(session_id)
            if row is None:
                raise SessionNotFound(f"no session {session_id}")
            now = time.time()
            ownership = ownership_for_write(
                row["state"], owner_from_row(row), row["epoch"], writer, now
            )
            checkpoint = Checkpoint(
                session=session_id,
                seq=int(row["last_seq"]),
                id=new_id("c"),
                ts=now_ts(),
                note=note,
                state=state,
            )
            conn.execute(
                "INSERT INTO checkpoints (session, seq, id, ts, note, state)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, checkpoint.seq, checkpoint.id, checkpoint.ts, note, dumps(state)),
            )
            conn.execute(
                "UPDATE sessions SET checkpoint_seq = ?, checkpoint_ts = ?, checkpoint_note = ?"
                " WHERE id = ?",
                (checkpoint.seq, checkpoint.ts, note, session_id),
            )
            self._set_owner(session_id, ownership)
        return checkpoint

    def latest_checkpoint(self, session_id: str) -> Checkpoint | None:
        row = self._conn.execute(
            "SELECT * FROM checkpoints WHERE session = ? ORDER BY pk DESC LIMIT 1", (session_id,)
        ).fetchone()
        return checkpoint_from_row(row) if row is not None else None

    def checkpoints(self, session_id: str) -> list[Checkpoint]:
        return sqlite_copy.checkpoints(self._conn, session_id)

    # -- copying in ----------------------------------------------------------
    def import_session(
        self, info: SessionInfo, events: Sequence[Event], checkpoints: Sequence[Checkpoint]
    ) -> int:
        with self._write() as conn:
            return sqlite_copy.import_session(conn, info, events, checkpoints)

    def import_fact(self, fact: Fact | None, history: Sequence[FactChange]) -> bool:
        with self._write() as conn:
            return sqlite_copy.import_fact(conn, fact, history)

    def fact_ids(self) -> list[str]:
        rows = self._conn.execute("SELECT DISTINCT fact FROM fact_history ORDER BY fact")
        return [row[0] for row in rows]

    # -- facts -------------------------------------------------------------
    def put_fact(
        self,
        text: str,
        *,
        key: str | None = None,
        tags: Sequence[str] = (),
        session: str | None = None,
        seq: int | None = None,
    ) -> tuple[Fact, str]:
        with self._write() as conn:
            return sqlite_facts.put(conn, text, key, list(tags), session, seq)

    def get_fact(self, ref: str) -> Fact | None:
        return sqlite_facts.find(self._conn, ref)

    def facts(
        self, *, tag: str | None = None, session: str | None = None, limit: int | None = None
    ) -> list[Fact]:
        return sqlite_facts.listing(self._conn, tag=tag, session=session, limit=limit)

    def fact_history(self, ref: str) -> list[FactChange]:
        return sqlite_facts.history(self._conn, ref)

    def search_facts(self, query: str, *, limit: int = 10) -> list[Fact]:
        return sqlite_facts.search(self._conn, query, limit)

    # -- search --------------------------------------------------------------
    def _index_pending(self) -> None:
        if sqlite_search.pending(self._conn):
            with self._write() as conn:
                sqlite_search.catch_up(conn)

    def search(self, query: str, filters: SearchFilters) -> list[SearchHit]:
        self._index_pending()
        return sqlite_search.search(self._conn, query, filters)

    def get_events(self, keys: Sequence[tuple[str, int]]) -> list[Event]:
        found: list[Event] = []
        for session_id, seq in keys:
            found.extend(self._read_events(EVENT_AT, (session_id, seq)))
        return found

    def rebuild_search(self) -> int:
        with self._write() as conn:
            return sqlite_search.rebuild(conn, self._progress)

    def forget_fact(self, ref: str) -> Fact | None:
        with self._write() as conn:
            return sqlite_facts.forget(conn, ref)

    # -- maintenance -------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return sqlite_maint.info(self._conn, self.path, self.schema_version())

    def check(self) -> list[str]:
        self._index_pending()
        return sqlite_maint.check(self._conn)


def _idempotent_seq(existing: sqlite3.Row, event_id: str, session_id: str) -> int:
    if existing["session"] != session_id:
        raise BadInput(f"event id {event_id!r} is already used in session {existing['session']}")
    return int(existing["seq"])
