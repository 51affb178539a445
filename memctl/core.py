"""The library: ``Memory`` (a store plus the rules) and ``Session`` (a claimed writer).

The command line is a thin layer over these; anything a command can do, a
Python agent can do with the same call.
"""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from .errors import (
    AmbiguousSession,
    BadInput,
    MemoryClosed,
    NotFound,
    SessionNotFound,
    StorageUnavailable,
)
from .ids import new_id, parse_when
from .inputs import Cleaned, check_size, clean_value, event_from_mapping, max_event_bytes
from .models import (
    ROLES,
    Checkpoint,
    Event,
    Fact,
    JsonObject,
    NewEvent,
    Resumed,
    SessionInfo,
    Status,
)
from .owners import Identity, cli_owner_pid, env_epoch
from .storage import Progress, SearchFilters, Store, Writer, open_store

if TYPE_CHECKING:
    from .search import SearchHit
from .working import WorkingMemory, call_id

MIN_PREFIX = 4
MAX_SESSION_ID = 200
# How far back from the end of the log to look for tool calls left unanswered.
PENDING_SCAN = 500
# A fact's key or tag: at most 4 bytes a character keeps it within
# PostgreSQL's limit for an index entry.
MAX_KEY_LENGTH = 500
INTERRUPTED_RESULT = (
    "[memctl] Interrupted: the agent stopped before this tool call returned. "
    "Its result is unknown; run the tool again if it is still needed."
)


def check_session_id(session_id: str) -> str:
    """A caller-chosen id: 1 to 200 printable characters."""
    if not 0 < len(session_id) <= MAX_SESSION_ID or not session_id.isprintable():
        raise BadInput(f"a session id must be 1 to {MAX_SESSION_ID} printable characters")
    return session_id


def unanswered_tool_calls(events: list[Event]) -> list[tuple[str, int]]:
    """The id and seq of each tool call in ``events`` no later ``tool`` message answers, in order.

    A call recorded without an id goes by ``call_<seq>`` (``working.call_id``),
    as in ``resume --format openai``, so it is answered under that id.
    """
    pending: list[tuple[str, int]] = []
    for event in events:
        if event.type != "message":
            continue
        if event.role == "assistant" and event.tool_call:
            pending.append((call_id(event.tool_call, event.seq), event.seq))
        elif event.role == "tool" and event.tool_call_id:
            # A result answers the latest open call with its id (ids can repeat).
            for index in range(len(pending) - 1, -1, -1):
                if pending[index][0] == event.tool_call_id:
                    del pending[index]
                    break
    return pending


def open(
    url: str | None = None, *, durability: str = "normal", progress: Progress | None = None
) -> Memory:
    """Open memctl's store: ``url`` (a path, ``sqlite:///...`` or ``postgresql://...``),
    else ``MEMCTL_DB``, else the default file under the user data dir.

    ``durability="full"`` syncs every commit to disk; ``progress(done, total)``
    hears about long migrations.
    """
    return Memory(open_store(url, durability=durability, progress=progress))


@dataclass(frozen=True)
class Recorded:
    """The outcome of recording a batch: seqs stored, characters normalised."""

    seqs: list[int]
    replaced: int


class Memory:
    """A memctl database: sessions, their events, checkpoints."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._live: weakref.WeakSet[Session] = weakref.WeakSet()
        # The latest claim this process took on each session through this
        # Memory (start, claim, resume, attach), for writes that name a
        # session by id only (the seed's classes, end()).
        self._claims: dict[str, Writer] = {}
        # MEMCTL_MAX_EVENT_BYTES, read on the first record: a lookup in
        # os.environ costs more than the rest of the size check.
        self._event_limit: int | None = None

    def __enter__(self) -> Memory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the sessions' heartbeats and close the database; closing twice is harmless.

        Any later use raises ``MemoryClosed``: the driver's own error would be
        an obscure one on SQLite, and PostgreSQL would quietly connect again.
        """
        if isinstance(self.store, _Closed):
            return
        for session in list(self._live):
            session.stop()
        store, self.store = self.store, cast(Store, _Closed())
        store.close()

    # -- finding sessions ------------------------------------------------
    def resolve(self, ref: str | None = None, *, last: bool = False) -> str:
        """Turn a full id, a unique prefix (4+ characters) or ``last`` into a session id."""
        if last or ref is None:
            if not last:
                raise BadInput("no session given: pass SESSION, --last, or set MEMCTL_SESSION")
            latest = self.store.latest_session_id()
            if latest is None:
                raise SessionNotFound("there are no sessions yet")
            return latest
        if self.store.get_session(ref) is not None:
            return ref
        if len(ref) < MIN_PREFIX:
            raise SessionNotFound(
                f"no session {ref!r} (a prefix needs at least {MIN_PREFIX} characters)"
            )
        matches = self.store.find_sessions(ref, limit=11)
        if not matches:
            raise SessionNotFound(f"no session matches {ref!r}; see 'memctl list'")
        if len(matches) > 1:
            shown = ", ".join(matches[:10]) + (", ..." if len(matches) > 10 else "")
            raise AmbiguousSession(f"{ref!r} matches several sessions: {shown}")
        return matches[0]

    def get(self, session_id: str) -> SessionInfo:
        found = self.store.get_session(session_id)
        if found is None:
            raise SessionNotFound(f"no session {session_id}")
        return found

    def sessions(
        self,
        *,
        status: Status | str | None = None,
        since: str | None = None,
        limit: int | None = None,
    ) -> list[SessionInfo]:
        """Sessions, newest activity first.

        ``status`` is a ``Status`` or its value (``"incomplete"``); ``since``
        an ISO date or time or an age (``"2h"``), as on the command line.
        """
        if isinstance(status, str) and not isinstance(status, Status):
            try:
                status = Status(status)
            except ValueError:
                choices = ", ".join(s.value for s in Status)
                raise BadInput(f"status must be one of {choices}, not {status!r}") from None
        return self.store.sessions(status=status, since=_when(since), limit=_count(limit, "limit"))

    def incomplete(self, limit: int | None = None) -> list[SessionInfo]:
        """Sessions left unfinished by a process that is gone, newest first."""
        return self.sessions(status=Status.INCOMPLETE, limit=limit)

    def events(
        self, session_id: str, *, after_seq: int = 0, tail: int | None = None
    ) -> list[Event]:
        self.get(session_id)
        return self.store.events(session_id, after_seq=after_seq, tail=_count(tail, "tail"))

    # -- writing -----------------------------------------------------------
    def start(
        self,
        title: str | None = None,
        *,
        session_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        owner_pid: int | None = None,
    ) -> Session:
        """Open a new session owned by this process (or ``owner_pid``).

        When this process is the owner, a background thread keeps the lease
        alive until the session ends or the process exits.
        """
        if title is not None and not isinstance(title, str):
            raise BadInput(f"title must be a string, not {type(title).__name__}")
        writer = Writer(Identity.of(owner_pid if owner_pid is not None else os.getpid()))
        info = self.store.create_session(
            check_session_id(session_id) if session_id is not None else new_id("s"),
            clean_value(title, "title") if title else title,
            clean_value(dict(metadata or {}), "metadata"),
            writer,
        )
        return self._session(info.id, Writer(writer.identity, info.epoch), info.events)

    def writer_for(self, session_id: str) -> Writer:
        """How this process writes to ``session_id``.

        With the claim it took through this Memory, so that a takeover fences
        those writes too; else as a plain writer without an epoch, as the
        command line writes.
        """
        return self._claims.get(session_id) or Writer(Identity.of(os.getpid()))

    def _session(self, session_id: str, writer: Writer, stored: int) -> Session:
        self._claims[session_id] = writer
        session = Session(self, session_id, writer, stored)
        if writer.identity.pid == os.getpid():
            session.keep_alive()
            self._live.add(session)
        return session

    def record(self, session_id: str, events: list[NewEvent], writer: Writer) -> list[int]:
        """Append already-validated events for ``writer``; returns their seqs."""
        check_session_id(session_id)
        limit = self._event_limit
        if limit is None:
            limit = self._event_limit = max_event_bytes()
        for event in events:
            check_size(event, limit)
        return self.store.append(session_id, events, writer)

    def checkpoint(
        self, session_id: str, writer: Writer, state: Any = None, note: str | None = None
    ) -> Checkpoint:
        self.get(session_id)
        state = clean_value(state, "state")
        if note is not None:
            if not isinstance(note, str):
                raise BadInput(f"note must be a string, not {type(note).__name__}")
            note = clean_value(note, "note")
        return self.store.checkpoint(session_id, state, note, writer)

    def end(
        self, session_id: str, writer: Writer | None = None, *, abandon: bool = False
    ) -> SessionInfo:
        """End (or abandon) a session; ``writer`` defaults to ``writer_for(session_id)``."""
        writer = writer or self.writer_for(session_id)
        return self.store.end_session(session_id, "abandoned" if abandon else "ended", writer)

    # -- facts -------------------------------------------------------------
    def add_fact(
        self,
        text: str,
        *,
        key: str | None = None,
        tags: Sequence[str] | None = None,
        session_id: str | None = None,
        seq: int | None = None,
    ) -> Fact:
        """Add a fact to semantic memory, or update the fact with ``key``.

        ``tags=None`` keeps an updated fact's tags (a new fact gets none);
        a list replaces them.
        """
        text = clean_value(text, "fact")
        if not isinstance(text, str) or not text.strip():
            raise BadInput("a fact needs some text")
        if key is not None:
            key = fact_key(key)
        if tags is None:
            current = self.store.get_fact(key) if key is not None else None
            tags = current.tags if current is not None and current.key == key else ()
        if isinstance(tags, str) or any(not isinstance(tag, str) for tag in tags):
            raise BadInput("tags must be a list of strings (tags=['billing'], not tags='billing')")
        tags = [str(clean_value(tag, "tag")) for tag in tags]
        if any(not tag.strip() for tag in tags):
            raise BadInput("a tag cannot be empty")
        # Keys are indexed: PostgreSQL refuses an index entry over about 2.7 kB,
        # so both backends hold keys to a length that fits in any encoding.
        if key is not None and len(key) > MAX_KEY_LENGTH:
            raise BadInput(f"a fact's key is at most {MAX_KEY_LENGTH} characters")
        if any(len(tag) > MAX_KEY_LENGTH for tag in tags):
            raise BadInput(f"a tag is at most {MAX_KEY_LENGTH} characters")
        if session_id is not None:
            check_session_id(session_id)
        if seq is not None:
            # The source is a link to follow (show SESSION --around SEQ):
            # refuse one that leads nowhere.
            if session_id is None:
                raise BadInput("a fact's seq names an event of a session: give the session too")
            if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
                raise BadInput("seq must be a positive integer")
            events = self.get(session_id).events
            if seq > events:
                raise NotFound(f"session {session_id} has no event {seq} (it has {events})")
        fact, _ = self.store.put_fact(text, key=key, tags=tags, session=session_id, seq=seq)
        return fact

    # -- search ------------------------------------------------------------
    def search(
        self,
        query: str,
        *,
        session_id: str | None = None,
        role: str | None = None,
        type: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 20,
        order: str = "rank",
    ) -> list[SearchHit]:
        """Full-text search over every event: words ANDed, "a phrase", prefix*, OR, -word.

        Hits come best first (``order="recent"``: newest first) with a snippet
        in which matches sit between private markers (``SearchHit.to_dict``
        turns them into ``[`` ``]``). ``since`` and ``until`` are ISO dates or
        times or ages (``"7d"``), as on the command line.
        """
        if role is not None and role not in ROLES:
            raise BadInput(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if order not in ("rank", "recent"):
            raise BadInput(f"order must be 'rank' or 'recent', not {order!r}")
        count = check_count(limit, "limit")
        filters = SearchFilters(session_id, role, type, _when(since), _when(until), count, order)
        return self.store.search(query, filters)

    def recent_events(self, limit: int) -> list[Event]:
        """The newest events across every session, newest first."""
        return self.store.recent_events(check_count(limit, "limit"))

    def search_events(self, query: str, *, limit: int = 20) -> list[Event]:
        """The events behind the best ``limit`` hits for ``query``, best first."""
        hits = self.search(query, limit=limit)
        return self.store.get_events([(hit.session, hit.seq) for hit in hits])

    def search_facts(self, query: str, *, limit: int = 10) -> list[Fact]:
        """Facts matching ``query``, best first (memctl's query language)."""
        return self.store.search_facts(query, limit=limit)

    def abandon(self, session_id: str) -> SessionInfo:
        """Mark a session abandoned on a person's word: it is not offered for recovery again."""
        return self.end(session_id, abandon=True)

    # -- resuming ----------------------------------------------------------
    def restore(self, session_id: str, *, since_checkpoint: bool = False) -> Resumed:
        """Read a session back: its summary, latest checkpoint and messages. Claims nothing."""
        info = self.get(session_id)
        checkpoint = self.store.latest_checkpoint(session_id)
        after = checkpoint.seq if (since_checkpoint and checkpoint) else 0
        messages = self.store.events(session_id, after_seq=after, messages_only=True)
        if after:
            messages = self._with_calls_answered(session_id, after, messages)
        return Resumed(info, checkpoint, messages)

    def _with_calls_answered(
        self, session_id: str, after: int, messages: list[Event]
    ) -> list[Event]:
        """``messages`` reaching back to the calls their first tool results answer.

        A checkpoint taken between a tool call and its result would otherwise
        start the list with a result whose call is missing, which a chat API
        refuses.
        """
        called = {
            call_id(m.tool_call, m.seq) for m in messages if m.role == "assistant" and m.tool_call
        }
        orphans = {
            m.tool_call_id
            for m in messages
            if m.role == "tool" and m.tool_call_id and m.tool_call_id not in called
        }
        if not orphans:
            return messages
        earlier = self.store.events(
            session_id, after_seq=max(after - PENDING_SCAN, 0), messages_only=True
        )
        starts = [
            m.seq
            for m in earlier
            if m.seq <= after
            and m.role == "assistant"
            and m.tool_call
            and call_id(m.tool_call, m.seq) in orphans
        ]
        if not starts:
            return messages  # the call is further back than memctl looks
        return [m for m in earlier if m.seq >= min(starts)]

    def claim(
        self,
        session_id: str,
        *,
        owner_pid: int | None = None,
        force: bool = False,
        expected_epoch: int | None = None,
    ) -> Session:
        """Take ownership of a session (raising its epoch) and return a writer for it.

        If the previous owner died inside a tool call, a ``tool`` result saying
        so is appended for each unanswered call, so that the history stays one
        a chat API accepts (every tool call answered, in order).
        """
        writer = Writer(Identity.of(owner_pid if owner_pid is not None else os.getpid()))
        info = self.store.claim(session_id, writer, force=force, expected_epoch=expected_epoch)
        claimed = Writer(writer.identity, info.epoch)
        # Not only when the summary shows a pending call: it tracks the last
        # call alone, and an earlier one can be unanswered too.
        self._answer_interrupted(session_id, claimed)
        return self._session(info.id, claimed, info.events)

    def _answer_interrupted(self, session_id: str, writer: Writer) -> None:
        answers = [
            NewEvent(
                type="message",
                role="tool",
                content=INTERRUPTED_RESULT,
                tool_call_id=call_id,
                payload={"interrupted": True},
                # Deterministic, so two claims never answer the same call twice;
                # the call's seq in it, so a call id used again gets its own.
                id="i_"
                + hashlib.sha256(f"{session_id}\0{call_id}\0{seq}".encode()).hexdigest()[:32],
            )
            for call_id, seq in unanswered_tool_calls(
                self.store.events(session_id, tail=PENDING_SCAN)
            )
        ]
        if answers:
            self.store.append(session_id, answers, writer)

    def attach(self) -> Session:
        """The session ``memctl run`` holds for this process, with its working memory.

        Inside ``memctl run -- python agent.py`` the run has claimed the session
        and passed ``MEMCTL_SESSION``, ``MEMCTL_EPOCH`` and ``MEMCTL_OWNER_PID``
        down; writes through the returned session carry that claim, so they
        are fenced like the run's own (``resume`` here would find the session
        owned by the run). The run keeps the lease alive and ends the session
        when this process exits 0. BadInput outside ``memctl run``.
        """
        session_id = os.environ.get("MEMCTL_SESSION")
        epoch = env_epoch()
        if not session_id or epoch is None:
            raise BadInput(
                "not inside 'memctl run': MEMCTL_SESSION and MEMCTL_EPOCH are not set "
                "(use start() or resume() instead)"
            )
        restored = self.restore(session_id)
        session = self._session(
            session_id, Writer(Identity.of(cli_owner_pid()), epoch), restored.session.events
        )
        session.working = WorkingMemory.from_events(restored.messages)
        session.restored = restored
        return session

    def resume(
        self, session_id: str, *, force: bool = False, since_checkpoint: bool = False
    ) -> tuple[Session, WorkingMemory]:
        """Claim a session for this process and rebuild its working memory.

        The working memory returned is also ``session.working``, so messages
        the agent adds from here on land in the list it resumed with.
        """
        session = self.claim(session_id, force=force)
        restored = self.restore(session_id, since_checkpoint=since_checkpoint)
        session.working = WorkingMemory.from_events(restored.messages)
        session.restored = restored
        return session, session.working


class Session:
    """A session this process writes to, holding the fencing epoch of its claim.

    Once another process claims the session, every write raises ``FencedOut``.
    """

    def __init__(self, memory: Memory, session_id: str, writer: Writer, stored: int = 0) -> None:
        self.memory = memory
        self.id = session_id
        self.writer = writer
        self.working = WorkingMemory()
        # The highest seq known to be stored: a seq at or below it, returned
        # for a caller-chosen id, is an event stored before (a retried call),
        # so it is not added to working memory twice.
        self._stored = stored
        # Held from the append to the working-memory update, so threads that
        # share this Session cannot take each other's new seq for a repeat.
        self._write_lock = threading.Lock()
        # Set when the session was brought back by resume or welcome_back.
        self.restored: Resumed | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def keep_alive(self) -> None:
        """Refresh the lease in the background, a third of the lease apart.

        Hosts other than this one judge liveness by the lease alone, so a
        long tool call must not let it lapse. The thread stops when the
        session ends, when it is fenced out, or with the process.
        """
        if self._heartbeat is not None:
            return
        interval = self.writer.lease_seconds / 3
        self._heartbeat = threading.Thread(
            target=self._beat, args=(interval,), name=f"memctl-heartbeat-{self.id}", daemon=True
        )
        self._heartbeat.start()

    def _beat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.memory.store.touch(self.id, self.writer)
            except StorageUnavailable:
                continue  # a lock held too long, a network blip: try again next beat
            except Exception:
                # Fenced out, session gone, store closed or unreachable: the
                # next real write reports it; a background thread must not.
                return

    def stop(self) -> None:
        """Stop the heartbeat (the session stays open; it becomes incomplete at exit)."""
        self._stop.set()

    def __repr__(self) -> str:
        return f"Session({self.id!r}, epoch={self.epoch})"

    @property
    def epoch(self) -> int:
        return self.writer.epoch or 0

    def _append(self, data: JsonObject) -> tuple[int, bool]:
        """Store one event; its seq, and whether it is new (not a repeated id)."""
        event = event_from_mapping(data, Cleaned())
        seq = self.memory.record(self.id, [event], self.writer)[0]
        if seq <= self._stored:
            return seq, False
        self._stored = seq
        return seq, True

    def add_message(
        self,
        role: str,
        content: str | None,
        *,
        tool_call: JsonObject | None = None,
        tool_call_id: str | None = None,
        id: str | None = None,
    ) -> int:
        """Record a chat message; returns its seq. Durable when this returns.

        With an ``id`` stored before (a retry), the first seq is returned and
        working memory is left as it is.
        """
        data = {
            "role": role,
            "content": content,
            "tool_call": tool_call,
            "tool_call_id": tool_call_id,
            "id": id,
        }
        with self._write_lock:
            seq, new = self._append(data)
            if new:
                self.working.add_message(
                    role, content, tool_call, tool_call_id=tool_call_id, seq=seq
                )
        return seq

    def record(
        self,
        event_type: str,
        payload: JsonObject | None = None,
        *,
        content: str | None = None,
        id: str | None = None,
    ) -> int:
        """Record an episodic event of any type; returns its seq."""
        with self._write_lock:
            seq, _ = self._append(
                {"type": event_type, "payload": payload, "content": content, "id": id}
            )
        return seq

    def checkpoint(self, state: Any = None, note: str | None = None) -> Checkpoint:
        """Save agent state at the current seq; resume hands it back."""
        return self.memory.checkpoint(self.id, self.writer, state, note)

    def info(self) -> SessionInfo:
        return self.memory.get(self.id)

    def events(self) -> list[Event]:
        return self.memory.events(self.id)

    def end(self) -> SessionInfo:
        """Finish the session normally: it will not be offered for recovery."""
        self.stop()
        return self.memory.end(self.id, self.writer)

    def abandon(self) -> SessionInfo:
        """Give the session up: it will not be offered for recovery either."""
        self.stop()
        return self.memory.end(self.id, self.writer, abandon=True)


def _count(value: int | None, name: str) -> int | None:
    """A limit or tail given to the library: None, or a whole number of at least 1."""
    return None if value is None else check_count(value, name)


def check_count(value: int, name: str) -> int:
    """A whole number of at least 1, or BadInput naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadInput(f"{name} must be a whole number of at least 1, not {value!r}")
    return value


class _Closed:
    """The store of a closed Memory: any use raises MemoryClosed."""

    def __getattr__(self, name: str) -> Any:
        raise MemoryClosed()


def _when(text: str | None) -> str | None:
    """A WHEN the library was given, in stored form; BadInput if it is not a time."""
    return parse_when(text) if text is not None else None


def fact_key(ref: str) -> str:
    """A fact key (or id) as stored: NUL and lone surrogates replaced.

    Writes store keys this way, so lookups go through it too: the same key
    then finds the same fact on both backends instead of failing to encode.
    """
    return str(clean_value(ref, "key"))
