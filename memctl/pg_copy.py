"""Importing sessions and facts copied from another memctl database (``db copy``).

The PostgreSQL side of ``sqlite_copy``, with the same rules: everything keeps
its identity (session ids, event ids, seqs, timestamps, checkpoint ids), so a
copy is safe to repeat: what is already there (by id) is skipped and the rest
continues the same gapless seq. A target holding a *different* session under
the same id is refused, never merged. The session row is locked while a chunk
goes in, so a copy and a live writer of the same session queue instead of
interleaving seqs; an interrupted chunk rolls back whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import Conflict
from .ledger import Summary, copied_summary_values, dumps, loads, summarise
from .models import Checkpoint, Event, Fact, FactChange, NewEvent, SessionInfo
from .pg_append import bound_lock_wait
from .pg_search import event_vector, fact_vector

if TYPE_CHECKING:
    from .pg_connect import Conn, PgConnector

# One key of the advisory lock that serialises imports of one fact.
_FACT_LOCK = 0x66616374  # "fact"

_LOCK = """
    SELECT last_seq, events, messages, last_message_seq, last_activity_at,
           pending_tool_call::text AS pending_tool_call
    FROM sessions WHERE id = %s FOR UPDATE
"""

_CREATE = """
    INSERT INTO sessions (id, title, state, created_at, last_activity_at, ended_at, metadata,
                          owner_host, owner_pid, owner_start, owner_boot, lease_until, epoch)
    VALUES (%s, %s, 'open', %s, %s, NULL, %s::json, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (id) DO NOTHING
"""

# The new events of a chunk in one statement, search vector included; ``ON
# CONFLICT (id)`` lets a clash with another session's event id be reported
# as a Conflict instead of a driver error.
_INSERT_EVENTS = """
    INSERT INTO events (session, seq, id, ts, type, role, content, tool_call, tool_call_id,
                        payload, search)
    SELECT %s, u.seq, u.id, u.ts, u.type, u.role, u.content, u.tool_call::json,
           u.tool_call_id, u.payload::json, u.vector::tsvector
    FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                %s::text[], %s::text[], %s::text[], %s::text[])
         AS u(seq, id, ts, type, role, content, tool_call, tool_call_id, payload, vector)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
"""

_UPDATE_SUMMARY = """
    UPDATE sessions SET last_seq = %s, events = %s, messages = %s, last_message_seq = %s,
        last_activity_at = %s, pending_tool_call = %s::json, state = %s, ended_at = %s,
        checkpoint_seq = coalesce(%s, checkpoint_seq), checkpoint_ts = coalesce(%s, checkpoint_ts),
        checkpoint_note = CASE WHEN %s THEN %s ELSE checkpoint_note END
    WHERE id = %s
"""


def import_session(
    conn: Conn, info: SessionInfo, events: Sequence[Event], checkpoints: Sequence[Checkpoint]
) -> int:
    """Copy one chunk of a session; returns how many events were new."""
    with conn.transaction():
        bound_lock_wait(conn)  # a session locked by a stuck writer: exit 5, not a hang
        row = conn.execute(_LOCK, (info.id,)).fetchone()
        if row is None:
            owner = info.owner
            # The owner and epoch travel too, so the session's status is the
            # same in both databases and a writer holding the epoch can carry on.
            conn.execute(
                _CREATE,
                (
                    info.id,
                    info.title,
                    info.created_at,
                    info.created_at,
                    dumps(info.metadata),
                    owner.host if owner else None,
                    owner.pid if owner else None,
                    owner.start_time if owner else None,
                    owner.boot_id if owner else None,
                    owner.lease_until if owner else None,
                    info.epoch,
                ),
            )
            row = conn.execute(_LOCK, (info.id,)).fetchone()
            assert row is not None  # created above, or by a copy that got there first
        summary = Summary(
            int(row["last_seq"]),
            int(row["events"]),
            int(row["messages"]),
            row["last_message_seq"],
            row["last_activity_at"],
            loads(row["pending_tool_call"]),
        )
        _refuse_other_events(conn, info.id, [e for e in events if e.seq <= summary.last_seq])
        new: list[Event] = []
        for event in events:
            if event.seq <= summary.last_seq:
                continue
            if event.seq != summary.last_seq + 1:
                raise Conflict(f"session {info.id}: seq {event.seq} would leave a gap; not copying")
            summary = summarise(summary, _as_new(event), event.seq, event.ts)
            new.append(event)
        if new:
            _insert_events(conn, info.id, new)
        for checkpoint in checkpoints:
            conn.execute(
                "INSERT INTO checkpoints (session, seq, id, ts, note, state)"
                " VALUES (%s, %s, %s, %s, %s, %s::json) ON CONFLICT (id) DO NOTHING",
                (info.id, checkpoint.seq, checkpoint.id, checkpoint.ts, checkpoint.note,
                 dumps(checkpoint.state)),
            )  # fmt: skip
        conn.execute(_UPDATE_SUMMARY, copied_summary_values(info, summary, checkpoints))
    return len(new)


def _refuse_other_events(conn: Conn, session_id: str, seen: Sequence[Event]) -> None:
    """Events at seqs the target already has must be the same events (by id)."""
    if not seen:
        return
    rows = conn.execute(
        "SELECT u.seq FROM unnest(%s::bigint[], %s::text[]) AS u(seq, id)"
        " LEFT JOIN events e ON e.session = %s AND e.seq = u.seq AND e.id = u.id"
        " WHERE e.id IS NULL ORDER BY u.seq LIMIT 1",
        ([e.seq for e in seen], [e.id for e in seen], session_id),
    ).fetchall()
    if rows:
        raise Conflict(
            f"session {session_id} already exists in the target with other events "
            f"(seq {rows[0]['seq']} differs); not merging"
        )


def _insert_events(conn: Conn, session_id: str, events: Sequence[Event]) -> None:
    columns: list[list[Any]] = [[] for _ in range(10)]
    for event in events:
        values = (
            event.seq,
            event.id,
            event.ts,
            event.type,
            event.role,
            event.content,
            dumps(event.tool_call),
            event.tool_call_id,
            dumps(event.payload),
            event_vector(event.content, event.tool_call, event.payload),
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    stored = conn.execute(_INSERT_EVENTS, (session_id, *columns)).fetchall()
    if len(stored) == len(events):
        return
    taken = sorted({event.id for event in events} - {row["id"] for row in stored})
    row = conn.execute(
        "SELECT id, session, seq FROM events WHERE id = ANY(%s::text[]) ORDER BY id LIMIT 1",
        (taken,),
    ).fetchone()
    if row is None or row["session"] == session_id:
        # The same event at another seq: the two databases went separate ways.
        raise Conflict(
            f"session {session_id} already exists in the target with other events "
            f"(event {taken[0]!r} is at another seq); not merging"
        )
    raise Conflict(
        f"session {session_id}: event id {row['id']!r} is already used in session "
        f"{row['session']} of the target; not copying"
    )


def _as_new(event: Event) -> NewEvent:
    return NewEvent(
        type=event.type,
        role=event.role,
        content=event.content,
        tool_call=event.tool_call,
        tool_call_id=event.tool_call_id,
        payload=event.payload,
        id=event.id,
        ts=event.ts,
    )


def import_fact(conn: Conn, fact: Fact | None, history: Sequence[FactChange]) -> bool:
    """Copy a fact (None: one that was forgotten) with its history; False if already there."""
    fact_id = fact.id if fact else history[0].fact
    with conn.transaction():
        bound_lock_wait(conn)  # a copy stuck inside this transaction: exit 5, not a hang
        # Two copies of one fact at once would both see no history and both
        # write it; the lock makes the second one find the first one's rows.
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_FACT_LOCK, fact_id))
        if conn.execute("SELECT 1 FROM fact_history WHERE fact = %s", (fact_id,)).fetchone():
            return False
        if fact is not None:
            clash = conn.execute(
                "SELECT id FROM facts WHERE id = %s OR (key = %s AND id <> %s)",
                (fact.id, fact.key, fact.id),
            ).fetchone()
            if clash is not None:
                raise Conflict(
                    f"fact {fact.id}: the target already has a fact {clash['id']} with key "
                    f"{fact.key!r}; not copying"
                )
            conn.execute(
                "INSERT INTO facts (id, key, text, tags, session, seq, created_at, updated_at,"
                " search) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::tsvector)",
                (fact.id, fact.key, fact.text, list(fact.tags), fact.session, fact.seq,
                 fact.created_at, fact.updated_at, fact_vector(fact.text)),
            )  # fmt: skip
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO fact_history (fact, key, action, text, tags, ts)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                [(c.fact, c.key, c.action, c.text, list(c.tags), c.ts) for c in history],
            )
    return True


def fact_ids(conn: Conn) -> list[str]:
    """Ids of every fact with a history, forgotten ones included."""
    rows = conn.execute("SELECT DISTINCT fact FROM fact_history ORDER BY fact").fetchall()
    return [row["fact"] for row in rows]


class PgCopyMethods:
    """The copying-in part of ``Store`` for ``PostgresStore``."""

    _db: PgConnector

    def import_session(
        self, info: SessionInfo, events: Sequence[Event], checkpoints: Sequence[Checkpoint]
    ) -> int:
        # Idempotent by id, so a retry after a lost connection is the same call.
        return self._db.run(lambda conn: import_session(conn, info, events, checkpoints))

    def import_fact(self, fact: Fact | None, history: Sequence[FactChange]) -> bool:
        return self._db.run(lambda conn: import_fact(conn, fact, history))

    def fact_ids(self) -> list[str]:
        return self._db.run(fact_ids)
