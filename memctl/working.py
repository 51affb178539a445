"""Working memory: the messages an agent holds in RAM, in chat order.

This is the seed design's ``WorkingMemory``; resume rebuilds one from the
stored log, and ``Session`` writes through it when the agent adds messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .models import Event, JsonObject


def call_id(tool_call: JsonObject, seq: int | None) -> str:
    """The id a tool call goes by: its own, or ``call_<seq>`` for one recorded without."""
    own = tool_call.get("id")
    return own if isinstance(own, str) and own else f"call_{seq}"


@dataclass(frozen=True)
class Message:
    """One chat message: a role, its text, and the tool call it makes or answers."""

    role: str
    content: str | None
    tool_call: JsonObject | None = None
    tool_call_id: str | None = None
    seq: int | None = None
    ts: str | None = None

    @classmethod
    def from_event(cls, event: Event) -> Message:
        return cls(
            role=event.role or "user",
            content=event.content,
            tool_call=event.tool_call,
            tool_call_id=event.tool_call_id,
            seq=event.seq,
            ts=event.ts,
        )

    def to_openai(self) -> JsonObject:
        """This message as a chat-completions API message."""

        message: JsonObject = {"role": self.role, "content": self.content or ""}
        # Only an assistant message may carry calls (older memctl stored one
        # on any message; record refuses that now).
        if self.tool_call is not None and self.role == "assistant":
            arguments = self.tool_call.get("arguments", {})
            message["tool_calls"] = [
                {
                    "id": call_id(self.tool_call, self.seq),
                    "type": "function",
                    "function": {
                        "name": self.tool_call["name"],
                        "arguments": arguments
                        if isinstance(arguments, str)
                        else json.dumps(arguments, ensure_ascii=False),
                    },
                }
            ]
            if not self.content:
                message["content"] = None
        if self.role == "tool":
            message["tool_call_id"] = self.tool_call_id or ""
        return message


@dataclass
class WorkingMemory:
    """The agent's current messages, oldest first."""

    messages: list[Message] = field(default_factory=list)

    @classmethod
    def from_events(cls, events: Iterable[Event]) -> WorkingMemory:
        return cls([Message.from_event(event) for event in events if event.type == "message"])

    def add_message(
        self,
        role: str,
        content: str | None,
        tool_call: JsonObject | None = None,
        *,
        tool_call_id: str | None = None,
        seq: int | None = None,
    ) -> Message:
        """Append a message; ``seq`` when it is stored already (the seed's save skips those)."""
        message = Message(role, content, tool_call, tool_call_id, seq)
        self.messages.append(message)
        return message

    @property
    def last(self) -> Message | None:
        return self.messages[-1] if self.messages else None

    def to_openai(self) -> list[JsonObject]:
        """The messages as a chat-completions ``messages`` array a chat API accepts.

        The API wants each tool result right after the assistant message
        that made its call. A result recorded later than that (memctl's
        "Interrupted" answer, added when a session is claimed, lands at the
        end of the log) moves up to its call. A tool message whose call is
        not before it (cut off by a window such as ``--since-checkpoint``, or
        answered twice) becomes a user message that says so, rather than
        being dropped. A call with no result is left as it is: in a live
        session it is still running.
        """
        placed: list[JsonObject] = []
        results: dict[int, list[JsonObject]] = {}  # a call's index in placed -> its result
        # Calls not answered yet, by id: where each is in placed, oldest first.
        # A result answers the latest (an agent may use an id again).
        calls: dict[str, list[int]] = {}
        for message in self.messages:
            item = message.to_openai()
            if message.role == "tool":
                waiting = calls.get(message.tool_call_id or "")
                if waiting:
                    results[waiting.pop()] = [item]
                    continue
                item = {
                    "role": "user",
                    "content": f"[memctl] The result of tool call {message.tool_call_id!r}, "
                    f"whose call is not in this history:\n{message.content or ''}",
                }
            elif "tool_calls" in item:
                calls.setdefault(item["tool_calls"][0]["id"], []).append(len(placed))
            placed.append(item)
        ordered: list[JsonObject] = []
        for index, item in enumerate(placed):
            ordered.append(item)
            ordered.extend(results.get(index, ()))
        return ordered

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)

    def __len__(self) -> int:
        return len(self.messages)

    def clear(self) -> None:
        self.messages.clear()
