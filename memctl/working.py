"""Working memory: the messages an agent holds in RAM, in chat order.

This is the seed design's ``WorkingMemory``; resume rebuilds one from the
stored log, and ``Session`` writes through it when the agent adds messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .models import Event, JsonObject


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
        if self.tool_call is not None:
            arguments = self.tool_call.get("arguments", {})
            message["tool_calls"] = [
                {
                    "id": self.tool_call.get("id") or f"call_{self.seq}",
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
        return [message.to_openai() for message in self.messages]

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)

    def __len__(self) -> int:
        return len(self.messages)

    def clear(self) -> None:
        self.messages.clear()
