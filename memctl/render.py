"""Rendering records for people: Rich on a terminal, plain lines in a pipe.

Every function here is pure: models in, text or Rich renderables out. Rich is
imported inside the functions that need it, so commands whose output is piped
never pay for it. All stored text passes through ``text.sanitize`` and reaches
Rich as ``Text`` objects, never as markup.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from .ids import humanize_age
from .models import Event, Fact, Resumed, SessionInfo, Status
from .text import counted, one_line, sanitize, tool_call_label

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
    from rich.text import Text

    from .search import SearchHit

FOLD_LINES = 30
FOLD_CHARS = 4000

ROLE_STYLES = {
    "user": "bold cyan",
    "assistant": "bold green",
    "system": "bold magenta",
    "tool": "bold yellow",
}
STATUS_STYLES = {
    Status.ACTIVE: "green",
    Status.INCOMPLETE: "bold yellow",
    Status.ENDED: "dim",
    Status.ABANDONED: "dim red",
}


def _short_time(ts: str) -> str:
    return ts[:19].replace("T", " ")


def event_heading(event: Event) -> str:
    """``#2 assistant -> read_file({...})``: what an event is, on one line."""
    if event.type != "message":
        return f"#{event.seq} event {one_line(event.type, 60)}"
    heading = f"#{event.seq} {event.role}"
    if event.tool_call is not None:
        call_id = event.tool_call.get("id")
        heading += f" -> {tool_call_label(event.tool_call)}"
        if call_id:
            heading += f" [{one_line(call_id, 60)}]"
    if event.role == "tool" and event.tool_call_id:
        heading += f" <- [{one_line(event.tool_call_id, 60)}]"
    return heading


def event_body(event: Event) -> str:
    """The text of an event: its content, else its payload as JSON."""
    if event.content:
        return event.content
    if event.payload is not None:
        from .text import dumps

        return dumps(event.payload)
    return ""


def fold(text: str, lines: int = FOLD_LINES, chars: int = FOLD_CHARS) -> tuple[str, int]:
    """Cut long text for a terminal; returns the text and how many lines were hidden."""
    all_lines = text.splitlines()
    kept = all_lines[:lines]
    shown = "\n".join(kept)
    if len(shown) > chars:
        shown = shown[:chars]
    hidden = len(all_lines) - len(shown.splitlines())
    return shown, max(hidden, 0)


def plain_transcript(events: Iterable[Event]) -> Iterator[str]:
    """Lines for a pipe: a heading per event, its body indented by four spaces."""
    for event in events:
        yield f"{event_heading(event)}  {_short_time(event.ts)}"
        for line in sanitize(event_body(event)).splitlines():
            yield f"    {line}"


def rich_transcript(events: Iterable[Event], *, full: bool = False) -> RenderableType:
    """A readable transcript: roles in distinct colours, tool calls visible, long text folded."""
    from rich.console import Group
    from rich.padding import Padding
    from rich.text import Text

    parts: list[RenderableType] = []
    now = datetime.now(timezone.utc)
    for event in events:
        style = ROLE_STYLES.get(event.role or "", "bold blue")
        heading = Text(event_heading(event), style=style)
        heading.append(f"  {humanize_age(event.ts, now=now)}", style="dim")
        parts.append(heading)
        body = sanitize(event_body(event))
        hidden = 0
        if not full:
            body, hidden = fold(body)
        if body:
            parts.append(Padding(Text(body), (0, 0, 0, 4)))
        if hidden:
            parts.append(
                Padding(
                    Text(f"… {hidden} more lines (use --full)", style="dim italic"), (0, 0, 0, 4)
                )
            )
    return Group(*parts)


def plain_sessions(sessions: Iterable[SessionInfo]) -> Iterator[str]:
    """Tab-separated lines: id, status, last activity, messages, title, last message."""
    for info in sessions:
        last = info.last_message.content if info.last_message else ""
        yield "\t".join(
            [
                info.id,
                info.status.value,
                info.last_activity_at,
                str(info.messages),
                one_line(info.title or "", 60),
                one_line(last, 80),
            ]
        )


def status_text(status: Status) -> Text:
    from rich.text import Text

    return Text(status.value, style=STATUS_STYLES[status])


def rich_sessions(sessions: list[SessionInfo]) -> RenderableType:
    """The ``list`` table.

    Only TITLE and LAST MESSAGE give way on a narrow terminal: Rich shrinks
    the columns it may wrap and squeezes every column evenly only as a last
    resort, so the others are ``no_wrap`` (a cut session id cannot be copied,
    and a cut status or count misleads). The two that shrink are wrappable
    columns holding ``no_wrap`` text, so they stay one line and end in an
    ellipsis; both may shrink to nothing on a narrow terminal.
    """
    from rich.table import Table
    from rich.text import Text

    def one_line_cell(text: str = "", style: str = "") -> Text:
        return Text(text, style=style, no_wrap=True, overflow="ellipsis")

    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("SESSION", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("ACTIVE", no_wrap=True)
    table.add_column("MSGS", justify="right", no_wrap=True)
    table.add_column(one_line_cell("TITLE"), max_width=30)
    table.add_column(one_line_cell("LAST MESSAGE"))
    now = datetime.now(timezone.utc)
    for info in sessions:
        last = info.last_message
        preview = one_line_cell()
        if last is not None:
            preview.append(f"{last.role}: ", style=ROLE_STYLES.get(last.role, ""))
            preview.append(one_line(last.content, 200))
        table.add_row(
            Text(info.id, style="bold"),
            status_text(info.status),
            Text(humanize_age(info.last_activity_at, now=now), style="dim"),
            str(info.messages),
            one_line_cell(one_line(info.title or "", 60)),
            preview,
        )
    return table


def _resume_header(restored: Resumed) -> str:
    info = restored.session
    title = f" — {one_line(info.title, 60)}" if info.title else ""
    return f"Session {info.id}{title} ({counted(info.messages, 'message')}, {info.status.value})"


def _checkpoint_line(restored: Resumed) -> str | None:
    checkpoint = restored.checkpoint
    if checkpoint is None:
        return None
    from .text import dumps

    note = f" {one_line(checkpoint.note, 60)!s}" if checkpoint.note else ""
    return f"Checkpoint at #{checkpoint.seq}{note}: state {one_line(dumps(checkpoint.state), 200)}"


def plain_resumed(restored: Resumed) -> Iterator[str]:
    """A resumed session for a pipe: header, checkpoint, then the transcript."""
    yield _resume_header(restored)
    line = _checkpoint_line(restored)
    if line:
        yield line
    yield ""
    yield from plain_transcript(restored.messages)


def rich_resumed(restored: Resumed) -> RenderableType:
    from rich.console import Group
    from rich.text import Text

    parts: list[RenderableType] = [Text(_resume_header(restored), style="bold")]
    line = _checkpoint_line(restored)
    if line:
        parts.append(Text(line, style="dim"))
    parts.append(Text(""))
    parts.append(rich_transcript(restored.messages))
    return Group(*parts)


# Below this width the fact table has no room for the text beside the id,
# key and tags, so each fact is printed as a block instead.
FACT_TABLE_WIDTH = 90


class _FactList:
    """The ``fact list`` output, laid out for the width it is printed at."""

    def __init__(self, facts: list[Fact]) -> None:
        self.facts = facts

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if options.max_width >= FACT_TABLE_WIDTH:
            yield _fact_table(self.facts)
            return
        from rich.padding import Padding
        from rich.text import Text

        for fact in self.facts:
            heading = Text(one_line(fact.key or fact.id, 60), style="bold")
            if fact.tags:
                heading.append(f"  {one_line(','.join(fact.tags), 60)}", style="cyan")
            yield heading
            yield Padding(Text(sanitize(fact.text)), (0, 0, 0, 2), expand=False)
            if fact.key:
                yield Padding(Text(fact.id, style="dim"), (0, 0, 0, 2), expand=False)


def _fact_table(facts: list[Fact]) -> RenderableType:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("FACT", no_wrap=True)
    table.add_column("KEY", no_wrap=True, max_width=30, overflow="ellipsis")
    table.add_column("TAGS", max_width=20, overflow="ellipsis")
    table.add_column("TEXT", ratio=1, min_width=30)
    for fact in facts:
        table.add_row(
            Text(fact.id, style="bold"),
            Text(one_line(fact.key or "", 60)),
            Text(one_line(",".join(fact.tags), 60), style="cyan"),
            Text(sanitize(fact.text)),
        )
    return table


def rich_facts(facts: list[Fact]) -> RenderableType:
    """The ``fact list`` output: a table, or a block a fact on a narrow terminal."""
    return _FactList(facts)


def hit_text(snippet: str) -> Text:
    """A snippet for a terminal: sanitised, matches highlighted (never markup)."""
    from rich.text import Text

    from .search import MARK_END, MARK_START

    # Whitespace is collapsed over the whole snippet before it is cut at the
    # marks (which are not whitespace), so the spaces between a match and the
    # plain text around it survive: collapsing each piece alone stripped them.
    flat = " ".join(snippet.split())
    text = Text()
    matched = False
    piece: list[str] = []
    for char in flat + MARK_START:
        if char in (MARK_START, MARK_END):
            text.append(sanitize("".join(piece)), "bold reverse" if matched else "")
            piece = []
            matched = char == MARK_START
        else:
            piece.append(char)
    return text


def rich_hits(hits: list[SearchHit]) -> RenderableType:
    """Search results: where each hit is, its snippet, and how to open it."""
    from rich.console import Group
    from rich.padding import Padding
    from rich.text import Text

    now = datetime.now(timezone.utc)
    parts: list[RenderableType] = []
    for hit in hits:
        heading = Text(f"{hit.session} #{hit.seq}", style="bold")
        label = hit.role or hit.type
        heading.append(f"  {label}", style=ROLE_STYLES.get(hit.role or "", "blue"))
        heading.append(f"  {humanize_age(hit.ts, now=now)}", style="dim")
        parts.append(heading)
        parts.append(Padding(hit_text(hit.snippet), (0, 0, 0, 4)))
        parts.append(
            Padding(
                Text(f"memctl show {hit.session} --around {hit.seq}", style="dim"), (0, 0, 0, 4)
            )
        )
    return Group(*parts)


def plain_hits(hits: Iterable[SearchHit]) -> Iterator[str]:
    """Tab-separated: session, seq, ts, role (or type), snippet with [ ] around matches."""
    from .search import mark_json

    for hit in hits:
        snippet = sanitize(" ".join(mark_json(hit.snippet).split()), keep_newlines=False)
        yield "\t".join([hit.session, str(hit.seq), hit.ts, hit.role or hit.type, snippet])
