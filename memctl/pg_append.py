"""Appending to a session's log on PostgreSQL: the hot path, in one transaction.

The session row is locked first (``SELECT ... FOR UPDATE``, or created with
``INSERT ... ON CONFLICT DO NOTHING`` when new), so concurrent writers to one
session queue there and each sees the seq the previous one left: seqs are
allocated from the summary row, never with ``max(seq) + 1``. The new events of
a batch then go in with one ``INSERT ... SELECT FROM unnest(...)``, whatever
the batch size, which keeps streaming imports at one round trip per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from .errors import BadInput, StorageUnavailable
from .ledger import (
    Ownership,
    Summary,
    dumps,
    loads,
    owner_from_row,
    ownership_for_write,
    summarise,
    writer_owner,
)
from .models import NewEvent
from .storage import Writer

_LOCK_SESSION = """
    SELECT state, epoch, last_seq, events, messages, last_message_seq, last_activity_at,
           pending_tool_call, owner_host, owner_pid, owner_start, owner_boot, lease_until,
           extract(epoch from clock_timestamp())::float8 AS db_now
    FROM sessions WHERE id = %s FOR UPDATE
"""

_CREATE_SESSION = """
    INSERT INTO sessions (id, created_at, last_activity_at) VALUES (%s, %s, %s)
    ON CONFLICT (id) DO NOTHING
    RETURNING extract(epoch from clock_timestamp())::float8 AS db_now
"""

# Every column arrives as one array parameter; json columns travel as text
# and are cast here, so the stored text is exactly what ledger.dumps wrote.
_INSERT_EVENTS = """
    INSERT INTO events (session, seq, id, ts, type, role, content, tool_call,
                        tool_call_id, payload)
    SELECT %s, u.seq, u.id, u.ts, u.type, u.role, u.content, u.tool_call::json,
           u.tool_call_id, u.payload::json
    FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                %s::text[], %s::text[], %s::text[])
         AS u(seq, id, ts, type, role, content, tool_call, tool_call_id, payload)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
"""

_WRITE_SUMMARY = """
    UPDATE sessions SET last_seq = %s, events = %s, messages = %s, last_message_seq = %s,
        last_activity_at = %s, pending_tool_call = %s::json,
        state = CASE WHEN %s THEN 'open' ELSE state END,
        ended_at = CASE WHEN %s THEN NULL ELSE ended_at END,
        owner_host = %s, owner_pid = %s, owner_start = %s, owner_boot = %s, lease_until = %s,
        epoch = %s
    WHERE id = %s
"""

_COLUMNS = ("seq", "id", "ts", "type", "role", "content", "tool_call", "tool_call_id", "payload")


def append_events(
    conn: Connection[DictRow],
    session_id: str,
    events: Sequence[NewEvent],
    writer: Writer,
    chosen: Sequence[bool],
    *,
    retry: bool,
) -> list[int]:
    """Store ``events`` (ids and times already stamped) and return their seqs.

    ``chosen[i]`` says the caller picked event i's id, so it may exist
    already; memctl's own ids are fresh unless this is a ``retry``, when the
    first attempt may have committed them.
    """
    with conn.transaction():
        summary, ownership, state = _lock_session(conn, session_id, writer)
        lookup = [
            e.id for e, picked in zip(events, chosen, strict=True) if (picked or retry) and e.id
        ]
        known: dict[str, tuple[str, int]] = {}
        if lookup:
            for row in conn.execute(
                "SELECT id, session, seq FROM events WHERE id = ANY(%s::text[])", (lookup,)
            ):
                known[row["id"]] = (row["session"], int(row["seq"]))
        seqs: list[int] = []
        columns: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
        for event in events:
            assert event.id is not None and event.ts is not None
            if event.id in known:
                seqs.append(_first_seq(known[event.id], event.id, session_id))
                continue
            seq = summary.last_seq + 1
            known[event.id] = (session_id, seq)  # a repeat later in this batch
            summary = summarise(summary, event, seq, event.ts)
            seqs.append(seq)
            for name, value in zip(_COLUMNS, _values(event, seq), strict=True):
                columns[name].append(value)
        if columns["id"]:
            _insert(conn, session_id, columns)
        _write_summary(conn, session_id, summary, ownership, reopen=state != "open")
    return seqs


def _lock_session(
    conn: Connection[DictRow], session_id: str, writer: Writer
) -> tuple[Summary, Ownership, str]:
    from .ids import now_ts

    row = conn.execute(_LOCK_SESSION, (session_id,)).fetchone()
    if row is None:
        stamp_now = now_ts()
        created = conn.execute(_CREATE_SESSION, (session_id, stamp_now, stamp_now)).fetchone()
        if created is not None:
            ownership = Ownership(writer_owner(writer, created["db_now"]), 1)
            return Summary(0, 0, 0, None, stamp_now, None), ownership, "open"
        # Another writer created it between our two statements; it has
        # committed (ON CONFLICT waited for it), so the row can be locked now.
        row = conn.execute(_LOCK_SESSION, (session_id,)).fetchone()
        assert row is not None
    ownership = ownership_for_write(
        row["state"], owner_from_row(row), row["epoch"], writer, row["db_now"]
    )
    summary = Summary(
        int(row["last_seq"]),
        int(row["events"]),
        int(row["messages"]),
        row["last_message_seq"],
        row["last_activity_at"],
        loads(row["pending_tool_call"]),
    )
    return summary, ownership, row["state"]


def _values(event: NewEvent, seq: int) -> tuple[Any, ...]:
    return (
        seq,
        event.id,
        event.ts,
        event.type,
        event.role,
        event.content,
        dumps(event.tool_call),
        event.tool_call_id,
        dumps(event.payload),
    )


def _insert(conn: Connection[DictRow], session_id: str, columns: dict[str, list[Any]]) -> None:
    params = [session_id, *(columns[name] for name in _COLUMNS)]
    stored = {row["id"] for row in conn.execute(_INSERT_EVENTS, params)}
    if len(stored) == len(columns["id"]):
        return
    # An id we did not look up (or that another session's writer committed
    # after we looked) is taken: the batch would leave a gap, so refuse it
    # whole; the transaction rolls back.
    missing = [event_id for event_id in columns["id"] if event_id not in stored]
    row = conn.execute(
        "SELECT id, session FROM events WHERE id = ANY(%s::text[]) LIMIT 1", (missing,)
    ).fetchone()
    if row is not None and row["session"] != session_id:
        raise BadInput(f"event id {row['id']!r} is already used in session {row['session']}")
    raise StorageUnavailable(f"event ids collided while appending to {session_id}; try again")


def _first_seq(existing: tuple[str, int], event_id: str, session_id: str) -> int:
    session, seq = existing
    if session != session_id:
        raise BadInput(f"event id {event_id!r} is already used in session {session}")
    return seq


def _write_summary(
    conn: Connection[DictRow],
    session_id: str,
    summary: Summary,
    ownership: Ownership,
    *,
    reopen: bool,
) -> None:
    owner = ownership.owner
    conn.execute(
        _WRITE_SUMMARY,
        (
            summary.last_seq,
            summary.events,
            summary.messages,
            summary.last_message_seq,
            summary.last_activity_at,
            dumps(summary.pending_tool_call),
            reopen,
            reopen,
            owner.host if owner else None,
            owner.pid if owner else None,
            owner.start_time if owner else None,
            owner.boot_id if owner else None,
            owner.lease_until if owner else None,
            ownership.epoch,
            session_id,
        ),
    )
