"""Resume of one big session inside a big SQLite database.

In-process: ``Memory.restore(session)`` against the raw query a hand-written
agent would run (the session's message rows in seq order, with ``json.loads``
of the JSON columns), alternating, on the same file. As a process:
``memctl resume --peek --format json`` against ``python -c pass``.
The database (1,000,000 messages in 1,000 sessions, one of them 10,000 long)
is built once and cached; see ``datasets``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import memctl

from .datasets import RESUME_FULL, RESUME_QUICK, resume_db
from .measure import alternate, clean_env, median, paired_ratios, run_process, spread
from .profiling import profile_call
from .registry import Benchmark, Config, Figure, Outcome, Row, Target

NAME = "sqlite-resume"

RAW_QUERY = (
    "SELECT session, seq, id, ts, type, role, content, tool_call, tool_call_id, payload"
    " FROM events WHERE session = ? AND type = 'message' ORDER BY seq"
)
# What memctl's store runs for a resume (copied from SQLiteStore.events to explain plans).
MEMCTL_QUERY = (
    "SELECT * FROM (SELECT * FROM events WHERE session = ? AND seq > ?"
    " AND (? = 0 OR type = 'message') ORDER BY seq DESC LIMIT ?) ORDER BY seq"
)


def raw_restore(conn: sqlite3.Connection, session_id: str) -> list[tuple[Any, ...]]:
    loads = json.loads
    return [
        (
            s,
            q,
            i,
            ts,
            ty,
            r,
            c,
            None if tc is None else loads(tc),
            tci,
            None if p is None else loads(p),
        )
        for (s, q, i, ts, ty, r, c, tc, tci, p) in conn.execute(RAW_QUERY, (session_id,))
    ]


def run(config: Config) -> Outcome:
    spec = RESUME_QUICK if config.quick else RESUME_FULL
    path = resume_db(spec, config.cache_dir)
    session_id = spec.target_session
    label = f"{spec.target:,} of {spec.total:,} msgs"
    outcome = Outcome()

    rounds = config.pick(15, 5)
    memory = memctl.open(str(path))
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
    try:
        # Warm both (and the page cache), and check they agree on the answer.
        restored = memory.restore(session_id)
        raw = raw_restore(conn, session_id)
        if not len(restored.messages) == len(raw) == spec.target:
            raise AssertionError(
                f"resume returned {len(restored.messages)} messages, raw {len(raw)}, "
                f"expected {spec.target}"
            )

        def ours() -> float:
            start = time.perf_counter()
            memory.restore(session_id)
            return time.perf_counter() - start

        def ref() -> float:
            start = time.perf_counter()
            raw_restore(conn, session_id)
            return time.perf_counter() - start

        mine, theirs = alternate(ours, ref, rounds)
        note = (
            f"{rounds} alternating runs each; memctl {spread(mine, 1000)} ms, raw "
            f"{spread(theirs, 1000)} ms, per-pair ratio "
            f"{spread(paired_ratios(mine, theirs), fmt='{:.2f}')}"
        )
        figure = Figure(median(mine) * 1000, "ms")
        reference = Figure(median(theirs) * 1000, "ms")
        what = f"Memory.restore, {label} vs raw query"
        outcome.rows.append(Row(NAME, what, figure, reference, Target("<=", 1.5), note))
        outcome.rows.append(Row(NAME, what, figure, reference, Target("<=", 100, on="memctl")))
        if config.profile:
            outcome.profiles.append(
                (f"{NAME}: Memory.restore (by own time)", profile_call(lambda: ours()))
            )
            outcome.profiles.append((f"{NAME}: query plans", _plans(conn)))
    finally:
        memory.close()
        conn.close()

    outcome.rows.append(_cli(config, path, session_id, label))
    return outcome


def _cli(config: Config, path: Path, session_id: str, label: str) -> Row:
    rounds = config.pick(10, 4)
    env = clean_env()
    resume = [
        str(config.memctl),
        "--db",
        str(path),
        "resume",
        session_id,
        "--peek",
        "--format",
        "json",
    ]
    baseline = [str(config.python), "-c", "pass"]
    run_process(resume, env)
    run_process(baseline, env)
    mine, theirs = alternate(
        lambda: run_process(resume, env), lambda: run_process(baseline, env), rounds
    )
    ours_ms, base_ms = median(mine) * 1000, median(theirs) * 1000
    return Row(
        NAME,
        f"`memctl resume --peek --format json`, {label} vs `python -c pass`",
        Figure(ours_ms, "ms"),
        Figure(base_ms, "ms"),
        None,
        f"{rounds} alternating runs each; memctl {spread(mine, 1000)} ms; "
        f"~{ours_ms - base_ms:.0f} ms above the interpreter (no target set for this one)",
    )


def _plans(conn: sqlite3.Connection) -> str:
    lines = []
    for title, sql, params in (
        ("memctl (SQLiteStore.events)", MEMCTL_QUERY, ("x", 0, 1, -1)),
        ("raw", RAW_QUERY, ("x",)),
    ):
        lines.append(f"{title}:")
        for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params):
            lines.append(f"  {row[-1]}")
    return "\n".join(lines)


BENCHMARK = Benchmark(
    NAME, "resume 10k-message session in a 1M-message db (targets <= 100 ms, <= 1.5x raw)", run
)
