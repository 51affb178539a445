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
