"""Deterministic, agent-like messages for the benchmarks to record.

A repeating turn: the user asks, the assistant calls a tool, the tool answers,
the assistant replies. So a quarter of the messages carry a ``tool_call``
(JSON, as the stored form has it) and a quarter answer one; the text lengths
vary the way chat and tool output do.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_WORDS = [
    "agent",
    "memory",
    "session",
    "refactor",
    "utils",
    "billing",
    "retry",
    "service",
    "database",
    "index",
    "query",
    "function",
    "module",
    "test",
    "failure",
    "error",
    "stack",
    "trace",
    "commit",
    "branch",
    "deploy",
    "config",
    "cache",
    "token",
    "request",
    "response",
    "latency",
    "timeout",
    "worker",
    "queue",
    "schedule",
    "report",
    "summary",
    "plan",
    "step",
    "file",
    "path",
    "read",
    "write",
    "update",
    "delete",
    "create",
    "parse",
    "render",
    "format",
    "output",
    "input",
    ").split(",
]
_TOOLS = ("read_file", "run_tests", "grep", "write_file", "http_get")


@dataclass(frozen=True)
class Message:
    """One message as an agent would hand it to ``Session.add_message``."""

    role: str
    content: str
    tool_call: dict[str, Any] | None = None
    tool_call_id: str | None = None


def messages(seed: int) -> Iterator[Message]:
    """An endless, reproducible stream of messages in user/assistant/tool turns."""
    rng = random.Random(seed)
    call = 0

    def text(low: int, high: int) -> str:
        return " ".join(rng.choices(_WORDS, k=rng.randint(low, high)))

    while True:
        call += 1
        call_id = f"call_{seed}_{call}"
        yield Message("user", text(5, 30))
        yield Message(
            "assistant",
            text(3, 15),
            tool_call={
                "id": call_id,
                "name": rng.choice(_TOOLS),
                "arguments": {"path": f"src/{rng.choice(_WORDS)}.py", "limit": rng.randint(1, 500)},
            },
        )
        yield Message("tool", text(10, 120), tool_call_id=call_id)
        yield Message("assistant", text(5, 60))


def take(seed: int, count: int) -> list[Message]:
    stream = messages(seed)
    return [next(stream) for _ in range(count)]
