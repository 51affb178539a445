"""The Python library's own promises, on both backends: ``Memory`` and ``Session``."""

from __future__ import annotations

import pytest

import memctl
from memctl.core import Memory


def test_retried_message_id_is_stored_and_held_once(memory: Memory) -> None:
    """add_message with an id stored before returns the first seq and adds nothing."""
    session = memory.start(title="retry")
    first = session.add_message("user", "hello", id="m1")
    again = session.add_message("user", "hello", id="m1")
    session.add_message("assistant", "hi", id="m2")
    assert again == first
    assert [m.content for m in session.working] == ["hello", "hi"]
    assert [e.content for e in memory.events(session.id)] == ["hello", "hi"]


def test_retried_id_after_resume_is_not_added_again(db_url: str) -> None:
    """A message id stored before a resume is a repeat for the resumed session too."""
    with memctl.open(db_url) as first:
        old = first.start()
        old.add_message("user", "question", id="q1")
        old.stop()
        session_id = old.id
    with memctl.open(db_url) as later:
        session, working = later.resume(session_id, force=True)
        assert session.add_message("user", "question", id="q1") == 1
        assert [m.content for m in working] == ["question"]
        assert session.add_message("assistant", "answer", id="a1") == 2
        assert [m.content for m in working] == ["question", "answer"]


def test_resume_working_memory_is_the_sessions(memory: Memory) -> None:
    """What resume returns is session.working, so new messages join the resumed list."""
    old = memory.start()
    old.add_message("user", "before")
    old.stop()
    session, working = memory.resume(old.id, force=True)
    assert session.working is working
    assert session.restored is not None and session.restored.session.id == old.id
    session.add_message("assistant", "after")
    assert [m.content for m in working] == ["before", "after"]


def test_closed_memory_says_so(db_url: str) -> None:
    """Any use after close() raises MemoryClosed, on both backends; closing again is fine."""
    memory = memctl.open(db_url)
    session = memory.start()
    session.add_message("user", "kept")
    memory.close()
    memory.close()
    with pytest.raises(memctl.MemoryClosed, match=r"memctl\.open"):
        memory.sessions()
    with pytest.raises(memctl.MemoryClosed):
        session.add_message("user", "after close")
    with memctl.open(db_url) as again:
        assert [e.content for e in again.events(session.id)] == ["kept"]


def test_wrong_argument_types_are_bad_input(memory: Memory) -> None:
    """Values the driver would choke on are BadInput, the same on both backends.

    The ignores mark arguments that are wrong on purpose: untyped callers pass them.
    """
    session = memory.start()
    session.add_message("user", "one")
    for call in (
        lambda: memory.start(title={"a": 1}),  # type: ignore[arg-type]
        lambda: memory.start(session_id=""),
        lambda: session.checkpoint(note={"a": 1}),  # type: ignore[arg-type]
        lambda: memory.sessions(limit=0),
        lambda: memory.sessions(limit=-1),
        lambda: memory.events(session.id, tail=-1),
        lambda: memory.add_fact("text", tags="billing"),
        lambda: memory.search("one", role="bot"),
        lambda: memory.search("one", limit=0),
        lambda: memory.search("one", order="newest"),
        lambda: memory.recent_events(-1),
    ):
        with pytest.raises(memctl.BadInput):
            call()
    assert [e.content for e in memory.events(session.id, tail=1)] == ["one"]


def test_naive_episode_time_is_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A naive datetime in an EpisodeEvent is read as local time, as Python reads it."""
    import time
    from datetime import datetime, timezone

    from memctl.seed import episode_to_new_event

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        naive = datetime(2026, 1, 2, 3, 4, 5)
        event = episode_to_new_event("session_user", {"content": "x"}, ts=naive)
        assert event.ts == "2026-01-02T08:04:05.000000Z"
        aware = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        assert episode_to_new_event("session_user", {"content": "x"}, ts=aware).ts == (
            "2026-01-02T03:04:05.000000Z"
        )
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_session_messages_in_working_carry_their_seq(db_url: str) -> None:
    """Messages a Session stored are not stored again by the seed's save, and keep one call id."""
    from memctl.seed import EpisodicMemory, PersistentMemorySystem, SemanticMemory, SessionStore

    with memctl.open(db_url) as mem:
        session = mem.start(session_id="mix-1")
        system = PersistentMemorySystem(
            session.working, EpisodicMemory(mem), SemanticMemory(mem), SessionStore(mem)
        )
        session.add_message("user", "hello")
        session.add_message("assistant", "", tool_call={"name": "ls", "arguments": {}})
        system.save_session("mix-1")
        assert [e.seq for e in mem.events("mix-1")] == [1, 2]
        live = session.working.to_openai()[1]["tool_calls"][0]["id"]
        resumed = mem.restore("mix-1").messages
        from memctl.working import WorkingMemory

        assert (
            live
            == "call_2"
            == WorkingMemory.from_events(resumed).to_openai()[1]["tool_calls"][0]["id"]
        )
