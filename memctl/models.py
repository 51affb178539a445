"""The records memctl stores and returns, as frozen dataclasses.

Every ``to_dict`` produces exactly the JSON shape fixed in PRODUCT.md; the
command line prints these dictionaries and scripts depend on them, so add keys
only with care and never rename one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

JsonObject = dict[str, Any]

ROLES = ("user", "assistant", "system", "tool")


class Status(str, Enum):
    """A session's status, derived from its stored state and its owner's liveness."""

    ACTIVE = "active"
    INCOMPLETE = "incomplete"
    ENDED = "ended"
    ABANDONED = "abandoned"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class NewEvent:
    """A validated event on its way into the store (``seq`` is not known yet)."""

    type: str
    role: str | None = None
    content: str | None = None
    tool_call: JsonObject | None = None
    tool_call_id: str | None = None
    payload: JsonObject | None = None
    # Caller-chosen idempotency key; memctl generates one when it is None.
    id: str | None = None
    # Caller-supplied time (already normalised to memctl's format); None means now.
    ts: str | None = None


@dataclass(frozen=True)
class Event:
    """One entry of a session's append-only log."""

    session: str
    seq: int
    id: str
    ts: str
    type: str
    role: str | None
    content: str | None
    tool_call: JsonObject | None
    tool_call_id: str | None
    payload: JsonObject | None

    @property
    def is_message(self) -> bool:
        return self.type == "message"

    def to_dict(self) -> JsonObject:
        return {
            "session": self.session,
            "seq": self.seq,
            "id": self.id,
            "ts": self.ts,
            "type": self.type,
            "role": self.role,
            "content": self.content,
            "tool_call": self.tool_call,
            "tool_call_id": self.tool_call_id,
            "payload": self.payload,
        }


_new_object = object.__new__


def event_from_values(
    session: str,
    seq: int,
    id: str,
    ts: str,
    type: str,
    role: str | None,
    content: str | None,
    tool_call: JsonObject | None,
    tool_call_id: str | None,
    payload: JsonObject | None,
) -> Event:
    """Build an ``Event`` fast, for reads of thousands of rows.

    A frozen dataclass's ``__init__`` sets every field through
    ``object.__setattr__``; filling ``__dict__`` directly makes the same
    object (equal, hashable, frozen against later assignment) in a third of
    the time, which is a tenth of a 10,000-message resume.
    """
    event: Event = _new_object(Event)
    fields = event.__dict__
    fields["session"] = session
    fields["seq"] = seq
    fields["id"] = id
    fields["ts"] = ts
    fields["type"] = type
    fields["role"] = role
    fields["content"] = content
    fields["tool_call"] = tool_call
    fields["tool_call_id"] = tool_call_id
    fields["payload"] = payload
    return event


@dataclass(frozen=True)
class LastMessage:
    """The newest message of a session, kept in its summary row."""

    seq: int
    role: str
    content: str | None
    ts: str

    def to_dict(self) -> JsonObject:
        return {"seq": self.seq, "role": self.role, "content": self.content, "ts": self.ts}


@dataclass(frozen=True)
class CheckpointRef:
    """Where the latest checkpoint of a session sits."""

    seq: int
    ts: str
    note: str | None

    def to_dict(self) -> JsonObject:
        return {"seq": self.seq, "ts": self.ts, "note": self.note}


@dataclass(frozen=True)
class Owner:
    """The process responsible for a session.

    ``start_time`` (clock ticks since boot, from /proc) and ``boot_id`` tell a
    live owner from a dead one whose pid was reused; ``lease_until`` (seconds
    since the epoch, by the database clock) is what other hosts go by.
    """

    host: str
    pid: int
    start_time: int | None = None
    boot_id: str | None = None
    lease_until: float | None = None

    def to_dict(self) -> JsonObject:
        return {"host": self.host, "pid": self.pid}


@dataclass(frozen=True)
class SessionInfo:
    """A session's summary: what ``list`` shows and ``--json`` prints."""

    id: str
    title: str | None
    status: Status
    created_at: str
    last_activity_at: str
    ended_at: str | None
    events: int
    messages: int
    last_message: LastMessage | None
    pending_tool_call: JsonObject | None
    checkpoint: CheckpointRef | None
    owner: Owner | None
    metadata: JsonObject = field(default_factory=dict)
    # The fencing epoch: raised by every claim. Not part of the JSON shape.
    epoch: int = 0

    def to_dict(self) -> JsonObject:
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status.value,
            "created_at": self.created_at,
            "last_activity_at": self.last_activity_at,
            "ended_at": self.ended_at,
            "events": self.events,
            "messages": self.messages,
            "last_message": self.last_message.to_dict() if self.last_message else None,
            "pending_tool_call": self.pending_tool_call,
            "checkpoint": self.checkpoint.to_dict() if self.checkpoint else None,
            "owner": self.owner.to_dict() if self.owner else None,
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class Checkpoint:
    """A durable marker at a seq, with the agent state saved there."""

    session: str
    seq: int
    id: str
    ts: str
    note: str | None
    state: Any

    def to_dict(self) -> JsonObject:
        return {
            "session": self.session,
            "seq": self.seq,
            "id": self.id,
            "ts": self.ts,
            "note": self.note,
            "state": self.state,
        }


@dataclass(frozen=True)
class Resumed:
    """What resume gives back: the session, its latest checkpoint and its messages."""

    session: SessionInfo
    checkpoint: Checkpoint | None
    messages: list[Event]

    def to_dict(self) -> JsonObject:
        return {
            "session": self.session.to_dict(),
            "checkpoint": self.checkpoint.to_dict() if self.checkpoint else None,
            "messages": [m.to_dict() for m in self.messages],
        }


@dataclass(frozen=True)
class Fact:
    """An entry of semantic memory: text, an optional unique key, tags, and its source."""

    id: str
    key: str | None
    text: str
    tags: list[str]
    session: str | None
    seq: int | None
    created_at: str
    updated_at: str

    def to_dict(self) -> JsonObject:
        return {
            "id": self.id,
            "key": self.key,
            "text": self.text,
            "tags": list(self.tags),
            "session": self.session,
            "seq": self.seq,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class FactChange:
    """One entry of a fact's history: ADD, UPDATE or DELETE, with what it held then."""

    fact: str
    key: str | None
    action: str
    text: str | None
    tags: list[str]
    ts: str

    def to_dict(self) -> JsonObject:
        return {
            "fact": self.fact,
            "key": self.key,
            "action": self.action,
            "text": self.text,
            "tags": list(self.tags),
            "ts": self.ts,
        }
