"""An example agent that survives ``kill -9``: no network, no API key.

A scripted fake model answers a task by calling two tools (``read_file`` and
``count_words``), one step at a time. The agent keeps its conversation in the
seed design's ``PersistentMemorySystem``, saves it with a ``CheckpointManager``
after every tool call, and on start-up offers to pick up a session that a
crash left unfinished (``memctl.welcome_back()`` on a terminal; without one,
it resumes the newest unfinished session of its own, as ``memctl recover
--yes`` would).

    python examples/agent.py            # run it; press Ctrl-C or kill -9 it
    python examples/agent.py            # run it again: it continues where it stopped

Set ``MEMCTL_DB`` to choose the database; ``AGENT_STEP_DELAY`` (seconds)
slows it down so there is time to kill it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import memctl
from memctl.recovery import recover
from memctl.seed import (
    CheckpointManager,
    EpisodicMemory,
    PersistentMemorySystem,
    SemanticMemory,
    SessionStore,
)
from memctl.working import Message, WorkingMemory

TITLE = "example agent: word counts"
FILES = {
    "notes/plan.txt": "Ship the billing retry fix before Friday and tell the support team",
    "notes/risks.txt": "Retries could double charge a customer if the idempotency key is lost",
}
TASK = "How many words are in notes/plan.txt and notes/risks.txt together?"


def run_tool(name: str, arguments: dict[str, Any]) -> str:
    """The two tools the fake model can call."""
    if name == "read_file":
        return FILES[arguments["path"]]
    if name == "count_words":
        return str(len(arguments["text"].split()))
    raise ValueError(f"unknown tool {name}")


def fake_model(messages: list[Message]) -> Message:
    """Decide the next assistant message from the conversation so far.

    Deterministic, like a model at temperature 0 with a fixed prompt: the
    same history always gives the same next step, so a resumed agent carries
    on exactly where the crashed one stopped. A call that the crash
    interrupted (memctl answered it with "[memctl] Interrupted...") has no
    result, so the model simply makes it again, under a new call id.
    """
    calls = [m.tool_call for m in messages if m.role == "assistant" and m.tool_call]
    names = {call["id"]: call["name"] for call in calls}
    results = [
        (names[m.tool_call_id], m.content or "")
        for m in messages
        if m.role == "tool"
        and m.tool_call_id in names
        and not (m.content or "").startswith("[memctl] Interrupted")
    ]
    reads = [text for name, text in results if name == "read_file"]
    counts = [int(text) for name, text in results if name == "count_words"]
    call_id = f"call_{len(calls)}"
    if len(reads) < len(FILES):
        path = list(FILES)[len(reads)]
        return Message(
            "assistant",
            f"Reading {path}",
            {"id": call_id, "name": "read_file", "arguments": {"path": path}},
        )
    if len(counts) < len(reads):
        return Message(
            "assistant",
            "Counting words",
            {"id": call_id, "name": "count_words", "arguments": {"text": reads[len(counts)]}},
        )
    return Message("assistant", f"Together they have {sum(counts)} words.")


def start_or_resume(system: PersistentMemorySystem, memory: memctl.Memory) -> str:
    """Resume an unfinished session of ours, or start a new one."""
    session = None
    if sys.stdin.isatty():
        session = memctl.welcome_back(memory)
    else:
        mine = [s for s in memory.incomplete() if s.title == TITLE]
        if mine:
            session = recover(memory, mine[0])
            print(f"agent: resuming {session.id}", file=sys.stderr)
    if session is not None:
        system.working = system.load_session(session.id)
        session.stop()  # the seed classes write without a claim, as this process
        return session.id
    session = memory.start(TITLE)
    session.stop()
    system.working.add_message("user", TASK)
    system.save_session(session.id)
    print(f"agent: started {session.id}", file=sys.stderr)
    return session.id


def main() -> int:
    delay = float(os.environ.get("AGENT_STEP_DELAY", "0.3"))
    memory = memctl.open()
    system = PersistentMemorySystem(
        WorkingMemory(), EpisodicMemory(memory), SemanticMemory(memory), SessionStore(memory)
    )
    session_id = start_or_resume(system, memory)
    try:
        return work(system, memory, session_id, delay)
    except memctl.FencedOut:
        # Another process took the session over (memctl resume --force, or a
        # recover after this one was paused): its writes win, ours stop here.
        print(f"agent: session {session_id} was taken over; stopping", file=sys.stderr)
        return 6


def work(
    system: PersistentMemorySystem, memory: memctl.Memory, session_id: str, delay: float
) -> int:
    """The agent's loop: ask the model, run its tool calls, until it answers."""
    manager = CheckpointManager(system, interval=1)
    while True:
        reply = fake_model(system.working.messages)
        system.working.messages.append(reply)
        if reply.tool_call is None:
            system.save_session(session_id)
            print(reply.content)
            system.semantic.add(
                reply.content or "", key="example.word_count", session_id=session_id
            )
            memory.end(session_id)
            return 0
        system.save_session(session_id)  # the call is durable before the tool runs
        time.sleep(delay)
        result = run_tool(reply.tool_call["name"], reply.tool_call["arguments"])
        system.working.add_message("tool", result, tool_call_id=reply.tool_call["id"])
        manager.on_tool_executed(session_id)
        print(json.dumps({"tool": reply.tool_call["name"], "result": result[:40]}), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
