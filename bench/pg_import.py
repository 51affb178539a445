"""Batch import into PostgreSQL: ``memctl record`` reading JSON lines from a pipe.

memctl's side is the whole command as a user runs it, ``... | memctl record
-s S`` with ``MEMCTL_DB`` pointing at the server: process start, imports,
validation of every line, batching (``memctl.stream``) and the appends. The
clock runs from spawning the process to its exit, with the lines fed through
a pipe as fast as it reads them.

The reference, for scale, is what a bulk loader written by hand does with the
same file in-process: ``json.loads`` each line and ``COPY`` the rows into the
same table in one transaction (no validation, no search vector, no process
start), the fastest way into PostgreSQL there is. The target is on memctl's
own figure. Each run imports into a fresh schema, so every run starts from the
same empty tables.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import memctl

from .corpus import messages
from .measure import ProcessFailed, alternate, clean_env, median, spread
from .pg_common import connect, scratch_schema, server_url, skipped, unavailable
from .registry import Benchmark, Config, Figure, Outcome, Row, Target

NAME = "pg-import"
SESSION = "s_bench_import"


def write_lines(path: Path, count: int) -> None:
    """``count`` agent-like events as ``memctl show --jsonl`` would print them."""
    stream = messages(seed=7)
    with path.open("w", encoding="utf-8") as out:
        for _ in range(count):
            m = next(stream)
            line: dict[str, Any] = {"type": "message", "role": m.role, "content": m.content}
            if m.tool_call is not None:
                line["tool_call"] = m.tool_call
            if m.tool_call_id is not None:
                line["tool_call_id"] = m.tool_call_id
            out.write(json.dumps(line, ensure_ascii=False) + "\n")


def _memctl(config: Config, url: str, data: bytes, count: int) -> float:
    """Seconds for one ``memctl record`` process to store every line of ``data``."""
    memctl.open(url).close()  # migrate outside the clock, as for an existing database
    env = clean_env(MEMCTL_DB=url)
    start = time.perf_counter()
    done = subprocess.run(
        [str(config.memctl), "record", "-s", SESSION],
        input=data,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise ProcessFailed(
            f"memctl record exited {done.returncode}: "
            f"{done.stderr.decode(errors='replace').strip()[-500:]}"
        )
    _check_count(url, SESSION, count)
    return elapsed


def _raw(url: str, path: Path, count: int) -> float:
    """Seconds for a hand-written COPY of the same lines (schema made by memctl)."""
    memctl.open(url).close()
    session = "s_raw_import"
    conn: Any = connect(url)
    try:
        start = time.perf_counter()
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with conn.transaction():
            conn.execute(
                "INSERT INTO sessions (id, created_at, last_activity_at) VALUES (%s, %s, %s)",
                (session, now, now),
            )
            with (
                path.open("rb") as lines,
                conn.cursor().copy(
                    "COPY events (session, seq, id, ts, type, role, content, tool_call,"
                    " tool_call_id) FROM STDIN"
                ) as copy,
            ):
                for seq, line in enumerate(lines, start=1):
                    data = json.loads(line)
                    call = data.get("tool_call")
                    copy.write_row(
                        (
                            session,
                            seq,
                            "e_" + os.urandom(13).hex(),
                            now,
                            data.get("type", "message"),
                            data.get("role"),
                            data.get("content"),
                            None if call is None else json.dumps(call),
                            data.get("tool_call_id"),
                        )
                    )
            conn.execute("UPDATE sessions SET last_seq = %s WHERE id = %s", (count, session))
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    _check_count(url, session, count)
    return elapsed


def _check_count(url: str, session: str, count: int) -> None:
    conn: Any = connect(url)
    with conn:
        (stored,) = conn.execute(
            "SELECT count(*) FROM events WHERE session = %s", (session,)
        ).fetchone()
    if stored != count:
        raise AssertionError(f"{session}: {stored} events stored, expected {count}")


def run(config: Config) -> Outcome:
    url = server_url()
    reason = unavailable(url)
    if reason is not None:
        return skipped(NAME, reason)
    count = config.pick(100_000, 10_000)
    rounds = config.pick(3, 2)
    path = config.workdir / "events.jsonl"
    write_lines(path, count)
    data = path.read_bytes()

    def ours() -> float:
        with scratch_schema(url, "import") as target:
            return _memctl(config, target, data, count)

    def ref() -> float:
        with scratch_schema(url, "import_raw") as target:
            return _raw(target, path, count)

    def start() -> float:
        # What every run pays before its first line: process start, imports,
        # the connection and the session. Shown, not subtracted.
        with scratch_schema(url, "import_one") as target:
            return _memctl(config, target, data[: data.index(b"\n") + 1], 1)

    mine, theirs = alternate(ours, ref, rounds)
    starts = [start() for _ in range(rounds)]
    rate = [count / seconds for seconds in mine]
    streaming = count / (median(mine) - median(starts))
    raw_rate = [count / seconds for seconds in theirs]
    return Outcome(
        rows=[
            Row(
                bench=NAME,
                what=f"`memctl record` < {count:,} JSON lines (pipe) vs raw COPY",
                memctl=Figure(median(rate), "ev/s"),
                reference=Figure(median(raw_rate), "ev/s"),
                target=Target(">=", 30_000, on="memctl"),
                note=(
                    f"{rounds} alternating runs each, fresh schema each; memctl "
                    f"{spread(rate, fmt='{:,.0f}')} ev/s including process start; raw COPY "
                    f"{spread(raw_rate, fmt='{:,.0f}')} ev/s in-process, no search vector; "
                    f"a one-line `memctl record` takes {median(starts) * 1000:.0f} ms, so the "
                    f"lines after it went in at about {streaming:,.0f} ev/s"
                ),
            )
        ]
    )


BENCHMARK = Benchmark(
    NAME, "`memctl record` importing JSON lines into PostgreSQL (target >= 30,000 ev/s)", run
)
