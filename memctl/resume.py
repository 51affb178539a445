"""Printing a resumed session in each of ``resume``'s formats."""

from __future__ import annotations

import sys

from .models import Resumed, Status
from .text import dumps
from .working import Message, WorkingMemory


def openai_messages(restored: Resumed) -> list[dict[str, object]]:
    """The chat-completions ``messages`` array for a restored session.

    A claim answers the tool calls a crash left open (``Memory.claim``); a
    peek at an incomplete session claims nothing, so the same answers are
    added here, to the output only, to keep it a list a chat API accepts;
    so are answers for calls the claim did not reach (further back than it
    looks) or that other messages followed. In a live session the call in
    the newest message may still be running and is left open.
    """
    from .core import INTERRUPTED_RESULT, unanswered_tool_calls

    working = WorkingMemory.from_events(restored.messages)
    messages = working.messages
    last = restored.messages[-1].seq if restored.messages else None
    at = {message.seq: index for index, message in enumerate(messages)}
    answers = [
        (at[seq], call_id)
        for call_id, seq in unanswered_tool_calls(restored.messages)
        # The newest message of a live session: its call may still be running.
        if not (seq == last and restored.session.status is Status.ACTIVE)
    ]
    # A call with messages after it, or in a session that is not active, is
    # over. (A claim stores these answers for the calls among its last 500
    # events.) Each answer goes right after its own call, so that a call id
    # used twice is answered where it was left open.
    for index, call_id in sorted(answers, reverse=True):
        messages.insert(index + 1, Message("tool", INTERRUPTED_RESULT, tool_call_id=call_id))
    return list(working.to_openai())


def emit_resumed(restored: Resumed, output: str, *, fancy: bool) -> None:
    """Write ``restored`` to stdout as transcript, json, jsonl or openai."""
    write = sys.stdout.write
    if output == "json":
        write(dumps(restored.to_dict()) + "\n")
    elif output == "jsonl":
        for message in restored.messages:
            write(dumps(message.to_dict()) + "\n")
    elif output == "openai":
        write(dumps(openai_messages(restored), indent=2) + "\n")
    elif fancy:
        from rich.console import Console

        from .render import rich_resumed

        Console(highlight=False).print(rich_resumed(restored))
    else:
        from .render import plain_resumed

        for line in plain_resumed(restored):
            write(line + "\n")
