"""Durable in-process append on PostgreSQL: memctl's library against raw psycopg.

Both sides write the same messages, one per transaction, over TCP, into the
same ``events`` table (memctl's schema, so the same indexes, the search index
included) in a schema of this run's own. memctl goes through its public path
(``Session.add_message``), with its defaults. The raw side is the least a
hand-written program does: one ``INSERT`` per message in autocommit mode (the
statement is the transaction), seq counted in the client, the search column
computed by the server from the content; psycopg's defaults, so its insert is
prepared after a few uses. Commits are durable on both (the server's
``synchronous_commit``).

The work is cut into small blocks and the sides take turns block by block,
so the machine's noise (above all other clients' fsyncs) lands on both. An
informational row measures memctl again with prepared statements off
(``?prepare_threshold=off``), as behind a transaction-pooling proxy.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone

import memctl

from .corpus import Message, take
from .measure import median, paired_ratios, spread
from .pg_common import connect, scratch_schema, server_url, skipped, unavailable
from .profiling import profile_call
from .registry import Benchmark, Config, Figure, Outcome, Row, Target

NAME = "pg-append"


class MemctlSide:
    """memctl's public library path: open, start, add_message."""

    def __init__(self, url: str) -> None:
        self.memory = memctl.open(url)
        self.session = self.memory.start(title="bench")

    def block(self, batch: list[Message]) -> float:
        add = self.session.add_message
        start = time.perf_counter()
        for m in batch:
            add(m.role, m.content, tool_call=m.tool_call, tool_call_id=m.tool_call_id)
        return time.perf_counter() - start

    def close(self) -> None:
        self.memory.close()


class RawSide:
    """One INSERT per message, each its own transaction, written by hand."""

    INSERT = (
        "INSERT INTO events (session, seq, id, ts, type, role, content, tool_call,"
        " tool_call_id, payload, search)"
        " VALUES (%s, %s, %s, %s, 'message', %s, %s, %s, %s, NULL, to_tsvector('simple', %s))"
    )

    def __init__(self, url: str, session: str) -> None:
        self.conn = connect(url)
        self.session = session
        self.seq = 0
        # A session row for its events to belong to, as memctl's have.
        now = _now()
        self.conn.execute(
            "INSERT INTO sessions (id, created_at, last_activity_at) VALUES (%s, %s, %s)",
            (session, now, now),
        )

    def block(self, batch: list[Message]) -> float:
        execute = self.conn.execute
        sid = self.session
        start = time.perf_counter()
        for m in batch:
            self.seq += 1
            execute(
                self.INSERT,
                (
                    sid,
                    self.seq,
                    "e_" + os.urandom(13).hex(),
                    _now(),
                    m.role,
                    m.content,
                    None if m.tool_call is None else json.dumps(m.tool_call),
                    m.tool_call_id,
                    m.content,
                ),
            )
        return time.perf_counter() - start

    def close(self) -> None:
        self.conn.close()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


Side = MemctlSide | RawSide


def _race(
    a: Side, b: Side, blocks: list[list[Message]], turn: int
) -> tuple[list[float], list[float]]:
    """Both sides over every block, taking turns; per-block seconds of each. Closes both."""
    try:
        a_times: list[float] = []
        b_times: list[float] = []
        for index, batch in enumerate(blocks):
            # Swap who goes first each block and each repeat.
            if (index + turn) % 2 == 0:
                a_times.append(a.block(batch))
                b_times.append(b.block(batch))
            else:
                b_times.append(b.block(batch))
                a_times.append(a.block(batch))
        return a_times, b_times
    finally:
        a.close()
        b.close()


def run(config: Config) -> Outcome:
    url = server_url()
    reason = unavailable(url)
    if reason is not None:
        return skipped(NAME, reason)
    total = config.pick(5_000, 500)
    # Small blocks: the server's fsyncs are shared with whatever else runs,
    # and short turns spread that noise evenly over both sides.
    block_size = config.pick(50, 25)
    repeats = config.pick(3, 2)
    work = take(seed=1, count=total)
    blocks = [work[i : i + block_size] for i in range(0, total, block_size)]

    rates: dict[str, list[float]] = {"memctl": [], "raw": [], "unprepared": [], "raw2": []}
    ratios: list[float] = []
    unprepared_ratios: list[float] = []
    outcome = Outcome()
    with scratch_schema(url, "append") as target:
        unprepared = target + "&prepare_threshold=off"
        memctl.open(target).close()  # migrate before either side starts the clock
        for repeat in range(repeats):
            ours, raw = _race(
                MemctlSide(target), RawSide(target, f"s_raw_{repeat}"), blocks, repeat
            )
            rates["memctl"].append(total / sum(ours))
            rates["raw"].append(total / sum(raw))
            ratios += paired_ratios(raw, ours)
            mine, theirs = _race(
                MemctlSide(unprepared), RawSide(target, f"s_raw_p{repeat}"), blocks, repeat + 1
            )
            rates["unprepared"].append(total / sum(mine))
            rates["raw2"].append(total / sum(theirs))
            unprepared_ratios += paired_ratios(theirs, mine)
        outcome.rows.append(
            Row(
                bench=NAME,
                what=f"durable append, {total:,} msgs 1/txn vs raw psycopg INSERT",
                memctl=Figure(median(rates["memctl"]), "ev/s"),
                reference=Figure(median(rates["raw"]), "ev/s"),
                target=Target(">=", 0.7),
                note=(
                    f"{repeats} repeats x {len(blocks)} alternating blocks of {block_size} over "
                    f"TCP; raw {spread(rates['raw'], fmt='{:,.0f}')} ev/s; per-block ratio "
                    f"{spread(ratios, fmt='{:.2f}')}"
                ),
            )
        )
        outcome.rows.append(
            Row(
                bench=NAME,
                what="  same, memctl with ?prepare_threshold=off (as behind pgbouncer)",
                memctl=Figure(median(rates["unprepared"]), "ev/s"),
                reference=Figure(median(rates["raw2"]), "ev/s"),
                note=(
                    "prepared statements off, against raw runs of its own; per-block ratio "
                    f"{spread(unprepared_ratios, fmt='{:.2f}')}"
                ),
            )
        )
        if config.profile:
            side = MemctlSide(target)
            try:
                outcome.profiles.append(
                    (
                        f"{NAME}: memctl, {block_size} x Session.add_message (by own time)",
                        profile_call(lambda: side.block(blocks[0])),
                    )
                )
            finally:
                side.close()
    return outcome


BENCHMARK = Benchmark(
    NAME, "durable in-process append vs raw psycopg over TCP (target >= 0.7x)", run
)
