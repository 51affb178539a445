"""Stored text never drives the terminal: escapes, C1, bidi and markup are shown, not obeyed."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console, RenderableType

from memctl import render
from memctl.ids import format_ts
from memctl.models import Checkpoint, Event, Fact, LastMessage, Resumed, SessionInfo, Status
from memctl.search import MARK_END, MARK_START, SearchHit
from memctl.text import dumps, one_line, sanitize
from tests.conftest import MEMCTL, run_memctl

# Clear screen, an OSC window title, a C1 CSI (0x9b) colour change, a
# right-to-left override, an isolate, a line separator, and Rich markup.
EVIL = (
    "start\x1b[2Jcleared\x1b]0;pwned\x07title\x9b31mred\u202eevil\u2066iso\u061calm\u2028sep"
    "[bold red]x[/] end"
)
MARKUP = "[bold red]x[/]"
# Anything a terminal might act on: C0 but tab/newline, DEL, C1, bidi and separators.
ACTIVE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
TS = "2026-01-02T03:04:05.000006Z"


def assert_inert(output: str) -> None:
    """No character that a terminal would obey reaches ``output``."""
    found = ACTIVE.findall(output)
    assert not found, f"terminal-active characters leaked: {found!r}"


def to_text(renderable: RenderableType, width: int = 100) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def lines(items: Iterable[str]) -> str:
    return "\n".join(items)


def event(seq: int = 1, **fields: Any) -> Event:
    base = Event("s_render", seq, f"e{seq}", TS, "message", "assistant", None, None, None, None)
    return dataclasses.replace(base, **fields)


def session(title: str | None = EVIL, last: str | None = EVIL) -> SessionInfo:
    return SessionInfo(
        id="s_render",
        title=title,
        status=Status.INCOMPLETE,
        created_at=TS,
        last_activity_at=TS,
        ended_at=None,
        events=1,
        messages=1,
        last_message=LastMessage(1, "user", last, TS) if last is not None else None,
        pending_tool_call=None,
        checkpoint=None,
        owner=None,
    )


def evil_events() -> list[Event]:
    return [
        event(1, role="user", content=EVIL),
        event(
            2,
            content="calling",
            tool_call={"id": "c\x1b[1m", "name": "read\x1b[2J", "arguments": {"p": EVIL}},
        ),
        event(3, role="tool", content=EVIL, tool_call_id="c\x9b1m"),
        event(4, type="note\x1b]0;t\x07", role=None, payload={"k": EVIL}),
    ]


def test_plain_transcript_is_inert() -> None:
    """Piped show/resume output escapes control, C1 and bidi characters in every field."""
    out = lines(render.plain_transcript(evil_events()))
    assert_inert(out)
    assert "\\x1b[2J" in out and "\\x9b31m" in out and "\\u202e" in out


def test_rich_transcript_is_inert() -> None:
    """The terminal transcript shows escapes as text and does not obey them."""
    out = to_text(render.rich_transcript(evil_events(), full=True))
    assert_inert(out)
    assert "\\x1b]0;pwned\\x07" in out


def test_rich_transcript_shows_markup_literally() -> None:
    """Rich markup in stored content is printed as typed, not interpreted."""
    out = to_text(render.rich_transcript([event(1, role="user", content=f"say {MARKUP} now")]))
    assert f"say {MARKUP} now" in out


def test_rich_transcript_folded_is_inert() -> None:
    """Folding long content does not let control characters through."""
    long = "\n".join(f"{i} {EVIL}" for i in range(100))
    out = to_text(render.rich_transcript([event(1, role="user", content=long)]))
    assert_inert(out)
    assert "more lines" in out


def test_plain_sessions_are_inert() -> None:
    """Piped list output escapes title and last message, one line per session."""
    out = lines(render.plain_sessions([session()]))
    assert_inert(out)
    assert "\n" not in out
    assert "\\x1b[2J" in out


def test_plain_sessions_keep_one_line_per_session() -> None:
    """Newlines in a title or message cannot forge extra rows in piped list output."""
    out = list(render.plain_sessions([session(title="a\nb\r\nc", last="x\ny")]))
    assert len(out) == 1 and "\r" not in out[0]


def test_rich_sessions_table_is_inert() -> None:
    """The list table shows escapes and markup in title and last message as text."""
    out = to_text(render.rich_sessions([session(title=f"t {MARKUP}", last=f"m {MARKUP}")]))
    assert MARKUP in out
    out = to_text(render.rich_sessions([session()]))
    assert_inert(out)


# A real session id (the length ``new_id`` makes), the widest status, a long
# title and a last message longer than any terminal.
FULL_ID = "s_01M89Q3G9AEX1MXYYFXS5H5PFA"
LONG_TITLE = "Fix the billing service retry logic once and for all"
LONG_LAST = " ".join(["the retry loop now waits with exponential backoff"] * 6)


def wide_sessions() -> list[SessionInfo]:
    # Three hours ago, so ACTIVE reads ``3h ago`` whenever the test runs.
    active = format_ts(datetime.now(timezone.utc) - timedelta(hours=3, minutes=1))
    long = session(title=LONG_TITLE, last=LONG_LAST)
    long = dataclasses.replace(long, id=FULL_ID, messages=12, last_activity_at=active)
    short = session(title="short", last="hi")
    short = dataclasses.replace(short, id="s_short", messages=3, last_activity_at=active)
    return [long, short]


@pytest.mark.parametrize("width", [60, 80, 100, 140, 200])
def test_rich_sessions_keeps_id_status_active_and_count(width: int) -> None:
    """At usual widths the list table shows id, status, age and count whole, one line a row."""
    out = to_text(render.rich_sessions(wide_sessions()), width=width)
    header, *rows = out.splitlines()
    assert header.split()[:4] == ["SESSION", "STATUS", "ACTIVE", "MSGS"]
    assert len(rows) == 2
    assert all(len(line) <= width for line in out.splitlines())
    long_row = rows[0].split()
    assert long_row[:2] == [FULL_ID, "incomplete"]
    assert long_row[2:5] == ["3h", "ago", "12"]
    assert rows[1].split()[:2] == ["s_short", "incomplete"]


@pytest.mark.parametrize("width", [80, 100, 140, 200])
def test_rich_sessions_shrinks_title_and_last_message(width: int) -> None:
    """Title and last message are the columns cut, each with an ellipsis, to fit the width."""
    out = to_text(render.rich_sessions(wide_sessions()), width=width)
    assert "TITLE" in out and "LAST MES" in out
    row = out.splitlines()[1]
    assert row.startswith(f"{FULL_ID}  incomplete  3h ago    12  Fix the ")
    title, last = row.split("  ")[-2:]
    assert title.endswith("…") and LONG_TITLE.startswith(title[:-1])
    assert last.startswith("user: the r") and last.endswith("…")
    assert len(row) == width


def test_rich_sessions_last_message_gives_way_first() -> None:
    """On a wide terminal the title is shown up to its own limit; the message is cut."""
    out = to_text(render.rich_sessions(wide_sessions()), width=200)
    row = out.splitlines()[1]
    assert "Fix the billing service retry…" in row
    assert "user: the retry loop now waits" in row and row.rstrip().endswith("…")


def mark(word: str) -> str:
    return f"{MARK_START}{word}{MARK_END}"


def test_hit_text_keeps_spaces_around_matches() -> None:
    """Collapsing whitespace in a snippet keeps the spaces between matches and plain text."""
    snippet = (
        f"  The {mark('billing')} {mark('service')} retries with\n\t "
        f"{mark('exponential')}   {mark('backoff')}. "
    )
    text = render.hit_text(snippet)
    assert text.plain == "The billing service retries with exponential backoff."
    highlighted = [text.plain[span.start : span.end] for span in text.spans]
    assert highlighted == ["billing", "service", "exponential", "backoff"]


def test_rich_hits_show_spaced_snippet_and_stay_inert() -> None:
    """A search hit on a terminal reads as written, and stored escapes are shown, not obeyed."""
    snippet = f"retries with {mark('exponential')} {mark('backoff')} {mark(EVIL)} done"
    hit = SearchHit("s_render", 2, TS, "message", "assistant", snippet, 1.0)
    out = to_text(render.rich_hits([hit]), width=200)
    assert "retries with exponential backoff start\\x1b[2Jcleared" in out
    assert f"{MARKUP} end done" in out
    assert_inert(out)


def test_resumed_views_are_inert() -> None:
    """Resume's header, checkpoint line and transcript escape stored text."""
    checkpoint = Checkpoint("s_render", 3, "c1", TS, note=EVIL, state={"plan": EVIL})
    restored = Resumed(session(), checkpoint, evil_events())
    plain = lines(render.plain_resumed(restored))
    rich = to_text(render.rich_resumed(restored))
    for out in (plain, rich):
        assert_inert(out)
        assert MARKUP in out


def test_event_heading_escapes_tool_call_fields() -> None:
    """Tool call names, ids and event types in headings are escaped."""
    for item in evil_events():
        assert_inert(render.event_heading(item))


def test_sanitize_keeps_newlines_and_tabs() -> None:
    """Sanitising keeps ordinary layout characters and plain text intact."""
    text = "naïve café\tindent\nnext line 🙂"
    assert sanitize(text) == text


def test_one_line_flattens_and_escapes() -> None:
    """one_line turns any text into a single inert line."""
    flat = one_line("a\nb\x1b[2J\u202ec", 200)
    assert "\n" not in flat
    assert_inert(flat)


@pytest.mark.parametrize("text", [EVIL, "\x00\x01\x7f\x85\u2029", "plain 🙂 日本語"])
def test_dumps_is_valid_json_and_inert(text: str) -> None:
    """memctl.text.dumps escapes terminal-active characters and stays valid JSON."""
    value = {"content": text, "nested": [text, {"k": text}]}
    out = dumps(value)
    assert_inert(out)
    assert json.loads(out) == value
    assert json.loads(dumps(value, indent=2)) == value


def test_show_on_a_terminal_is_inert(tmp_path: Path) -> None:
    """`memctl show` on a real terminal (Rich path) does not emit stored escapes."""
    pexpect = pytest.importorskip("pexpect")
    db = str(tmp_path / "tty.db")
    sid = "tty-render-1"
    line = json.dumps({"role": "user", "content": f"{EVIL}\n{MARKUP}"}) + "\n"
    assert run_memctl("--db", db, "record", "-s", sid, input=line).returncode == 0
    child = pexpect.spawn(
        MEMCTL,
        ["--db", db, "show", sid],
        env={"PATH": "/usr/bin:/bin", "TERM": "xterm-256color", "COLUMNS": "100"},
        encoding="utf-8",
        timeout=30,
    )
    out = child.read()
    child.close()
    assert child.exitstatus == 0
    assert "\\x1b[2J" in out  # the Rich transcript, with the escape shown
    for obeyed in ("\x1b[2J", "\x1b]0;", "\x07", "\x9b", "\u202e", "\u2066", "\u2028"):
        assert obeyed not in out
    assert MARKUP in out


def fact(key: str | None, text: str, tags: list[str]) -> Fact:
    return Fact(f"f_{key or 'nokey'}", key, text, tags, None, None, TS, TS)


@pytest.mark.parametrize("width", [40, 60, 89])
def test_fact_list_keeps_the_text_whole_on_a_narrow_terminal(width: int) -> None:
    """Under FACT_TABLE_WIDTH each fact is a block: key, tags, all its text, its id."""
    text = "The billing service retries 3 times before giving up and paging someone"
    facts = [fact("billing.retries", text, ["billing"]), fact(None, "no key " + EVIL, [])]
    out = to_text(render.rich_facts(facts), width=width)
    assert " ".join(out.split()).count(text) == 1
    assert "billing.retries  billing" in out
    assert "f_billing.retries" in out and "f_nokey" in out
    assert max(len(line) for line in out.splitlines()) <= width
    assert_inert(out)


def test_fact_list_is_a_table_on_a_wide_terminal() -> None:
    """From FACT_TABLE_WIDTH up the facts are a table with the text beside them."""
    out = to_text(render.rich_facts([fact("deploy.window", "Tuesdays " + EVIL, ["ops"])]), 120)
    assert out.split()[:4] == ["FACT", "KEY", "TAGS", "TEXT"]
    assert "f_deploy.window  deploy.window" in out
    assert_inert(out)
