"""The seed design's listings, typed in, running against memctl's store."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

import memctl
from memctl import sqlite
from memctl.episodes import SQLiteEpisodeStorage
from memctl.errors import BadInput
from memctl.models import NewEvent
from memctl.owners import Identity
from memctl.resume import openai_messages
from memctl.seed import (
    CheckpointManager,
    EpisodeEvent,
    EpisodicMemory,
    PersistentMemorySystem,
    SemanticMemory,
    SessionStore,
)
from memctl.storage import Writer
from memctl.working import WorkingMemory


def _system(url: str) -> PersistentMemorySystem:
    memory = memctl.open(url)
    return PersistentMemorySystem(
        WorkingMemory(), EpisodicMemory(memory), SemanticMemory(memory), SessionStore(memory)
    )


def test_save_then_load_in_new_process(db_url: str) -> None:
    """save_session then load_session in another process returns the same messages."""
    system = _system(db_url)
    call = {"id": "c1", "name": "read_file", "arguments": {"path": "utils.py"}}
    system.working.add_message("user", "Refactor utils.py")
    system.working.add_message("assistant", "Reading it", tool_call=call)
    system.working.add_message("tool", "def f(): ...", tool_call_id="c1")
    system.save_session("seed1")
    loader = textwrap.dedent(
        """
        import json, sys
        from memctl.seed import PersistentMemorySystem
        system = PersistentMemorySystem.open(sys.argv[1])
        wm = system.load_session("seed1")
        print(json.dumps([[m.role, m.content, m.tool_call, m.tool_call_id] for m in wm.messages]))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", loader, db_url], capture_output=True, text=True, check=True
    )
    import json

    assert json.loads(out.stdout) == [
        ["user", "Refactor utils.py", None, None],
        ["assistant", "Reading it", call, None],
        ["tool", "def f(): ...", None, "c1"],
    ]


def test_saving_twice_does_not_duplicate(db_url: str) -> None:
    """The same working memory saved twice stores each message once."""
    system = _system(db_url)
    system.working.add_message("user", "hello")
    system.save_session("seed2")
    system.save_session("seed2")
    system.working.add_message("assistant", "hi")
    system.save_session("seed2")
    assert [e.content for e in system.episodic.memory.events("seed2")] == ["hello", "hi"]


def test_messages_are_memctl_messages(db_url: str) -> None:
    """What the seed records, memctl's own tools see as messages with roles."""
    episodic = EpisodicMemory(memctl.open(db_url))
    episodic.record("session_user", {"content": "hi", "tool_call": None}, "seed3")
    episodic.record("plan_updated", {"steps": 3}, "seed3")
    events = episodic.memory.events("seed3")
    assert (events[0].type, events[0].role, events[0].content) == ("message", "user", "hi")
    assert (events[1].type, events[1].payload) == ("plan_updated", {"steps": 3})
    episodes = episodic.get_session("seed3")
    assert [e.event_type for e in episodes] == ["session_user", "plan_updated"]


def test_checkpoint_manager_interval(db_url: str) -> None:
    """12 tool calls at interval 5 make exactly 2 checkpoints (the 5th and 10th)."""
    system = _system(db_url)
    manager = CheckpointManager(system, interval=5)
    saved_at = []
    for call in range(1, 13):
        system.working.add_message("tool", f"result {call}", tool_call_id=f"c{call}")
        before = system.episodic.memory.store.latest_checkpoint("seed4")
        manager.on_tool_executed("seed4")
        after = system.episodic.memory.store.latest_checkpoint("seed4")
        if after is not None and (before is None or after.id != before.id):
            saved_at.append(call)
    assert saved_at == [5, 10]


def test_checkpoint_manager_time_trigger(db_url: str) -> None:
    """With seconds set, a checkpoint is written by time even without more tool calls."""
    system = _system(db_url)
    with CheckpointManager(system, interval=100, seconds=0.2) as manager:
        system.working.add_message("user", "long task")
        manager.on_tool_executed("seed5")
        deadline = time.monotonic() + 10
        while system.episodic.memory.store.latest_checkpoint("seed5") is None:
            assert time.monotonic() < deadline, "the time trigger never fired"
            time.sleep(0.05)
    assert [e.content for e in system.episodic.memory.events("seed5")] == ["long task"]


def test_time_trigger_leaves_an_ended_session_alone(db_url: str) -> None:
    """After the session ends, the next task's messages are not saved into it (nor reopen it)."""
    system = _system(db_url)
    memory = system.episodic.memory
    with CheckpointManager(system, interval=100, seconds=0.1) as manager:
        system.working.add_message("user", "task A")
        manager.on_tool_executed("seed6")
        deadline = time.monotonic() + 10
        while memory.store.latest_checkpoint("seed6") is None:
            assert time.monotonic() < deadline, "the time trigger never fired"
            time.sleep(0.05)
        memory.end("seed6")
        system.working.add_message("user", "task B")
        time.sleep(0.5)  # several ticks
    assert [e.content for e in memory.events("seed6")] == ["task A"]
    assert memory.get("seed6").status.value == "ended"


def test_save_after_clear_stores_the_same_text_again(db_url: str) -> None:
    """After working.clear(), a message equal to an earlier one is a new message, not a repeat."""
    system = _system(db_url)
    system.working.add_message("user", "yes")
    system.save_session("seed7")
    system.save_session("seed7")  # nothing new: stored once
    system.working.clear()
    system.working.add_message("user", "yes")
    system.save_session("seed7")
    assert [e.content for e in system.episodic.memory.events("seed7")] == ["yes", "yes"]


def test_facts_update_keeps_history(db_url: str) -> None:
    """Updating a keyed fact keeps the old value in its history."""
    semantic = SemanticMemory(memctl.open(db_url))
    semantic.add("The billing service retries 3 times", key="billing.retries", tags=["billing"])
    semantic.update("billing.retries", "The billing service retries 5 times")
    fact = semantic.get("billing.retries")
    assert fact is not None and fact.text.endswith("5 times") and fact.tags == ["billing"]
    # add() with an existing key is an update too, and keeps the tags unless given.
    semantic.add("The billing service retries 6 times", key="billing.retries")
    updated = semantic.get("billing.retries")
    assert updated is not None and updated.tags == ["billing"]
    history = semantic.history("billing.retries")[:2]
    assert [(h.action, h.text) for h in history] == [
        ("ADD", "The billing service retries 3 times"),
        ("UPDATE", "The billing service retries 5 times"),
    ]


def test_forget_removes_fact_and_its_text(db_url: str) -> None:
    """A forgotten fact is gone, its history text scrubbed."""
    semantic = SemanticMemory(memctl.open(db_url))
    semantic.add("api key is in vault path secret/x", key="secret")
    assert semantic.forget("secret")
    assert semantic.get("secret") is None
    assert not semantic.forget("secret")
    history = semantic.history("secret")
    assert [h.action for h in history] == ["ADD", "DELETE"]
    assert all(h.text is None for h in history)


def test_facts_list_by_tag(db_url: str) -> None:
    """list filters by one tag."""
    semantic = SemanticMemory(memctl.open(db_url))
    semantic.add("a", tags=["x", "y"])
    semantic.add("b", tags=["y"])
    semantic.add("c")
    assert sorted(f.text for f in semantic.list(tag="y")) == ["a", "b"]
    assert len(semantic.list()) == 3


def test_library_reads_when_and_status_as_the_cli_does(db_url: str) -> None:
    """since/until take ages and ISO times, status its string value; anything else is BadInput."""
    with memctl.open(db_url) as mem:
        session = mem.start(title="when")
        session.add_message("user", "billing retry question")
        assert [s.id for s in mem.sessions(since="2h")] == [session.id]
        assert mem.sessions(since="2099-01-01") == []
        assert [h.seq for h in mem.search("billing", since="7d")] == [1]
        assert mem.search("billing", until="2000-01-01") == []
        session.end()
        assert [s.id for s in mem.sessions(status="ended")] == [session.id]
        with pytest.raises(BadInput):
            mem.sessions(since="garbage")
        with pytest.raises(BadInput):
            mem.sessions(status="bogus")
        with pytest.raises(BadInput):
            mem.search("billing", until="garbage")


def test_fact_lookups_normalise_keys_as_writes_do(db_url: str) -> None:
    """A key with NUL or a lone surrogate finds, shows and forgets its fact on both backends."""
    semantic = SemanticMemory(memctl.open(db_url))
    for key in ("a\x00b", "c\ud800d"):
        semantic.add("odd key", key=key)
        fact = semantic.get(key)
        assert fact is not None and fact.text == "odd key"
        assert [h.action for h in semantic.history(key)] == ["ADD"]
        assert semantic.forget(key)


def test_time_trigger_survives_an_outage_and_reports_a_takeover(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A timed save that meets a locked database warns and retries; a takeover stops it and
    reaches the agent at its next tool call."""
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT_SECONDS", 0.3)
    path = tmp_path / "m.db"
    system = _system(str(path))
    memory = system.episodic.memory
    session = memory.start(session_id="seed-out")  # this process's claim: saves carry its epoch
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the database stays locked for a while
    with CheckpointManager(system, interval=100, seconds=0.1) as manager:
        system.working.add_message("user", "during the outage")
        with pytest.warns(RuntimeWarning, match="trying again"):
            manager.on_tool_executed(session.id)
            time.sleep(1.0)  # ticks that meet the lock
        holder.execute("ROLLBACK")
        holder.close()
        deadline = time.monotonic() + 10
        while memory.store.latest_checkpoint(session.id) is None:
            assert time.monotonic() < deadline, "the timer stopped after the outage"
            time.sleep(0.05)
        # Someone else takes the session over: this process is fenced out.
        with memctl.open(str(path)) as other:
            other.claim(session.id, owner_pid=os.getpid() + 1, force=True)
        system.working.add_message("user", "after the takeover")
        deadline = time.monotonic() + 10
        while manager._failure is None:
            assert time.monotonic() < deadline, "the failed save was never recorded"
            time.sleep(0.05)
        with pytest.raises(memctl.FencedOut):
            manager.on_tool_executed(session.id)
    assert [e.content for e in memory.events(session.id)] == ["during the outage"]


def test_system_closes_its_database(db_url: str) -> None:
    """PersistentMemorySystem.open() can be closed, or used as a context manager."""
    with PersistentMemorySystem.open(db_url) as system:
        system.working.add_message("user", "hi")
        system.save_session("seed-close")
    with pytest.raises(memctl.MemoryClosed):
        system.episodic.memory.get("seed-close")
    with memctl.open(db_url) as memory:
        assert [e.content for e in memory.events("seed-close")] == ["hi"]


def test_message_episodes_read_back_as_saved(db_url: str) -> None:
    """A message episode's extra keys and a content that is not text come back as given."""
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    saved = [
        EpisodeEvent(when, "session_user", {"content": "hi", "mood": "curious"}, "ep-rt"),
        EpisodeEvent(when, "session_assistant", {"content": {"plan": [1, 2]}}, "ep-rt"),
    ]

    async def body() -> list[EpisodeEvent]:
        storage = SQLiteEpisodeStorage(db_url)
        try:
            for episode in saved:
                await storage.save(episode)
            return await storage.get_by_session("ep-rt")
        finally:
            await storage.close()

    read = asyncio.run(body())
    assert read[0].payload == {"content": "hi", "mood": "curious", "tool_call": None}
    assert read[1].payload == {"content": {"plan": [1, 2]}, "tool_call": None}
    with memctl.open(db_url) as memory:  # stored as text for search and display
        assert memory.events("ep-rt")[1].content == '{"plan": [1, 2]}'
        assert [h.seq for h in memory.search("plan")] == [2]


def test_saving_an_empty_new_session_is_a_no_op(db_url: str) -> None:
    """save_session before any message stores nothing and raises nothing; load is empty."""
    system = _system(db_url)
    system.save_session("seed-empty")
    assert system.load_session("seed-empty").messages == []
    assert system.episodic.memory.store.get_session("seed-empty") is None


def test_seed_tool_results_without_a_call_id_are_saved(db_url: str) -> None:
    """The seed's WorkingMemory names no call in a tool result: save_session stores it all."""
    system = _system(db_url)
    system.working.add_message("user", "run the tests")
    system.working.add_message("assistant", "running", tool_call={"name": "run_tests"})
    system.working.add_message("tool", "3 passed")  # the seed's way: no tool_call_id
    system.working.add_message("assistant", "all green")
    system.save_session("seed-tool")
    memory = system.episodic.memory
    assert [e.role for e in memory.events("seed-tool")] == [
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    # The result answers the call it followed: nothing shows as interrupted.
    assert memory.events("seed-tool")[2].tool_call_id == "call_2"
    assert system.working.messages[2].tool_call_id == "call_2"
    assert memory.get("seed-tool").pending_tool_call is None
    resumed = memory.restore("seed-tool")
    assert [m["role"] for m in openai_messages(resumed)] == [
        "user",
        "assistant",
        "tool",
        "assistant",
    ]


class _CuttableProxy:
    """A TCP proxy to the PostgreSQL server whose connections can be cut and let through again."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.passing = True
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.passing:
                client.close()  # the server "is down": the connection drops at once
                continue
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.passing = False
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.sockets.clear()

    def close(self) -> None:
        self.cut()
        self.listener.close()


def test_time_trigger_rides_out_a_server_outage(pg_schema_url: str) -> None:
    """With the server unreachable, timed saves (their reads too) warn and retry, then resume."""
    parts = urlsplit(pg_schema_url)
    proxy = _CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    url = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    system = _system(url)
    try:
        with CheckpointManager(system, interval=100, seconds=0.2) as manager:
            system.working.add_message("user", "before")
            manager.on_tool_executed("seed-net")
            with memctl.open(pg_schema_url) as direct:
                deadline = time.monotonic() + 10
                while direct.store.latest_checkpoint("seed-net") is None:
                    assert time.monotonic() < deadline, "the time trigger never fired"
                    time.sleep(0.05)
                proxy.cut()
                system.working.add_message("user", "during")
                with pytest.warns(RuntimeWarning, match="trying again"):
                    time.sleep(2.0)  # several ticks against a server that is gone
                proxy.passing = True
                deadline = time.monotonic() + 20
                while [e.content for e in direct.events("seed-net")] != ["before", "during"]:
                    assert time.monotonic() < deadline, "saving did not resume after the outage"
                    time.sleep(0.1)
            assert manager._timer is not None and manager._timer.is_alive()
    finally:
        system.episodic.memory.close()
        proxy.close()


def test_closing_a_system_leaves_the_callers_memory_open(db_url: str) -> None:
    """close() closes only what open() opened."""
    memory = memctl.open(db_url)
    system = PersistentMemorySystem(
        WorkingMemory(), EpisodicMemory(memory), SemanticMemory(memory), SessionStore(memory)
    )
    system.close()
    assert memory.sessions() == []  # still usable
    memory.close()


def test_message_content_is_stored_once_and_wins_over_the_payload(db_url: str) -> None:
    """A large non-text content fits the limit once (not twice); a payload key cannot forge it."""
    system = _system(db_url)
    big = {"rows": ["x" * 60] * 10_000}  # about 640 kB as JSON text
    system.episodic.record("session_assistant", {"content": big}, "seed-big")
    assert system.episodic.get_session("seed-big")[0].payload["content"] == big
    memory = system.episodic.memory
    forged = NewEvent(
        type="message", role="user", content="the real text", payload={"content": "no"}
    )
    memory.record("seed-pl", [forged], Writer(Identity.of(os.getpid())))
    assert system.episodic.get_session("seed-pl")[0].payload["content"] == "the real text"


def test_closing_a_system_closes_what_its_parts_opened(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts built the seed's way (no memory given) open their own; close() closes them."""
    monkeypatch.setenv("MEMCTL_DB", db_url)
    system = PersistentMemorySystem(
        WorkingMemory(), EpisodicMemory(), SemanticMemory(), SessionStore()
    )
    system.close()
    for part in (system.episodic, system.semantic, system.session_store):
        with pytest.raises(memctl.MemoryClosed):
            part.memory.get("anything")


def test_seed_tool_results_answer_open_calls_in_call_order(db_url: str) -> None:
    """Two calls, then their two results: each result is stored as the answer to its own call."""
    system = _system(db_url)
    system.working.add_message("user", "read a.py and b.py")
    system.working.add_message("assistant", "reading a", tool_call={"name": "read", "id": "A"})
    system.working.add_message("assistant", "reading b", tool_call={"name": "read", "id": "B"})
    system.working.add_message("tool", "contents of a.py")
    system.working.add_message("tool", "contents of b.py")
    system.save_session("seed-two")
    stored = system.episodic.memory.events("seed-two")
    assert [(e.content, e.tool_call_id) for e in stored[3:]] == [
        ("contents of a.py", "A"),
        ("contents of b.py", "B"),
    ]


def test_episode_content_reads_back_whatever_the_payload_says(db_url: str) -> None:
    """memctl's JSON-content mark in a caller's payload cannot break or bend reading."""
    system = _system(db_url)
    memory = system.episodic.memory
    writer = Writer(Identity.of(os.getpid()))
    marked = {"memctl_content_is_json": True}
    memory.record(
        "seed-mark", [NewEvent(type="message", role="user", content="hi", payload=marked)], writer
    )
    # As an earlier memctl wrote a non-text content: the value in the payload, its text in content.
    old = NewEvent(type="message", role="user", content='{"a": 1}', payload={"content": {"a": 1}})
    memory.record("seed-mark", [old], writer)
    system.episodic.record("session_user", {"content": "42", **marked}, "seed-mark")
    read = [e.payload["content"] for e in system.episodic.get_session("seed-mark")]
    assert read == ["hi", {"a": 1}, "42"]


def test_a_call_left_open_in_an_earlier_turn_is_not_answered_by_a_later_result(
    db_url: str,
) -> None:
    """Call A's tool failed (no result); after the user's next message, call B's result is B's."""
    system = _system(db_url)
    w = system.working
    w.add_message("user", "read a.py")
    w.add_message("assistant", "reading", tool_call={"name": "read", "id": "A"})
    w.add_message("user", "never mind, read b.py")
    w.add_message("assistant", "reading", tool_call={"name": "read", "id": "B"})
    w.add_message("tool", "contents of b.py")
    # And with an id used twice, a named result answers the latest call with it.
    w.add_message("assistant", "again", tool_call={"name": "read", "id": "A"})
    w.add_message("assistant", "and c", tool_call={"name": "read", "id": "C"})
    w.add_message("tool", "named", tool_call_id="A")
    w.add_message("tool", "contents of c.py")
    system.save_session("seed-stale")
    stored = system.episodic.memory.events("seed-stale")
    assert [e.tool_call_id for e in stored if e.role == "tool"] == ["B", "A", "C"]


def test_seed_results_in_the_usual_loop_answer_their_own_calls(db_url: str) -> None:
    """Call A fails (no result), then call B and its result, call C and its result: no shift;
    and calls A, X, A then three results go to them in call order."""
    system = _system(db_url)
    w = system.working
    w.add_message("user", "go")
    w.add_message("assistant", "a", tool_call={"name": "read", "id": "A"})
    w.add_message("assistant", "b", tool_call={"name": "read", "id": "B"})  # A's tool failed
    w.add_message("tool", "out b")
    w.add_message("assistant", "c", tool_call={"name": "grep", "id": "C"})
    w.add_message("tool", "out c")
    w.add_message("user", "again")
    for name in ("A", "X", "A"):
        w.add_message("assistant", name, tool_call={"name": name, "id": name})
    for text in ("read 1", "grep", "read 2"):
        w.add_message("tool", text)
    system.save_session("seed-loop")
    tools = [(e.content, e.tool_call_id) for e in system.episodic.memory.events("seed-loop")]
    tools = [t for t in tools if t[0] and t[0].startswith(("out", "read", "grep"))]
    assert tools == [
        ("out b", "A"),  # a call right after a call is the same turn: the first open one
        ("out c", "C"),  # a call after a result starts a new turn: no shift onto C
        ("read 1", "A"),
        ("grep", "X"),
        ("read 2", "A"),
    ]
