"""Backend-neutral rules for writes and rows, shared by every adapter.

An adapter reads a session row inside its write transaction, asks this module
what the new ownership and summary should be, and writes the answer back.
Keeping the rules here means SQLite and PostgreSQL cannot drift apart on
fencing, ownership hand-over or the summary that ``list`` shows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from .errors import Conflict, FencedOut, SessionOwned
from .ids import now_ts
from .models import (
    Checkpoint,
    CheckpointRef,
    Event,
    JsonObject,
    LastMessage,
    NewEvent,
    Owner,
    SessionInfo,
    Status,
)
from .owners import derive_status, owner_alive
from .storage import Writer


class Row(Protocol):
    """A database row readable by column name (sqlite3.Row, psycopg's dict rows)."""

    def __getitem__(self, key: str, /) -> Any: ...


# One encoder for every value: json.dumps with options builds a new one per call.
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def compact_json(value: Any) -> str:
    """``value`` as the compact JSON text memctl stores (no spaces, UTF-8 kept)."""
    return _COMPACT.encode(value)


def dumps(value: Any) -> str | None:
    """Compact JSON for storage; None stays NULL."""
    return None if value is None else compact_json(value)


def loads(text: Any) -> Any:
    if text is None:
        return None
    if isinstance(text, (dict, list)):
        return text  # PostgreSQL's jsonb arrives decoded
    return json.loads(text)


@dataclass(frozen=True)
class Ownership:
    """Owner columns and epoch as they should be after a write."""

    owner: Owner | None
    epoch: int


def writer_owner(writer: Writer, db_now: float) -> Owner:
    ident = writer.identity
    return Owner(
        host=ident.host,
        pid=ident.pid,
        start_time=ident.start_time,
        boot_id=ident.boot_id,
        lease_until=db_now + writer.lease_seconds,
    )


def ownership_for_write(
    state: str, owner: Owner | None, epoch: int, writer: Writer, db_now: float
) -> Ownership:
    """PRODUCT.md's rules for a write into an existing session.

    A writer holding an epoch must hold the current one (else it was fenced
    out). A write without an epoch leaves a live owner in place, refreshing
    the lease if it is that owner; into an ended or incomplete session it
    makes the writer the owner, raising the epoch to fence any zombie out.
    """
    if writer.epoch is not None:
        if writer.epoch != epoch:
            raise FencedOut(
                f"another process claimed this session (epoch {epoch}, this writer holds "
                f"{writer.epoch}); stop writing to it"
            )
        return Ownership(writer_owner(writer, db_now), epoch)
    if state == "open" and owner_alive(owner, db_now):
        if writer.identity.matches(owner):
            return Ownership(writer_owner(writer, db_now), epoch)
        return Ownership(owner, epoch)
    return Ownership(writer_owner(writer, db_now), epoch + 1)


def ownership_for_claim(
    session: SessionInfo,
    writer: Writer,
    db_now: float,
    *,
    force: bool,
    expected_epoch: int | None,
) -> Ownership:
    """A claim (start, resume, recover) always raises the epoch."""
    if expected_epoch is not None and session.epoch != expected_epoch:
        raise Conflict(f"session {session.id} was claimed by another process first")
    if not force and session.status is Status.ACTIVE and not writer.identity.matches(session.owner):
        owner = session.owner
        where = f"pid {owner.pid} on {owner.host}" if owner else "another process"
        raise SessionOwned(
            f"session {session.id} is in use by {where}; pass --force (force=True in "
            "Python) to take it over (the old owner will be fenced out)"
        )
    return Ownership(writer_owner(writer, db_now), session.epoch + 1)


@dataclass(frozen=True)
class Summary:
    """The per-session counters that every append keeps current."""

    last_seq: int
    events: int
    messages: int
    last_message_seq: int | None
    last_activity_at: str
    pending_tool_call: JsonObject | None

    @classmethod
    def empty(cls, created_at: str) -> Summary:
        """The summary of a session with no events yet."""
        return cls(0, 0, 0, None, created_at, None)

    @classmethod
    def from_row(cls, row: Row) -> Summary:
        """Read the summary columns of a sessions row."""
        return cls(
            int(row["last_seq"]),
            int(row["events"]),
            int(row["messages"]),
            row["last_message_seq"],
            row["last_activity_at"],
            loads(row["pending_tool_call"]),
        )


def summarise(summary: Summary, event: NewEvent, seq: int, ts: str) -> Summary:
    """The summary after appending ``event`` at ``seq``.

    An event counts as activity at its time, but never later than now: a
    caller's time in the future would keep its session first in ``list``
    and ``resume --last`` until then. (Same in ``batch_effect``.)
    """
    pending = summary.pending_tool_call
    is_message = event.type == "message"
    if is_message and event.role == "assistant" and event.tool_call is not None:
        pending = _with_id(event.tool_call, seq)
    elif (
        is_message
        and event.role == "tool"
        and pending is not None
        and event.tool_call_id is not None
        and event.tool_call_id == pending.get("id")
    ):
        pending = None
    return replace(
        summary,
        last_seq=seq,
        events=summary.events + 1,
        messages=summary.messages + (1 if is_message else 0),
        last_message_seq=seq if is_message else summary.last_message_seq,
        last_activity_at=max(summary.last_activity_at, min(ts, now_ts())),
        pending_tool_call=pending,
    )


def _activity(newest: str, events: Sequence[NewEvent]) -> str:
    """The batch's newest time, but never later than now (see ``summarise``).

    Only a caller's own times need the clamp; the usual batch has none.
    """
    return min(newest, now_ts()) if any(event.ts for event in events) else newest


def _with_id(tool_call: JsonObject, seq: int) -> JsonObject:
    """The call as the summary keeps it: one recorded without an id gets the id it goes by
    (``working.call_id``), so that a result naming that id answers it."""
    if isinstance(tool_call.get("id"), str) and tool_call["id"]:
        return tool_call
    return {**tool_call, "id": f"call_{seq}"}


def stamp(event: NewEvent, new_id: str, now: str) -> tuple[str, str]:
    """The id and timestamp an event is stored with (a batch shares one ``now``)."""
    return (event.id or new_id, event.ts or now)


# -- the common append in one statement -------------------------------------
#
# Most appends come from a writer the session already belongs to. For them the
# rules above come down to "keep the epoch, refresh the owner's lease, reopen
# if ended", and the summary after a batch can be written relative to the row
# being updated, so an adapter can do the whole append with one conditional
# UPDATE of the session row (see pg_fast and SQLiteStore._append_fast).


@dataclass(frozen=True)
class BatchEffect:
    """What appending a batch of new events does to a session's summary.

    Offsets count from 1 within the batch (seq = last_seq + offset). The
    pending tool call after the batch is ``pending`` if the batch
    ``sets_pending`` (an assistant message with a tool call); otherwise it is
    the session's current one, unless a tool message of the batch
    ``answered`` it. The same as ``ledger.summarise`` applied event by event.
    """

    count: int
    messages: int
    last_message: int | None
    newest: str
    sets_pending: bool
    pending: JsonObject | None
    answered: list[str]


def batch_effect(
    events: Sequence[NewEvent], stamps: Sequence[tuple[str, str]]
) -> BatchEffect | None:
    """The batch's effect, or None when only the general path can tell it.

    A tool call without an id goes by its seq (``_with_id``), which is not
    known before the claim: such a batch (rare; agents' calls carry ids)
    takes the general path.
    """
    messages = 0
    last_message: int | None = None
    sets_pending = False
    pending: JsonObject | None = None
    answered: list[str] = []
    for offset, event in enumerate(events, start=1):
        if event.type != "message":
            continue
        messages += 1
        last_message = offset
        if event.role == "assistant" and event.tool_call is not None:
            if _with_id(event.tool_call, 0) is not event.tool_call:
                return None
            sets_pending, pending = True, event.tool_call
        elif event.role == "tool" and event.tool_call_id is not None:
            if not sets_pending:
                # Whether it answers the session's current call is up to the row.
                answered.append(event.tool_call_id)
            elif pending is not None and event.tool_call_id == pending.get("id"):
                pending = None
    return BatchEffect(
        count=len(events),
        messages=messages,
        last_message=last_message,
        newest=_activity(max(ts for _, ts in stamps), events),
        sets_pending=sets_pending,
        pending=pending,
        answered=answered,
    )


def eligible(writer: Writer) -> bool:
    """Whether ``writer`` may take an adapter's one-statement append at all.

    A writer with an epoch always may (the statement checks it is the current
    one). Without one, ``ledger`` refreshes the owner only if the writer *is*
    the session's live owner: the statement compares the owner columns, and
    liveness is checked here, on /proc, as ``owner_alive`` would for that
    owner. The lease is left out (None): a writer whose liveness cannot be
    seen locally takes the general path.
    """
    if writer.epoch is not None:
        return True
    me = writer.identity
    return owner_alive(Owner(me.host, me.pid, me.start_time, me.boot_id, None), 0.0)


def owner_from_row(row: Row) -> Owner | None:
    if row["owner_host"] is None:
        return None
    return Owner(
        host=row["owner_host"],
        pid=int(row["owner_pid"]),
        start_time=row["owner_start"],
        boot_id=row["owner_boot"],
        lease_until=row["lease_until"],
    )


def session_from_row(row: Row, db_now: float) -> SessionInfo:
    """Decode a sessions row (joined with its last message as lm_*) into a SessionInfo."""
    owner = owner_from_row(row)
    last = None
    if row["last_message_seq"] is not None and row["lm_role"] is not None:
        last = LastMessage(
            seq=int(row["last_message_seq"]),
            role=row["lm_role"],
            content=row["lm_content"],
            ts=row["lm_ts"],
        )
    checkpoint = None
    if row["checkpoint_seq"] is not None:
        checkpoint = CheckpointRef(
            seq=int(row["checkpoint_seq"]), ts=row["checkpoint_ts"], note=row["checkpoint_note"]
        )
    return SessionInfo(
        id=row["id"],
        title=row["title"],
        status=derive_status(row["state"], owner, db_now),
        created_at=row["created_at"],
        last_activity_at=row["last_activity_at"],
        ended_at=row["ended_at"],
        events=int(row["events"]),
        messages=int(row["messages"]),
        last_message=last,
        pending_tool_call=loads(row["pending_tool_call"]),
        checkpoint=checkpoint,
        owner=owner,
        metadata=loads(row["metadata"]) or {},
        epoch=int(row["epoch"]),
    )


def event_from_row(row: Row) -> Event:
    return Event(
        session=row["session"],
        seq=int(row["seq"]),
        id=row["id"],
        ts=row["ts"],
        type=row["type"],
        role=row["role"],
        content=row["content"],
        tool_call=loads(row["tool_call"]),
        tool_call_id=row["tool_call_id"],
        payload=loads(row["payload"]),
    )


def copied_summary_values(
    info: SessionInfo, summary: Summary, checkpoints: Sequence[Checkpoint]
) -> tuple[Any, ...]:
    """Values for a copied session's summary update, in the order both adapters' SQL takes:
    last_seq, events, messages, last_message_seq, last_activity_at, pending_tool_call,
    state, ended_at, checkpoint seq / ts, whether a checkpoint came, its note, the id."""
    latest = checkpoints[-1] if checkpoints else None
    return (
        summary.last_seq,
        summary.events,
        summary.messages,
        summary.last_message_seq,
        max(summary.last_activity_at, info.last_activity_at),
        dumps(summary.pending_tool_call),
        info.status.value if info.status.value in ("ended", "abandoned") else "open",
        info.ended_at,
        latest.seq if latest else None,
        latest.ts if latest else None,
        latest is not None,
        latest.note if latest else None,
        info.id,
    )
