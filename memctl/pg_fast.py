"""The shortcut append: the common case of ``pg_append`` in one round trip.

Most appends come from a writer the session already belongs to: an agent
holding the epoch of its claim, or a CLI writer (no epoch) that is the
session's live owner. For them ``ledger``'s rules come down to "keep the
epoch, refresh the owner's lease, reopen if ended", and the summary after a
batch of new events can be written relative to the row it updates: counts
added, seqs offset from ``last_seq``, the newest timestamp, and the batch's
effect on the pending tool call (``BatchEffect``). So the append is:

1. claim the seqs (``_CLAIM``): update the session row, only if it is in
   that common state. The update takes the row lock, so concurrent writers
   queue here, and after a wait it re-reads the row and re-checks the
   condition (READ COMMITTED), so each writer builds on the seq the previous
   one left;
2. insert the batch at ``last_seq + 1`` onwards, with its search vectors.

A small batch (a single event, most often) does both in one statement sent
in autocommit mode, its own transaction: one round trip. A large one (a
bulk import) claims, then COPYs its rows, in one transaction.

If the session is not in that state the update matches nothing, nothing is
inserted, and the caller takes the general path. If an id is already taken
(a caller's idempotency key, a race with another session's writer), the
insert fails on the unique index and the transaction with it; the general
path then sorts the batch out under the lock. Caller-chosen ids are also
looked for up front, so the usual idempotent re-send falls back without an
error in the server's log.

No server-side function: memctl adds none outside a migration, and this
needs none.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import Connection, Cursor
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow, TupleRow, tuple_row

from .ledger import BatchEffect, dumps
from .pg_rows import COLUMNS, Row, encode
from .storage import Writer

# Claim the batch's seqs: the summary update, only if the session is in the
# common state; its base seq, or no row. The row's own columns on the
# right-hand side are its latest committed version (the one the update locked).
# The set_config bounds the wait for the row lock, for this transaction only
# (as pg_append.bound_lock_wait does, without its round trip): the scalar
# subquery runs once, as the row is found, before the update waits for a
# lock a stuck writer holds.
_CLAIM = """
    UPDATE sessions SET
        last_seq = last_seq + %(count)s::bigint,
        events = events + %(count)s::bigint,
        messages = messages + %(messages)s::bigint,
        last_message_seq = coalesce(last_seq + %(last_message)s::bigint, last_message_seq),
        last_activity_at = greatest(last_activity_at, %(newest)s::text COLLATE "C"),
        pending_tool_call = CASE
            WHEN %(sets_pending)s::boolean THEN %(pending)s::json
            WHEN json_typeof(pending_tool_call -> 'id') = 'string'
                 AND %(answered)s::jsonb ? (pending_tool_call ->> 'id') THEN NULL
            ELSE pending_tool_call END,
        state = 'open',
        ended_at = CASE WHEN state = 'open' THEN ended_at END,
        owner_host = %(host)s, owner_pid = %(pid)s::bigint,
        owner_start = %(start)s::bigint, owner_boot = %(boot)s::text,
        lease_until = extract(epoch from clock_timestamp())::float8 + %(lease)s::float8
    WHERE id = %(session)s
      AND (SELECT set_config('lock_timeout', %(lock_timeout)s, true)) IS NOT NULL
      AND CASE WHEN %(epoch)s::bigint IS NOT NULL THEN epoch = %(epoch)s::bigint
               ELSE state = 'open' AND owner_host = %(host)s
                    AND owner_pid = %(pid)s::bigint
                    AND owner_start IS NOT DISTINCT FROM %(start)s::bigint
                    AND owner_boot IS NOT DISTINCT FROM %(boot)s::text END
      AND (%(chosen)s::jsonb = '[]'::jsonb OR NOT EXISTS (
            SELECT 1 FROM events
            WHERE id = ANY(ARRAY(SELECT jsonb_array_elements_text(%(chosen)s::jsonb)))))
    RETURNING last_seq - %(count)s::bigint AS base
"""

# The events table with the columns every fast path writes, in pg_rows' order.
_EVENTS = f"events (session, seq, {', '.join(COLUMNS)})"

# The claim and the insert in one statement, the rows unpacked from one jsonb
# parameter (see pg_rows). The event columns are unpacked as in
# pg_append._INSERT_AND_SUMMARISE; keep the two in step.
_APPEND = f"""
    WITH s AS ({_CLAIM}),
    inserted AS (
        INSERT INTO {_EVENTS}
        SELECT %(session)s, s.base + r.n, r.v ->> 0, r.v ->> 1, r.v ->> 2, r.v ->> 3, r.v ->> 4,
               (r.v ->> 5)::json, r.v ->> 6, (r.v ->> 7)::json, (r.v ->> 8)::tsvector
        FROM s, jsonb_array_elements(%(rows)s::jsonb) WITH ORDINALITY AS r(v, n)
    )
    SELECT base FROM s
"""  # noqa: S608 (constants only)

# One event, the most common append by far, binds its values as parameters
# of their own: the server then parses no jsonb array and extracts nothing
# from it. Measured in one process, alternating blocks of 50 of the
# pg-append benchmark's messages against the jsonb form (12,000 appends
# each): the server's CPU went from 261 to 240 µs an append, commit
# included, and the append from 548 to 534 µs.
_ONE = tuple(f"v_{name}" for name in COLUMNS)
_APPEND_ONE = f"""
    WITH s AS ({_CLAIM})
    INSERT INTO {_EVENTS}
    SELECT %(session)s, s.base + 1, %(v_id)s, %(v_ts)s, %(v_type)s, %(v_role)s, %(v_content)s,
           %(v_tool_call)s::json, %(v_tool_call_id)s, %(v_payload)s::json, %(v_search)s::tsvector
    FROM s
    RETURNING seq - 1
"""  # noqa: S608 (constants only)


# Batches this large are copied in: COPY text costs the server less to read
# than a jsonb array (about 7 µs an event less here), and the data is made
# before the batch reaches the storing thread (pg_rows), for three more round
# trips (BEGIN, the claim, COMMIT) than one statement.
COPY_FROM = 64

_COPY = f"COPY {_EVENTS} FROM STDIN"


# The plain tuple cursor of each thread's last connection, kept for its next
# append: a new cursor per append cost about 4% of the library's single
# append (make bench pg-append, alternating: 0.62-0.63x against 0.65-0.66x),
# and the connection's dict rows cost more than the one value read here.
# Per thread and only the last one, so that nothing keeps a connection alive
# once its owner is done with it (a cursor holds its connection).
_KEPT = threading.local()


def _cursor(conn: Connection[Any]) -> Cursor[TupleRow]:
    cursor: Cursor[TupleRow] | None = getattr(_KEPT, "cursor", None)
    if cursor is None or cursor.connection is not conn or cursor.closed:
        cursor = _KEPT.cursor = conn.cursor(row_factory=tuple_row)
    return cursor


def try_append(
    conn: Connection[DictRow],
    session_id: str,
    rows: Sequence[Row],
    copy_data: bytes | None,
    effect: BatchEffect,
    writer: Writer,
    chosen: Sequence[str],
    *,
    lock_timeout: str,
) -> int | None:
    """Append the batch in one transaction; its first seq, or None for the general path.

    ``rows`` are the events' values (``pg_rows``), in batch order, and
    ``copy_data`` their ``COPY`` data with the seqs left out
    (``pg_rows.copy_template``), given for a batch to be copied in;
    ``chosen`` the ids the caller picked, which may exist already; the
    session's row lock is waited for at most ``lock_timeout`` (a server
    setting's value, ``"30000ms"``). Nothing is stored when None is returned.
    """
    me = writer.identity
    params = {
        "session": session_id,
        "epoch": writer.epoch,
        "host": me.host,
        "pid": me.pid,
        "start": me.start_time,
        "boot": me.boot_id,
        "lease": writer.lease_seconds,
        "chosen": encode(chosen) if chosen else "[]",
        "count": effect.count,
        "messages": effect.messages,
        "last_message": effect.last_message,
        "newest": effect.newest,
        "sets_pending": effect.sets_pending,
        "pending": dumps(effect.pending),
        "answered": encode(effect.answered) if effect.answered else "[]",
        "lock_timeout": lock_timeout,
    }
    cursor = _cursor(conn)
    try:
        if copy_data is not None:
            # A savepoint instead when the caller's transaction is open.
            with conn.transaction():
                row = cursor.execute(_CLAIM, params).fetchone()
                if row is None:
                    return None  # not the common state: nothing changed
                base = int(row[0])
                data = copy_data % tuple(range(base + 1, base + 1 + len(rows)))
                with cursor.copy(_COPY) as copy:
                    # The data is UTF-8; a connection set to another client
                    # encoding gets text, which psycopg encodes for it.
                    copy.write(data if conn.info.encoding == "utf-8" else data.decode("utf-8"))
            return base + 1
        if len(rows) == 1:
            params.update(zip(_ONE, rows[0], strict=True))
            statement = _APPEND_ONE
        else:
            params["rows"] = encode(rows)
            statement = _APPEND
        # Outside a transaction (memctl's connections are autocommit) the
        # statement is its own transaction: one round trip, and an error
        # undoes all of it. Inside one, a savepoint gives the same.
        if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
            row = cursor.execute(statement, params).fetchone()
        else:
            with conn.transaction():
                row = cursor.execute(statement, params).fetchone()
    except psycopg.errors.UniqueViolation:
        return None  # an id is taken; nothing was stored
    return None if row is None else int(row[0]) + 1
