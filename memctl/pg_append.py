"""Appending to a session's log on PostgreSQL: the hot path, in one transaction.

Concurrent writers to one session queue on its row lock and each sees the seq
the previous one left: seqs are allocated from the summary row, never with
``max(seq) + 1``. A batch goes in with one ``INSERT ... SELECT`` whatever its
size (the rows travel as one ``jsonb`` parameter, see ``pg_rows``), each row
with its search vector (``pg_search.event_vector``).

Two paths. The common case (the writer holds the session's epoch, or is its
live owner, and the ids are new) is one statement, one round trip: see
``pg_fast``. Everything else (a new session, a write into a session someone
else owns, a retry, an idempotency key seen before) takes the general path
here: lock the row, look the ids up, let ``ledger`` decide ownership and the
summary exactly as on SQLite, insert and summarise, commit. The fast path
only shortcuts cases whose outcome ``ledger`` fixes in advance, and stores
nothing whenever it cannot be sure.

Prepared statements. Over TCP a small append costs one round trip plus the
server's work, and unprepared that work includes parsing and planning the
statement every time, which for the fast path's statement is as much again
as executing it (pgbench here: about 1.0 ms a call unprepared, 0.6 ms
prepared, against 0.4-0.5 ms for a plain INSERT). So they are on by default;
``pg_connect`` turns them off behind a proxy that cannot route them.

A batch is prepared (``prepare``: ids, rows, the summary effect)
before any connection is touched, so a bulk import can build batch k+1 while
batch k is in the server (``memctl.stream``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from .errors import BadInput, StorageUnavailable
from .ids import now_ts
from .ledger import (
    BatchEffect,
    Ownership,
    Summary,
    batch_effect,
    dumps,
    eligible,
    loads,
    owner_from_row,
    ownership_for_write,
    summarise,
    writer_owner,
)
from .models import NewEvent
from .pg_fast import COPY_FROM, try_append
from .pg_rows import Row, copy_template, encode, event_row
from .storage import Writer

# How long a write waits for a session's row lock, as SQLite's busy timeout
# bounds its writers: a stopped or hung process inside a transaction would
# otherwise make `resume --force`, or a write into its session, wait forever.
LOCK_TIMEOUT_SECONDS = 30.0


def lock_timeout() -> str:
    """LOCK_TIMEOUT_SECONDS as a value of the server's ``lock_timeout`` setting."""
    return f"{int(LOCK_TIMEOUT_SECONDS * 1000)}ms"


def bound_lock_wait(conn: Connection[DictRow]) -> None:
    """Let this transaction wait at most LOCK_TIMEOUT_SECONDS for a lock.

    Set for the transaction only (``set_config(..., true)``), so nothing
    leaks to other clients of a transaction-pooling proxy.
    """
    conn.execute("SELECT set_config('lock_timeout', %s, true)", (lock_timeout(),))


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

# Ids arrive as one jsonb list (see pg_rows); ARRAY(...) turns it into the
# array an index scan on events.id can use.
_KNOWN_IDS = """
    SELECT id, session, seq FROM events
    WHERE id = ANY(ARRAY(SELECT jsonb_array_elements_text(%s::jsonb)))
"""

# The new events and the summary in one statement. The rows are consecutive
# seqs from %(first)s; the event columns are unpacked as in pg_fast._APPEND
# (keep the two in step). ``stored`` counts the rows really inserted.
_INSERT_AND_SUMMARISE = """
    WITH inserted AS (
        INSERT INTO events (session, seq, id, ts, type, role, content, tool_call,
                            tool_call_id, payload, search)
        SELECT %(session)s, %(first)s::bigint + r.n - 1, r.v ->> 0, r.v ->> 1, r.v ->> 2,
               r.v ->> 3, r.v ->> 4, (r.v ->> 5)::json, r.v ->> 6, (r.v ->> 7)::json,
               (r.v ->> 8)::tsvector
        FROM jsonb_array_elements(%(rows)s::jsonb) WITH ORDINALITY AS r(v, n)
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


@dataclass(frozen=True)
class Batch:
    """A batch of events ready to store: everything but the database work.

    ``chosen[i]`` says the caller picked event i's id (so it may exist
    already); ``rows`` are the stored values (``pg_rows``), and ``copy``
    their ``COPY`` data, seqs left out (``pg_rows.copy_template``), when the
    batch is large enough to be copied in (``pg_fast.COPY_FROM``);
    ``effect`` is what the batch does to the session summary
    (``ledger.batch_effect``).
    """

    events: Sequence[NewEvent]
    stamps: Sequence[tuple[str, str]]
    chosen: Sequence[bool]
    rows: Sequence[Row]
    copy: bytes | None
    effect: BatchEffect | None


def prepare(
    session_id: str, events: Sequence[NewEvent], stamps: Sequence[tuple[str, str]]
) -> Batch:
    """Build the batch for ``events`` stored in ``session_id`` under their ``stamps`` (id, ts)."""
    rows = [
        event_row(event, event_id, ts) for event, (event_id, ts) in zip(events, stamps, strict=True)
    ]
    return Batch(
        events=events,
        stamps=stamps,
        chosen=[event.id is not None for event in events],
        rows=rows,
        copy=copy_template(session_id, rows) if len(rows) >= COPY_FROM else None,
        effect=batch_effect(events, stamps) if events else None,
    )


def append_batch(
    conn: Connection[DictRow], session_id: str, batch: Batch, writer: Writer, *, retry: bool
) -> list[int]:
    """Store ``batch`` and return its seqs.

    memctl's own ids are fresh unless this is a ``retry``, when the first
    attempt may have committed them (so a retry goes straight to the general
    path, which finds them).
    """
    if batch.effect is not None and not retry and eligible(writer):
        picked = [
            event_id for (event_id, _), mine in zip(batch.stamps, batch.chosen, strict=True) if mine
        ]
        first = try_append(
            conn,
            session_id,
            batch.rows,
            batch.copy,
            batch.effect,
            writer,
            picked,
            lock_timeout=lock_timeout(),
        )
        if first is not None:
            return list(range(first, first + len(batch.events)))
    return _append_general(
        conn, session_id, batch.events, batch.rows, writer, batch.chosen, retry=retry
    )


def _append_general(
    conn: Connection[DictRow],
    session_id: str,
    events: Sequence[NewEvent],
    rows: Sequence[Row],
    writer: Writer,
    chosen: Sequence[bool],
    *,
    retry: bool,
) -> list[int]:
    """Any append, with ``ledger`` deciding: the path every other case takes.

    Five round trips in the common case: BEGIN, bound the lock wait, lock the
    session row, insert and summarise in one statement, COMMIT.
    """
    lookup = [str(row[0]) for row, picked in zip(rows, chosen, strict=True) if picked or retry]
    stamp_now = now_ts()
    with conn.transaction():
        # A round trip more, on this path only: the shortcut (pg_fast) sets
        # the bound inside its one statement.
        bound_lock_wait(conn)
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
        found = conn.execute(_KNOWN_IDS, (encode(lookup),)).fetchall() if lookup else []
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
        first = summary.last_seq + 1
        known = {r["id"]: (r["session"], int(r["seq"])) for r in found}
        seqs: list[int] = []
        new_rows: list[Row] = []
        for event, values in zip(events, rows, strict=True):
            event_id, ts = str(values[0]), str(values[1])
            if event_id in known:
                seqs.append(_first_seq(known[event_id], event_id, session_id))
                continue
            seq = summary.last_seq + 1
            known[event_id] = (session_id, seq)  # a repeat later in this batch
            summary = summarise(summary, event, seq, ts)
            seqs.append(seq)
            new_rows.append(values)
        params = {
            "session": session_id,
            "first": first,
            "rows": encode(new_rows),
            **_summary_params(summary, ownership, reopen=row["state"] != "open"),
        }
        result = conn.execute(_INSERT_AND_SUMMARISE, params).fetchone()
        if result is None or result["stored"] != len(new_rows):
            _refuse_taken_ids(conn, session_id, [str(values[0]) for values in new_rows])
    return seqs


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
        "SELECT id, session FROM events"
        " WHERE id = ANY(ARRAY(SELECT jsonb_array_elements_text(%s::jsonb)))"
        " AND session <> %s LIMIT 1",
        (encode(ids), session_id),
    ).fetchone()
    if row is not None:
        raise BadInput(f"event id {row['id']!r} is already used in session {row['session']}")
    raise StorageUnavailable(f"event ids collided while appending to {session_id}; try again")


def _first_seq(existing: tuple[str, int], event_id: str, session_id: str) -> int:
    session, seq = existing
    if session != session_id:
        raise BadInput(f"event id {event_id!r} is already used in session {session}")
    return seq
