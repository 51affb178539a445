"""SQL and row helpers shared by the SQLite store's modules.

Every statement here is constant text; values are always bound.
"""

from __future__ import annotations

import json
import sqlite3

from .ledger import Ownership, dumps, loads
from .models import Checkpoint, Event, NewEvent, event_from_values

SESSION_SELECT = """
    SELECT s.*, e.role AS lm_role, e.content AS lm_content, e.ts AS lm_ts
    FROM sessions s
    LEFT JOIN events e ON e.session = s.id AND e.seq = s.last_message_seq
"""


# Constant SQL only (the column list is spelled out, not formatted in).
EVENTS_AFTER = (
    "SELECT session, seq, id, ts, type, role, content, tool_call, tool_call_id, payload"
    " FROM events WHERE session = ? AND seq > ? ORDER BY seq"
)
MESSAGES_AFTER = (
    "SELECT session, seq, id, ts, type, role, content, tool_call, tool_call_id, payload"
    " FROM events WHERE session = ? AND seq > ? AND type = 'message' ORDER BY seq"
)
# messages_only is bound like every other value: the SQL text never changes.
EVENTS_TAIL = (
    "SELECT * FROM (SELECT session, seq, id, ts, type, role, content, tool_call, tool_call_id, payload"
    " FROM events WHERE session = ? AND seq > ? AND (? = 0 OR type = 'message')"
    " ORDER BY seq DESC LIMIT ?) ORDER BY seq"
)
EVENT_AT = (
    "SELECT session, seq, id, ts, type, role, content, tool_call, tool_call_id, payload"
    " FROM events WHERE session = ? AND seq = ?"
)
RECENT_EVENTS = (
    "SELECT session, seq, id, ts, type, role, content, tool_call, tool_call_id, payload"
    " FROM events ORDER BY ts DESC, pk DESC LIMIT ?"
)


def insert_event(
    conn: sqlite3.Connection, session_id: str, seq: int, event_id: str, ts: str, event: NewEvent
) -> int:
    """Insert one event row; returns its pk (the search index's rowid)."""
    cursor = conn.execute(
        "INSERT INTO events (session, seq, id, ts, type, role, content, tool_call,"
        " tool_call_id, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            session_id,
            seq,
            event_id,
            ts,
            event.type,
            event.role,
            event.content,
            dumps(event.tool_call),
            event.tool_call_id,
            dumps(event.payload),
        ),
    )
    pk = cursor.lastrowid
    assert pk is not None  # sqlite3 sets lastrowid after every INSERT
    return pk


def owner_values(ownership: Ownership) -> tuple[object, ...]:
    """owner_host, owner_pid, owner_start, owner_boot, lease_until, epoch, in that order."""
    owner = ownership.owner
    if owner is None:
        return (None, None, None, None, None, ownership.epoch)
    return (
        owner.host,
        owner.pid,
        owner.start_time,
        owner.boot_id,
        owner.lease_until,
        ownership.epoch,
    )


SET_OWNER = (
    "UPDATE sessions SET owner_host = ?, owner_pid = ?, owner_start = ?, owner_boot = ?,"
    " lease_until = ?, epoch = ? WHERE id = ?"
)
# The summary after an append, with the owner columns as in SET_OWNER.
# The common append (ledger.eligible writers) as one conditional update of the
# session row: SQLite evaluates every right-hand side against the row as it
# was, so the summary is written relative to it, as ledger.summarise would.
# It matches nothing unless the session is open and the writer holds the
# current epoch or (no epoch) is the recorded owner; the caller then takes the
# general path, which also handles reopening an ended session. The caller
# reads the new last_seq back (cheaper than RETURNING here). Numbered
# parameters, bound from a tuple (cheaper than names).
APPEND_FAST = """
    -- ?1 session, ?2 epoch, ?3-?6 the writer (host, pid, start, boot),
    -- ?7 lease_until, then ledger.BatchEffect: ?8 count, ?9 messages,
    -- ?10 last_message, ?11 newest, ?12 sets_pending, ?13 pending, ?14 answered
    UPDATE sessions SET
        last_seq = last_seq + ?8,
        events = events + ?8,
        messages = messages + ?9,
        last_message_seq = coalesce(last_seq + ?10, last_message_seq),
        last_activity_at = max(last_activity_at, ?11),
        pending_tool_call = CASE
            WHEN ?12 THEN ?13
            WHEN json_type(pending_tool_call, '$.id') = 'text'
                 AND json_extract(pending_tool_call, '$.id')
                     IN (SELECT value FROM json_each(?14)) THEN NULL
            ELSE pending_tool_call END,
        owner_host = ?3, owner_pid = ?4, owner_start = ?5, owner_boot = ?6,
        lease_until = ?7
    WHERE id = ?1 AND state = 'open'
      AND CASE WHEN ?2 IS NOT NULL THEN epoch = ?2
               ELSE owner_host = ?3 AND owner_pid = ?4
                    AND owner_start IS ?5 AND owner_boot IS ?6 END
"""
LAST_SEQ = "SELECT last_seq FROM sessions WHERE id = ?"

WRITE_SUMMARY = (
    "UPDATE sessions SET last_seq = ?, events = ?, messages = ?, last_message_seq = ?,"
    " last_activity_at = ?, pending_tool_call = ?,"
    " state = CASE WHEN ? THEN 'open' ELSE state END,"
    " ended_at = CASE WHEN ? THEN NULL ELSE ended_at END,"
    " owner_host = ?, owner_pid = ?, owner_start = ?, owner_boot = ?, lease_until = ?,"
    " epoch = ? WHERE id = ?"
)


def read_events(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> list[Event]:
    """Run an event query (columns as in EVENTS_AFTER) and build the events.

    Plain tuples decoded by position: resume reads thousands of rows, and
    sqlite3.Row lookups by name cost a third of the read.
    """
    cursor = conn.cursor()
    cursor.row_factory = None
    loads_ = json.loads
    return [
        event_from_values(
            s, q, i, t, k, r, c, loads_(tc) if tc else None, tid, loads_(p) if p else None
        )
        for s, q, i, t, k, r, c, tc, tid, p in cursor.execute(sql, params)
    ]


def checkpoint_from_row(row: sqlite3.Row) -> Checkpoint:
    return Checkpoint(
        session=row["session"],
        seq=int(row["seq"]),
        id=row["id"],
        ts=row["ts"],
        note=row["note"],
        state=loads(row["state"]),
    )
