"""The seed design's names, backed by memctl's store.

The chapter memctl grew from describes a ``PersistentMemorySystem`` over
working memory (RAM), episodic memory (events) and semantic memory (facts),
a ``SessionStore``, an async ``EpisodeStorage`` with a PostgreSQL
implementation, and a ``CheckpointManager``. Code written against those
listings runs against memctl by changing its imports; underneath, every
message is an ordinary memctl event, so ``memctl show``, ``resume``,
``recover`` and ``search`` see it too.

Mapping: an episode of type ``session_<role>`` with payload
``{"content", "tool_call"}`` is a memctl *message* with that role; any other
episode type is a memctl event of that type carrying the payload.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from . import core
from .core import Memory, fact_key
from .errors import MemoryClosed, StorageUnavailable
from .ids import parse_ts
from .inputs import Cleaned, event_from_mapping
from .models import ROLES, Event, Fact, FactChange, JsonObject, NewEvent, Status
from .storage import Writer
from .working import Message, WorkingMemory, call_id

MESSAGE_PREFIX = "session_"

__all__ = [
    "CheckpointManager",
    "EpisodeEvent",
    "EpisodicMemory",
    "PersistentMemorySystem",
    "SemanticMemory",
    "SessionStore",
    "WorkingMemory",
]


@dataclass(frozen=True)
class EpisodeEvent:
    """One episodic event as the seed names it."""

    timestamp: datetime
    event_type: str
    payload: JsonObject
    session_id: str
    # memctl's position of the event in its session (None until stored).
    seq: int | None = field(default=None, compare=False)

    @classmethod
    def from_event(cls, event: Event) -> EpisodeEvent:
        if event.type == "message" and event.role:
            # The episode's other keys ride in the event's payload; the
            # message's own content wins over a payload key of that name.
            payload: JsonObject = dict(event.payload or {})
            payload["content"] = _episode_content(event.content, payload)
            payload["tool_call"] = event.tool_call
            if event.tool_call_id is not None:
                payload["tool_call_id"] = event.tool_call_id
            return cls(
                parse_ts(event.ts), MESSAGE_PREFIX + event.role, payload, event.session, event.seq
            )
        return cls(parse_ts(event.ts), event.type, event.payload or {}, event.session, event.seq)


# Marks a message episode whose content was not text (stored as JSON text).
_JSON_CONTENT = "memctl_content_is_json"


def _episode_content(text: str | None, payload: JsonObject) -> Any:
    """A message episode's content as saved: its text, or the JSON value that text holds.

    Takes ``_JSON_CONTENT`` out of ``payload``. The value is used only when
    the text is exactly its JSON form, so a payload key cannot stand in for
    the message's own content. (An earlier memctl kept the value in the
    payload's ``content`` too, without the marker: that value is read back.)
    """
    marked = payload.pop(_JSON_CONTENT, None) is True
    if text is None:
        return None
    kept = payload.get("content")
    if kept is not None and not isinstance(kept, str) and _json_text(kept) == text:
        return kept
    if marked:
        try:
            value = json.loads(text)
        except ValueError:
            return text
        if _json_text(value) == text:
            return value
    return text


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def episode_to_new_event(
    event_type: str,
    payload: JsonObject | None,
    *,
    ts: datetime | None = None,
    id: str | None = None,
) -> NewEvent:
    """Translate a seed-style episode into a validated memctl event."""
    payload = dict(payload or {})
    if ts is not None and ts.tzinfo is None:
        ts = ts.astimezone()  # a naive time is local time, as Python reads it
    data: dict[str, Any] = {"id": id, "ts": ts.isoformat() if ts else None}
    role = event_type[len(MESSAGE_PREFIX) :] if event_type.startswith(MESSAGE_PREFIX) else None
    if role in ROLES:
        content = payload.pop("content", None)
        payload.pop(_JSON_CONTENT, None)  # memctl's own mark, set below only
        if content is not None and not isinstance(content, str):
            # A message's content is text (searched, shown, sent to a model):
            # it is stored as its JSON text, marked so that the episode reads
            # back as it was saved.
            payload[_JSON_CONTENT] = True
            content = _json_text(content)
        data.update(
            role=role,
            content=content,
            tool_call=payload.pop("tool_call", None),
            tool_call_id=payload.pop("tool_call_id", None),
            payload=payload or None,
        )
    else:
        data.update(type=event_type, payload=payload or None)
    # The seed's WorkingMemory has no tool_call_id: its tool results name no call.
    return event_from_mapping(data, Cleaned(), chat_rules=False)


def _turn_after(turn: list[str], previous: Message | None, message: Message) -> list[str]:
    """The open calls of the latest turn once ``message`` follows ``previous`` (see
    save_session): a call after anything but a call starts a new turn, a result takes its
    call out (the first open one with its id: results come in call order), and any other
    message ends the turn."""
    if message.role == "assistant" and message.tool_call is not None:
        same_turn = previous is not None and previous.role == "assistant" and previous.tool_call
        return [*(turn if same_turn else []), call_id(message.tool_call, message.seq)]
    if message.role == "tool":
        if message.tool_call_id in turn:
            turn = list(turn)
            turn.remove(message.tool_call_id)
        return turn
    return []


def _writer(memory: Memory, session_id: str) -> Writer:
    # The seed's calls name sessions by id. If this process claimed the session
    # (welcome_back, resume, start, attach) they write with that claim, so a
    # takeover fences them; else they write as the command line does.
    return memory.writer_for(session_id)


class EpisodicMemory:
    """Episodic memory: an append-only log of events per session."""

    def __init__(self, memory: Memory | None = None) -> None:
        self.memory = memory or core.open()
        self.opened_memory = memory is None  # PersistentMemorySystem.close() closes it

    def record(
        self,
        event_type: str,
        payload: JsonObject | None,
        session_id: str,
        *,
        id: str | None = None,
    ) -> int:
        """Record an event (``session_<role>`` for a message); returns its seq."""
        event = episode_to_new_event(event_type, payload, id=id)
        return self.memory.record(session_id, [event], _writer(self.memory, session_id))[0]

    def get_session(self, session_id: str) -> list[EpisodeEvent]:
        """Every event of a session, in order."""
        return [EpisodeEvent.from_event(e) for e in self.memory.store.events(session_id)]


class SemanticMemory:
    """Semantic memory: facts, optionally keyed, with tags and a change history."""

    def __init__(self, memory: Memory | None = None) -> None:
        self.memory = memory or core.open()
        self.opened_memory = memory is None  # PersistentMemorySystem.close() closes it

    def add(
        self,
        text: str,
        *,
        key: str | None = None,
        tags: Sequence[str] | None = None,
        session_id: str | None = None,
        seq: int | None = None,
    ) -> Fact:
        """Add a fact; with a ``key`` that exists already, update it (history kept).

        Without ``tags`` an updated fact keeps its own.
        """
        return self.memory.add_fact(text, key=key, tags=tags, session_id=session_id, seq=seq)

    def update(self, key: str, text: str, *, tags: Sequence[str] | None = None) -> Fact:
        """Change the text of the fact with ``key`` (its tags too, if given)."""
        return self.add(text, key=key, tags=tags)

    def get(self, key: str) -> Fact | None:
        return self.memory.store.get_fact(fact_key(key))

    def list(self, *, tag: str | None = None, limit: int | None = None) -> list[Fact]:
        return self.memory.store.facts(tag=tag, limit=limit)

    def history(self, key: str) -> builtins.list[FactChange]:
        return self.memory.store.fact_history(fact_key(key))

    def search(self, query: str, limit: int = 10) -> builtins.list[Fact]:
        return self.memory.search_facts(query, limit=limit)

    def forget(self, key: str) -> bool:
        """Remove a fact for good; False if there was none."""
        return self.memory.store.forget_fact(fact_key(key)) is not None


class SessionStore:
    """Durable snapshots of working memory, kept as memctl checkpoints."""

    def __init__(self, memory: Memory | None = None) -> None:
        self.memory = memory or core.open()
        self.opened_memory = memory is None  # PersistentMemorySystem.close() closes it

    def save(self, session_id: str, working: WorkingMemory) -> None:
        """Mark the session's log as holding ``working``: a checkpoint at its current seq.

        An empty working memory of a session never recorded has nothing to
        mark: no session is made for it.
        """
        if not working.messages and self.memory.store.get_session(session_id) is None:
            return
        self.memory.checkpoint(
            session_id,
            _writer(self.memory, session_id),
            {"working_memory": {"messages": len(working.messages)}},
            "working memory saved",
        )

    def load(self, session_id: str) -> WorkingMemory:
        """The working memory as of the session's log (every message, in order)."""
        return WorkingMemory.from_events(self.memory.store.events(session_id, messages_only=True))


class PersistentMemorySystem:
    """The three tiers and the session store, made durable together."""

    def __init__(
        self,
        working: WorkingMemory,
        episodic: EpisodicMemory,
        semantic: SemanticMemory,
        session_store: SessionStore,
    ) -> None:
        self.working = working
        self.episodic = episodic
        self.semantic = semantic
        self.session_store = session_store
        self._lock = threading.Lock()
        # Messages this object has stored, per session: part of each new
        # message's idempotency key (see save_session).
        self._stored: dict[str, int] = {}
        self._opened: Memory | None = None  # what open() opened, for close()

    @classmethod
    def open(cls, url: str | None = None) -> PersistentMemorySystem:
        """All four parts over one memctl database."""
        memory = core.open(url)
        system = cls(
            WorkingMemory(), EpisodicMemory(memory), SemanticMemory(memory), SessionStore(memory)
        )
        system._opened = memory
        return system

    def close(self) -> None:
        """Close the databases this system or its parts opened; a ``Memory`` passed in stays open."""
        if self._opened is not None:
            self._opened.close()
        for part in (self.episodic, self.semantic, self.session_store):
            if part.opened_memory:
                part.memory.close()

    def __enter__(self) -> PersistentMemorySystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def save_session(self, session_id: str) -> None:
        """Persist working memory to episodic storage; saving twice stores nothing twice.

        Messages that came from the store (they carry a seq) are skipped; new
        ones get an idempotency key derived from their place, their content and
        how many messages this object has stored in the session, so a save
        interrupted half way and repeated stores each message once, while the
        same text at the same place after ``working.clear()`` is a new message.
        """
        with self._lock:
            messages = self.working.messages
            # The calls of the latest turn (the assistant's calls since the last
            # other message or result) that no result has answered yet, in order.
            turn: list[str] = []
            previous: Message | None = None
            for index, message in enumerate(messages):
                if message.seq is None:
                    key = _message_key(session_id, index, self._stored.get(session_id, 0), message)
                    answers = message.tool_call_id
                    if message.role == "tool" and answers is None and turn:
                        # The seed's tool results name no call: they answer the
                        # turn's open calls in the order the calls were made (as
                        # chat APIs list results), or the session would show
                        # those calls as interrupted forever. An older call left
                        # open (its tool failed) is not theirs.
                        answers = turn[0]
                    payload = {"content": message.content, "tool_call": message.tool_call}
                    if answers is not None:
                        payload["tool_call_id"] = answers
                    seq = self.episodic.record(
                        MESSAGE_PREFIX + message.role, payload, session_id, id=key
                    )
                    message = messages[index] = replace(message, seq=seq, tool_call_id=answers)
                    self._stored[session_id] = self._stored.get(session_id, 0) + 1
                turn = _turn_after(turn, previous, message)
                previous = message
            self.session_store.save(session_id, self.working)

    def load_session(self, session_id: str) -> WorkingMemory:
        """Restore working memory from episodic storage, in time order."""
        restored = WorkingMemory()
        events = self.episodic.get_session(session_id)
        for event in sorted(events, key=lambda e: (e.timestamp, e.seq or 0)):
            if event.event_type.startswith(MESSAGE_PREFIX):
                role = event.event_type[len(MESSAGE_PREFIX) :]
                restored.messages.append(
                    Message(
                        role=role,
                        content=event.payload.get("content"),
                        tool_call=event.payload.get("tool_call"),
                        tool_call_id=event.payload.get("tool_call_id"),
                        seq=event.seq,
                        ts=event.timestamp.isoformat(),
                    )
                )
        return restored


def _message_key(session_id: str, index: int, stored: int, message: Message) -> str:
    body = json.dumps(
        [
            session_id,
            index,
            stored,
            message.role,
            message.content,
            message.tool_call,
            message.tool_call_id,
        ],
        ensure_ascii=False,
        sort_keys=True,
    )
    return "w_" + hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class CheckpointManager:
    """Save the session every ``interval`` tool calls and, if ``seconds`` is set,
    at least every ``seconds`` while the agent runs (from a background thread).

    A timed save that fails because the database is out of reach (a restart,
    a network blip, a lock held too long) is retried at the next tick, with a
    warning. One that fails for good (the session was taken over: FencedOut)
    stops the timer, and the agent's next ``on_tool_executed`` raises that
    error, so the agent hears about it instead of saving nothing unawares.
    """

    def __init__(
        self, memory_system: PersistentMemorySystem, interval: int = 5, seconds: float | None = None
    ) -> None:
        if interval < 1:
            raise ValueError("interval must be at least 1")
        if seconds is not None and seconds <= 0:
            raise ValueError("seconds must be positive")
        self.memory_system = memory_system
        self.interval = interval
        self.seconds = seconds
        self._call_count = 0
        self._dirty = False
        self._session_id: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._failure: BaseException | None = None  # what stopped the timer

    def on_tool_executed(self, session_id: str) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            # Said once; the timer starts again below and, if the cause is
            # still there, hands the next failure over the same way.
            self._timer = None
            raise failure
        with self._lock:
            self._call_count += 1
            self._session_id = session_id
            self._dirty = True
            due = self._call_count % self.interval == 0
        if due:
            self._save(session_id)
        if self.seconds is not None and self._timer is None:
            self._timer = threading.Thread(
                target=self._tick, name="memctl-checkpoints", daemon=True
            )
            self._timer.start()

    def _save(self, session_id: str) -> None:
        with self._lock:
            self._dirty = False
        try:
            self.memory_system.save_session(session_id)
        except BaseException:
            with self._lock:
                self._dirty = True  # still to save
            raise

    def _tick(self) -> None:
        assert self.seconds is not None
        while not self._stop.wait(self.seconds):
            with self._lock:
                session_id, dirty = self._session_id, self._dirty
            if session_id is None or not (dirty or _unsaved(self.memory_system.working)):
                continue
            try:
                if _finished(self.memory_system, session_id):
                    # Ended or abandoned since the last tool call: what the
                    # working memory holds now belongs to whatever the agent
                    # does next, and saving it here would reopen the session.
                    with self._lock:
                        if self._session_id == session_id:
                            self._session_id = None
                    continue
                self._save(session_id)
            except MemoryClosed:
                return  # the system was closed: nothing more to save
            except StorageUnavailable as error:
                warnings.warn(
                    f"memctl: a timed checkpoint of {session_id} failed ({error}); "
                    f"trying again in {self.seconds:g} s",
                    RuntimeWarning,
                    stacklevel=1,
                )
            except BaseException as error:  # handed to the agent's thread
                self._failure = error
                return

    def close(self) -> None:
        """Stop the time trigger (the process exiting stops it too)."""
        self._stop.set()

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _finished(system: PersistentMemorySystem, session_id: str) -> bool:
    info = system.episodic.memory.store.get_session(session_id)
    return info is not None and info.status in (Status.ENDED, Status.ABANDONED)


def _unsaved(working: WorkingMemory) -> bool:
    return any(message.seq is None for message in working.messages)
