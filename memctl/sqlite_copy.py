"""Importing sessions and facts copied from another memctl database (``db copy``).

Everything keeps its identity: session ids, event ids, seqs, timestamps,
checkpoint ids. That makes a copy safe to repeat: what is already there (by
id) is skipped, and the rest continues the same gapless seq. A target that
holds a *different* session under the same id is refused, never merged.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from . import sqlite_search
from .errors import Conflict
from .ledger import Summary, copied_summary_values, dumps, summarise
from .models import Checkpoint, Event, Fact, FactChange, NewEvent, SessionInfo
from .sqlite_sql import checkpoint_from_row, insert_event


def import_session(
    conn: sqlite3.Connection,
    info: SessionInfo,
    events: Sequence[Event],
    checkpoints: Sequence[Checkpoint],
) -> int:
    """Copy one chunk of a session; returns how many events were new."""
    row = conn.execute(
        "SELECT last_seq, events, messages, last_message_seq, last_activity_at,"
        " pending_tool_call FROM sessions WHERE id = ?",
        (info.id,),
    ).fetchone()
    if row is None:
        owner = info.owner
        # The owner and epoch travel too, so the session's status is the same
        # in both databases and a writer holding the epoch can carry on.
        conn.execute(
            "INSERT INTO sessions (id, title, state, created_at, last_activity_at, ended_at,"
            " metadata, owner_host, owner_pid, owner_start, owner_boot, lease_until, epoch)"
            " VALUES (?, ?, 'open', ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?)",
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
        summary = Summary.empty(info.created_at)
    else:
        summary = Summary.from_row(row)
    added = 0
    to_index: list[sqlite_search.IndexRow] = []
    for event in events:
        if event.seq <= summary.last_seq:
            present = conn.execute(
                "SELECT 1 FROM events WHERE session = ? AND seq = ? AND id = ?",
                (info.id, event.seq, event.id),
            ).fetchone()
            if present is None:
                raise Conflict(
                    f"session {info.id} already exists in the target with other events "
                    f"(seq {event.seq} differs); not merging"
                )
            continue
        if event.seq != summary.last_seq + 1:
            raise Conflict(f"session {info.id}: seq {event.seq} would leave a gap; not copying")
        new = _as_new(event)
        pk = insert_event(conn, info.id, event.seq, event.id, event.ts, new)
        summary = summarise(summary, new, event.seq, event.ts)
        to_index.append((pk, event.content, event.tool_call, event.payload))
        added += 1
    if sqlite_search.due([pk for pk, *_ in to_index]):
        sqlite_search.catch_up(conn)
    for checkpoint in checkpoints:
        conn.execute(
            "INSERT OR IGNORE INTO checkpoints (session, seq, id, ts, note, state)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (info.id, checkpoint.seq, checkpoint.id, checkpoint.ts, checkpoint.note,
             dumps(checkpoint.state)),
        )  # fmt: skip
    conn.execute(
        "UPDATE sessions SET last_seq = ?, events = ?, messages = ?, last_message_seq = ?,"
        " last_activity_at = ?, pending_tool_call = ?, state = ?, ended_at = ?,"
        " checkpoint_seq = coalesce(?, checkpoint_seq), checkpoint_ts = coalesce(?, checkpoint_ts),"
        " checkpoint_note = CASE WHEN ? THEN ? ELSE checkpoint_note END WHERE id = ?",
        copied_summary_values(info, summary, checkpoints),
    )
    return added


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


def checkpoints(conn: sqlite3.Connection, session_id: str) -> list[Checkpoint]:
    rows = conn.execute(
        "SELECT * FROM checkpoints WHERE session = ? ORDER BY pk", (session_id,)
    ).fetchall()
    return [checkpoint_from_row(row) for row in rows]


def import_fact(conn: sqlite3.Connection, fact: Fact | None, history: Sequence[FactChange]) -> bool:
    """Copy a fact (None: one that was forgotten) with its history; False if already there."""
    fact_id = fact.id if fact else history[0].fact
    if conn.execute("SELECT 1 FROM fact_history WHERE fact = ?", (fact_id,)).fetchone():
        return False
    if fact is not None:
        clash = conn.execute(
            "SELECT id FROM facts WHERE key = ? AND id <> ?", (fact.key, fact.id)
        ).fetchone()
        if fact.key is not None and clash is not None:
            raise Conflict(
                f"the target already has another fact with key {fact.key!r} ({clash['id']})"
            )
        inserted = conn.execute(
            "INSERT INTO facts (id, key, text, tags, session, seq, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (fact.id, fact.key, fact.text, json.dumps(fact.tags), fact.session, fact.seq,
             fact.created_at, fact.updated_at),
        )  # fmt: skip
        conn.execute(
            "INSERT INTO facts_fts (rowid, body) VALUES (?, ?)", (inserted.lastrowid, fact.text)
        )
    conn.executemany(
        "INSERT INTO fact_history (fact, key, action, text, tags, ts) VALUES (?, ?, ?, ?, ?, ?)",
        [(c.fact, c.key, c.action, c.text, json.dumps(c.tags), c.ts) for c in history],
    )
    return True
