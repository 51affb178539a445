"""The example agent survives kill -9: restarted, it finishes with nothing lost or repeated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import memctl

AGENT = str(Path(__file__).resolve().parent.parent / "examples" / "agent.py")


def _run(db_url: str, delay: str) -> subprocess.Popen[str]:
    env = {**os.environ, "MEMCTL_DB": db_url, "AGENT_STEP_DELAY": delay}
    return subprocess.Popen(
        [sys.executable, AGENT],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_agent_killed_mid_run_finishes_after_restart(db_url: str) -> None:
    """SIGKILL in the middle of the task, then a restart: the task completes exactly once."""
    first = _run(db_url, "0.4")
    deadline = time.monotonic() + 60
    with memctl.open(db_url) as mem:
        while True:
            sessions = mem.sessions()
            if sessions and sessions[0].messages >= 4:
                break
            assert time.monotonic() < deadline, "the agent never got going"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.communicate()
        (session,) = mem.sessions()
        assert mem.get(session.id).status.value == "incomplete"

    second = _run(db_url, "0")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert "resuming" in err
    assert out.strip().splitlines()[-1] == "Together they have 24 words."

    with memctl.open(db_url) as mem:
        events = mem.events(session.id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        contents = [e.content for e in events if e.type == "message"]
        assert contents.count("Together they have 24 words.") == 1
        real_results = [
            e.content or ""
            for e in events
            if e.role == "tool" and not (e.content or "").startswith("[memctl] Interrupted")
        ]
        # Each file read once and each count made once: nothing lost, nothing repeated.
        assert sorted(real_results) == sorted(
            [
                "Ship the billing retry fix before Friday and tell the support team",
                "Retries could double charge a customer if the idempotency key is lost",
                "12",
                "12",
            ]
        )
        calls = [str(e.tool_call["id"]) for e in events if e.tool_call]
        answered = [e.tool_call_id or "" for e in events if e.role == "tool"]
        assert sorted(calls) == sorted(answered), "every tool call has exactly one answer"
        assert mem.get(session.id).status.value == "ended"


def _take_over_stopped(
    mem: memctl.Memory, agent: subprocess.Popen[str], session_id: str
) -> memctl.Session:
    """Stop the agent and claim its session, where the stop left no transaction open.

    A SIGSTOP can land inside one of the agent's transactions; the claim then
    waits for its lock until the (shortened) lock timeout, and the agent is
    let go for a moment and stopped again.
    """
    for _ in range(50):
        agent.send_signal(signal.SIGSTOP)
        try:
            taker, _ = mem.resume(session_id, force=True)
            return taker
        except memctl.StorageUnavailable:
            agent.send_signal(signal.SIGCONT)
            time.sleep(0.05)
    raise AssertionError("the agent was always inside a transaction when stopped")


def test_paused_agent_is_fenced_after_a_takeover(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stopped agent whose session was taken over writes nothing more and exits 6."""
    from memctl import pg_append, sqlite

    monkeypatch.setattr(pg_append, "LOCK_TIMEOUT_SECONDS", 1.0)
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT_SECONDS", 1.0)
    agent = _run(db_url, "1")
    deadline = time.monotonic() + 60
    with memctl.open(db_url) as mem:
        while not (mem.sessions() and mem.sessions()[0].messages >= 2):
            assert time.monotonic() < deadline, "the agent never got going"
            time.sleep(0.05)
        (session,) = mem.sessions()
        try:
            taker = _take_over_stopped(mem, agent, session.id)
            taker.add_message("user", "the new owner speaks")
            before = [(e.seq, e.content) for e in mem.events(session.id)]
        finally:
            agent.send_signal(signal.SIGCONT)
        _, err = agent.communicate(timeout=60)
        assert agent.returncode == 6, err
        assert "taken over" in err
        assert [(e.seq, e.content) for e in mem.events(session.id)] == before
        taker.end()
