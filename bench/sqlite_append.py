"""Durable in-process append on SQLite: memctl's library against raw ``sqlite3``.

Both sides record the same messages, one per transaction, into a fresh file
with memctl's own schema and the same pragmas (WAL, synchronous=NORMAL,
busy_timeout). The raw side does the least that the same guarantees need:
``BEGIN IMMEDIATE``, read the session's counter, insert the row, update the
counter, ``COMMIT``. The work is cut into blocks and the two sides take turns
block by block, so machine noise lands on both.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

import memctl
from memctl.sqlite_schema import LATEST_VERSION, MIGRATIONS

from .corpus import Message, take
from .measure import median, paired_ratios, spread
from .profiling import profile_call
from .registry import Benchmark, Config, Figure, Outcome, Row, Target

NAME = "sqlite-append"
BUSY_TIMEOUT_MS = 30_000


class MemctlSide:
    """memctl's public library path: open, start, add_message."""

    def __init__(self, path: Path) -> None:
        self.memory = memctl.open(str(path))
        self.session = self.memory.start(title="bench")

    def block(self, batch: list[Message]) -> float:
        add = self.session.add_message
        start = time.perf_counter()
        for m in batch:
            add(m.role, m.content, tool_call=m.tool_call, tool_call_id=m.tool_call_id)
        return time.perf_counter() - start

    def close(self) -> None:
        self.memory.close()


def raw_connection(path: Path) -> sqlite3.Connection:
    """A connection configured as memctl configures its own."""
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


def create_schema(conn: sqlite3.Connection) -> None:
    """memctl's tables and indexes, so both sides maintain the same B-trees."""
    conn.execute("BEGIN IMMEDIATE")
    for _, statements in MIGRATIONS:
        for statement in statements:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version={LATEST_VERSION}")
    conn.execute("COMMIT")


class RawSide:
    """The same durable append written by hand against ``sqlite3``."""

    SESSION = "s_raw"

    def __init__(self, path: Path) -> None:
        self.conn = raw_connection(path)
        create_schema(self.conn)
        now = _now()
        self.conn.execute(
            "INSERT INTO sessions (id, created_at, last_activity_at) VALUES (?, ?, ?)",
            (self.SESSION, now, now),
        )

    def block(self, batch: list[Message]) -> float:
        execute = self.conn.execute
        sid = self.SESSION
        start = time.perf_counter()
        for m in batch:
            execute("BEGIN IMMEDIATE")
            (last,) = execute("SELECT last_seq FROM sessions WHERE id = ?", (sid,)).fetchone()
            seq = last + 1
            ts = _now()
            execute(
                "INSERT INTO events (session, seq, id, ts, type, role, content, tool_call,"
                " tool_call_id, payload) VALUES (?, ?, ?, ?, 'message', ?, ?, ?, ?, NULL)",
                (
                    sid,
                    seq,
                    "e_" + os.urandom(13).hex(),
                    ts,
                    m.role,
                    m.content,
                    None if m.tool_call is None else json.dumps(m.tool_call),
                    m.tool_call_id,
                ),
            )
            execute(
                "UPDATE sessions SET last_seq = ?, last_activity_at = ? WHERE id = ?",
                (seq, ts, sid),
            )
            execute("COMMIT")
        return time.perf_counter() - start

    def close(self) -> None:
        self.conn.close()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def run(config: Config) -> Outcome:
    total = config.pick(10_000, 1_000)
    block_size = config.pick(1_000, 200)
    repeats = config.pick(3, 2)
    work = take(seed=1, count=total)
    blocks = [work[i : i + block_size] for i in range(0, total, block_size)]

    memctl_rates: list[float] = []
    raw_rates: list[float] = []
    block_ratios: list[float] = []
    for repeat in range(repeats):
        base = config.workdir / f"append-{repeat}"
        base.mkdir()
        ours, raw = MemctlSide(base / "memctl.db"), RawSide(base / "raw.db")
        try:
            ours_times: list[float] = []
            raw_times: list[float] = []
            for index, batch in enumerate(blocks):
                # Take turns, and swap who goes first each block and each repeat.
                if (index + repeat) % 2 == 0:
                    ours_times.append(ours.block(batch))
                    raw_times.append(raw.block(batch))
                else:
                    raw_times.append(raw.block(batch))
                    ours_times.append(ours.block(batch))
            memctl_rates.append(total / sum(ours_times))
            raw_rates.append(total / sum(raw_times))
            block_ratios += paired_ratios(raw_times, ours_times)
        finally:
            ours.close()
            raw.close()

    outcome = Outcome()
    outcome.rows.append(
        Row(
            bench=NAME,
            what=f"durable append, {total:,} msgs 1/txn vs raw sqlite3",
            memctl=Figure(median(memctl_rates), "ev/s"),
            reference=Figure(median(raw_rates), "ev/s"),
            target=Target(">=", 0.6),
            note=(
                f"{repeats} repeats x {len(blocks)} alternating blocks of {block_size}; "
                f"per-block ratio {spread(block_ratios, fmt='{:.2f}')}"
            ),
        )
    )
    if config.profile:
        target = config.workdir / "append-profile"
        target.mkdir()
        side = MemctlSide(target / "memctl.db")
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


BENCHMARK = Benchmark(NAME, "durable in-process append vs raw sqlite3 (target >= 0.6x)", run)
