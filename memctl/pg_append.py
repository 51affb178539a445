"""Appending to a session's log on PostgreSQL: the hot path, in one transaction.

The session row is locked first (``SELECT ... FOR UPDATE``, after an
``INSERT ... ON CONFLICT DO NOTHING`` that creates it when new), so concurrent
writers to one session queue there and each sees the seq the previous one
left: seqs are allocated from the summary row, never with ``max(seq) + 1``.
The new events of a batch then go in with one ``INSERT ... SELECT FROM
unnest(...)`` whatever the batch size, together with the summary update.
Ownership and the summary are decided by ``ledger``, as on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from .errors import BadInput, StorageUnavailable
from .ids import now_ts
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

_CREATE_SESSION = """
    INSERT INTO sessions (id, created_at, last_activity_at) VALUES (%s, %s, %s)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
"""

_LOCK_SESSION = """
    SELECT state, epoch, last_seq, events, messages, last_message_seq, last_activity_at,
           pending_tool_call, owner_host, owner_pid, owner_start, owner_boot, lease_until,
           extract(epoch from clock_timestamp())::float8 AS db_now
    FROM sessions WHERE id = %s FOR UPDATE
"""

_KNOWN_IDS = "SELECT id, session, seq FROM events WHERE id = ANY(%s::text[])"

# The new events and the summary in one statement. Every column arrives as one
# array parameter (one round trip whatever the batch size); json columns
# travel as text and are cast here, so the stored text is exactly what
# ledger.dumps wrote. ``stored`` counts the rows really inserted.
_INSERT_AND_SUMMARISE = """
    WITH inserted AS (
        INSERT INTO events (session, seq, id, ts, type, role, content, tool_call,
                            tool_call_id, payload)
        SELECT %(session)s, u.seq, u.id, u.ts, u.type, u.role, u.content, u.tool_call::json,
               u.tool_call_id, u.payload::json
        FROM unnest(%(seq)s::bigint[], %(id)s::text[], %(ts)s::text[], %(type)s::text[],
                    %(role)s::text[], %(content)s::text[], %(tool_call)s::text[],
                    %(tool_call_id)s::text[], %(payload)s::text[])
             AS u(seq, id, ts, type, role, content, tool_call, tool_call_id, payload)
        ON CONFLICT (id) DO NOTHING
        RETURNING 1
    )
    UPDATE sessions SET last_seq = %(last_seq)s, events = %(events)s,
        messages = %(messages)s, last_message_seq = %(last_message_seq)s,
        last_activity_at = %(last_activity_at)s, pending_tool_call = %(pending)s::json,
        state = CASE WHEN %(reopen)s THEN 'open' ELSE state END,
        ended_at = CASE WHEN %(reopen)s THEN NULL ELSE ended_at END,
        owner_host = %(host)s, owner_pid = %(pid)s, owner_start = %(start)s,
        owner_boot = %(boot)s, lease_until = %(lease)s, epoch = %(epoch)s
    WHERE id = %(session)s
    RETURNING (SELECT count(*) FROM inserted) AS stored
"""

_COLUMNS = ("seq", "id", "ts", "type", "role", "content", "tool_call", "tool_call_id", "payload")


def append_events(
    conn: Connection[DictRow],
    session_id: str,
    events: Sequence[NewEvent],
    stamps: Sequence[tuple[str, str]],
    writer: Writer,
    chosen: Sequence[bool],
    *,
    retry: bool,
) -> list[int]:
    """Store ``events`` under their ``stamps`` (id, ts) and return their seqs.

    ``chosen[i]`` says the caller picked event i's id, so it may exist
    already; memctl's own ids are fresh unless this is a ``retry``, when the
    first attempt may have committed them.

    Four round trips in the common case: BEGIN, lock the session row, insert
    and summarise in one statement, COMMIT.
    """
    lookup = [
        event_id for (event_id, _), picked in zip(stamps, chosen, strict=True) if picked or retry
    ]
    stamp_now = now_ts()
    with conn.transaction():
        row = conn.execute(_LOCK_SESSION, (session_id,)).fetchone()
        created = row is None
        if row is None:
            # New session. A concurrent first writer makes this INSERT wait
            # for its commit and do nothing; the lock then finds its row.
            created = (
                conn.execute(_CREATE_SESSION, (session_id, stamp_now, stamp_now)).fetchone()
                is not None
            )
            row = conn.execute(_LOCK_SESSION, (session_id,)).fetchone()
            assert row is not None
        # Looked up under the lock: no writer of this session can add one meanwhile.
        found = conn.execute(_KNOWN_IDS, (lookup,)).fetchall() if lookup else []
        if created:
            ownership = Ownership(writer_owner(writer, row["db_now"]), 1)
        else:
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
        known = {r["id"]: (r["session"], int(r["seq"])) for r in found}
        seqs: list[int] = []
        columns: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
        for event, (event_id, ts) in zip(events, stamps, strict=True):
            if event_id in known:
                seqs.append(_first_seq(known[event_id], event_id, session_id))
                continue
            seq = summary.last_seq + 1
            known[event_id] = (session_id, seq)  # a repeat later in this batch
            summary = summarise(summary, event, seq, ts)
            seqs.append(seq)
            for name, value in zip(_COLUMNS, _values(event, event_id, ts, seq), strict=True):
                columns[name].append(value)
        params = {
            "session": session_id,
            **columns,
            **_summary_params(summary, ownership, reopen=row["state"] != "open"),
        }
        result = conn.execute(_INSERT_AND_SUMMARISE, params).fetchone()
        if result is None or result["stored"] != len(columns["id"]):
            _refuse_taken_ids(conn, session_id, columns["id"])
    return seqs


def _values(event: NewEvent, event_id: str, ts: str, seq: int) -> tuple[Any, ...]:
    return (
        seq,
        event_id,
        ts,
        event.type,
        event.role,
        event.content,
        dumps(event.tool_call),
        event.tool_call_id,
        dumps(event.payload),
    )


def _summary_params(summary: Summary, ownership: Ownership, *, reopen: bool) -> dict[str, Any]:
    owner = ownership.owner
    return {
        "last_seq": summary.last_seq,
        "events": summary.events,
        "messages": summary.messages,
        "last_message_seq": summary.last_message_seq,
        "last_activity_at": summary.last_activity_at,
        "pending": dumps(summary.pending_tool_call),
        "reopen": reopen,
        "host": owner.host if owner else None,
        "pid": owner.pid if owner else None,
        "start": owner.start_time if owner else None,
        "boot": owner.boot_id if owner else None,
        "lease": owner.lease_until if owner else None,
        "epoch": ownership.epoch,
    }


def _refuse_taken_ids(conn: Connection[DictRow], session_id: str, ids: list[str]) -> None:
    """Some event was not inserted: its id is taken. Refuse the batch (it rolls back).

    It happens when an id we did not look up, or that another session's writer
    committed after we looked, is in use; storing the rest would leave a gap.
    """
    row = conn.execute(
        "SELECT id, session FROM events WHERE id = ANY(%s::text[]) AND session <> %s LIMIT 1",
        (ids, session_id),
    ).fetchone()
    if row is not None:
        raise BadInput(f"event id {row['id']!r} is already used in session {row['session']}")
    raise StorageUnavailable(f"event ids collided while appending to {session_id}; try again")


def _first_seq(existing: tuple[str, int], event_id: str, session_id: str) -> int:
    session, seq = existing
    if session != session_id:
        raise BadInput(f"event id {event_id!r} is already used in session {session}")
    return seq
