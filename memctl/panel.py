"""The "Welcome back" panel that ``recover`` and ``welcome_back()`` show.

Rich is imported at module level here on purpose: this module is only loaded
when a person is about to see the panel.
"""

from __future__ import annotations

from datetime import datetime, timezone

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .ids import humanize_age
from .models import SessionInfo
from .render import ROLE_STYLES, fold
from .text import counted, sanitize, tool_call_label

LAST_MESSAGE_LINES = 8
LAST_MESSAGE_CHARS = 600


def welcome_panel(info: SessionInfo, *, more: int = 0) -> RenderableType:
    """What the agent was doing when it stopped, and how to pick it up."""
    now = datetime.now(timezone.utc)
    body: list[RenderableType] = [Text("You left off at:", style="bold")]
    last = info.last_message
    if last is not None:
        text, hidden = fold(sanitize(last.content), LAST_MESSAGE_LINES, LAST_MESSAGE_CHARS)
        line = Text("  ")
        line.append(f"{last.role}: ", style=ROLE_STYLES.get(last.role, "bold"))
        line.append(text)
        if hidden:
            line.append(f" … ({hidden} more lines)", style="dim")
        body.append(line)
    else:
        body.append(Text("  (no messages yet)", style="dim"))
    body.append(Text(""))

    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="dim", no_wrap=True)
    facts.add_column()
    facts.add_row("Session", Text(sanitize(info.id)))
    if info.title:
        facts.add_row("Title", Text(sanitize(info.title, keep_newlines=False)))
    facts.add_row(
        "Last active",
        Text(f"{humanize_age(info.last_activity_at, now=now)} ({info.last_activity_at[:19]}Z)"),
    )
    facts.add_row("Messages", Text(f"{info.messages} ({counted(info.events, 'event')})"))
    if info.checkpoint is not None:
        note = (
            f' "{sanitize(info.checkpoint.note, keep_newlines=False)}"'
            if info.checkpoint.note
            else ""
        )
        facts.add_row(
            "Checkpoint",
            Text(f"#{info.checkpoint.seq}{note}, {humanize_age(info.checkpoint.ts, now=now)}"),
        )
    if info.pending_tool_call is not None:
        facts.add_row(
            "Interrupted",
            Text(
                f"tool call {tool_call_label(info.pending_tool_call)} never returned",
                style="yellow",
            ),
        )
    body.append(facts)
    if more:
        body.append(Text(""))
        body.append(
            Text(
                f"{more} more incomplete session{'s' if more > 1 else ''}: "
                "memctl list --status incomplete",
                style="dim",
            )
        )
    return Panel(Group(*body), title="Welcome back", title_align="left", border_style="cyan")
