"""A fixed corpus and the hits each query must find, for every backend.

Backend-neutral on purpose: the contract suite can record ``CORPUS`` through
any ``Store`` and check ``CASES`` against its search, so the same query is
shown to find the same events on SQLite and PostgreSQL. An event is named by
(session, seq); seqs follow the order of each session's list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memctl.models import NewEvent

Hit = tuple[str, int]

B, D, M = "s_billing", "s_deploy", "s_misc"


def _ts(day: int, second: int) -> str:
    return f"2026-01-0{day}T10:00:{second:02d}.000000Z"


def _msg(role: str, content: str | None, **extra: Any) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": content, **extra}


_SESSIONS: dict[str, list[dict[str, Any]]] = {
    B: [
        _msg("user", "The billing service keeps failing; please add a retry with backoff."),
        _msg(
            "assistant",
            "Reading the code first.",
            tool_call={
                "id": "c1",
                "name": "read_file",
                "arguments": {"path": "services/billing/client.py"},
            },
        ),
        _msg(
            "tool",
            "def charge(amount):\n    return gateway.post('/charge', amount)  # TODO retries",
            tool_call_id="c1",
        ),
        _msg("assistant", "I will wrap charge() in a retry loop with exponential backoff."),
        {
            "type": "plan_updated",
            "payload": {"steps": ["add retry decorator", "write tests"], "assignee": "Zoë"},
        },
        _msg(
            "assistant",
            "Running the tests.",
            tool_call={
                "id": "c2",
                "name": "run_tests",
                "arguments": {"target": "tests/test_billing.py", "flags": ["-x", "--maxfail=1"]},
            },
        ),
        _msg("tool", "3 passed, 1 failed: test_refund_flow", tool_call_id="c2"),
    ],
    D: [
        _msg("user", "Deploy the payments worker to staging."),
        _msg(
            "assistant",
            "Checking staging.",
            tool_call={
                "id": "c3",
                "name": "http_get",
                # OpenAI-style: the arguments arrive as a JSON string.
                "arguments": '{"url": "https://staging.example.com/health", "timeout": 30}',
            },
        ),
        _msg("tool", "staging health: degraded, queue latency high", tool_call_id="c3"),
        _msg("assistant", "Résumé: the dry run of the deploy succeeded."),
        _msg("user", "Don't deploy on Fridays."),
        {"type": "note", "payload": {"text": "retry budget exhausted", "count": 4242}},
    ],
    M: [
        _msg("user", "Search for user_id in utils.py and fix the flaky test."),
        _msg("assistant", "Found user_id in 3 places; the flaky test is test_retry_timeout."),
        _msg("system", "Ünïcödé naïve café — straße İstanbul"),
        _msg("user", "What about C++ and 100% coverage? [brackets] stay"),
        _msg(
            "assistant",
            None,
            tool_call={
                "id": "c4",
                "name": "grep",
                "arguments": {"pattern": "billing", "dir": "src"},
            },
        ),
    ],
}

_DAYS = {B: 1, D: 2, M: 3}


def corpus() -> dict[str, list[NewEvent]]:
    """Each session's events, with fixed timestamps (day per session, a second apart)."""
    return {
        session: [
            NewEvent(ts=_ts(_DAYS[session], seq), **event)
            for seq, event in enumerate(events, start=1)
        ]
        for session, events in _SESSIONS.items()
    }


@dataclass(frozen=True)
class Case:
    """A query, its filters, and the events it must find (all of them, nothing else)."""

    query: str
    hits: frozenset[Hit]
    filters: dict[str, Any] = field(default_factory=dict)
    why: str = ""


def case(query: str, *hits: Hit, why: str = "", **filters: Any) -> Case:
    return Case(query, frozenset(hits), filters, why)


RETRY = ((B, 1), (B, 4), (B, 5), (D, 6), (M, 2))

CASES: list[Case] = [
    case("billing", (B, 1), (B, 2), (B, 6), (M, 5), why="content and tool arguments"),
    case("client", (B, 2), why="a tool argument value"),
    case("gateway", (B, 3), why="tool output"),
    case("read_file", (B, 2), why="a tool name"),
    case("health", (D, 2), (D, 3), why="arguments given as a JSON string"),
    case("path", why="only ever a JSON key"),
    case("pattern", why="only ever a JSON key"),
    case("assignee", why="only ever a payload key"),
    case("url", why="a key inside string-encoded arguments"),
    case("c1", why="tool call ids are not indexed"),
    case("decorator", (B, 5), why="a payload value inside a list"),
    case("zoe", (B, 5), why="diacritics removed"),
    case("4242", (D, 6), why="numbers are indexed as text"),
    case("30", (D, 2)),
    case("retry", *RETRY),
    case("RETRY", *RETRY, why="case-insensitive"),
    case("retr*", *RETRY, (B, 3), why="prefix reaches 'retries'"),
    case('"retry budget"', (D, 6)),
    case('"budget retry"', why="a phrase keeps its order"),
    case("retry budget", (D, 6)),
    case("retry OR deploy", *RETRY, (D, 1), (D, 4), (D, 5)),
    case("billing retry", (B, 1)),
    case("billing -retry", (B, 2), (B, 6), (M, 5)),
    case('deploy -"dry run"', (D, 1), (D, 5)),
    case("(deploy OR payments) worker", (D, 1)),
    case("staging health", (D, 2), (D, 3)),
    case("resume", (D, 4)),
    case("RÉSUMÉ", (D, 4)),
    case("cafe naive", (M, 3)),
    case("straße istanbul", (M, 3)),
    case("unicode", (M, 3)),
    case("utils.py", (M, 1), why="punctuation inside a word makes a phrase"),
    case("user_id", (M, 1), (M, 2)),
    case("C++", (M, 4)),
    case("100%", (M, 4)),
    case("[brackets]", (M, 4)),
    case("don't", (D, 5)),
    case("fri*", (D, 5)),
    case("AND", (M, 1), (M, 4), why="operator words of FTS5 are plain words"),
    case("NEAR", why="a plain word that is not there"),
    case("flaky test", (M, 1), (M, 2)),
    case('"unbalanced', why="an unclosed quote closes at the end"),
    case("billing", (B, 1), (B, 2), (B, 6), session=B),
    case("retry", (B, 4), (M, 2), role="assistant"),
    case("retry", (B, 5), type="plan_updated"),
    case("retry", (D, 6), (M, 2), since=_ts(2, 0)),
    case("retry", (B, 1), (B, 4), (B, 5), until=_ts(2, 0)),
    case("retry", (D, 6), since=_ts(2, 0), until=_ts(3, 0)),
    case("retry", (B, 1), session=B, role="user"),
]

# order="recent": newest first, with the limit applied after ordering.
RECENT: list[tuple[str, int, list[Hit]]] = [
    ("retry", 20, [(M, 2), (D, 6), (B, 5), (B, 4), (B, 1)]),
    ("retr*", 2, [(M, 2), (D, 6)]),
]

# Text with a meaning in FTS5 or tsquery syntax, or none at all. Each must
# give a list of hits (maybe empty) or BadInput; nothing else.
HOSTILE: list[str] = [
    "%",
    "_",
    "\\",
    "'",
    '"',
    '""',
    '"""',
    "''",
    ":",
    "a:b",
    "body:billing",
    "^billing",
    "NEAR(billing retry)",
    "NEAR/2",
    "billing AND",
    "AND",
    "NOT billing",
    "billing NOT retry",
    "OR",
    "OR OR OR",
    "billing OR",
    "(",
    ")",
    "())(",
    "(billing",
    "billing)",
    "*",
    "**",
    "billing*retry",
    "-",
    "--",
    "-billing",
    "- billing",
    '-"billing"',
    "a OR -b",
    "!billing",
    "billing & retry",
    "billing | retry",
    "billing <-> retry",
    "billing:*",
    "'billing':*",
    "{billing retry}",
    "+billing",
    "\x00",
    "billing\x00retry",
    "\ud800",
    "billing\udcff",
    "\u202e\u200b",
    "🔥 billing",
    "x" * 1_000_000,
    "a " * 200,
    "(" * 100 + "billing",
    "SELECT * FROM events; --",
    "'; DROP TABLE events; --",
    "$1 %s ?",
]
