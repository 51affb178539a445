"""Resume of one big session inside a big PostgreSQL database.

``Memory.restore(session)`` against the raw query a hand-written agent would
run (the session's messages in seq order, ``json.loads`` of the JSON
columns), alternating, on the same server and tables.

The database (1,000,000 messages in 1,000 sessions, one of them 10,000 long,
spread through the build as in ``datasets``) takes a while to build, so it is
built once into a schema of its own and kept between runs. The schema's name
carries memctl's PostgreSQL schema version and ``DATASET_VERSION``: a
migration or a change to the data gives a new name, and the stale schemas of
the same dataset are dropped. It is built under a temporary name and renamed
when complete, so an interrupted build is never mistaken for a finished one.
"""

from __future__ import annotations

import json
import os
import sys
import time
import zlib
from collections.abc import Iterator
from typing import Any

import memctl
from memctl.models import NewEvent
from memctl.owners import Identity
from memctl.pg_schema import LATEST_VERSION
from memctl.storage import Writer, open_store

from .corpus import Message
from .corpus import messages as message_stream
from .datasets import RESUME_FULL, RESUME_QUICK, ResumeSpec
from .measure import alternate, median, paired_ratios, spread
from .pg_common import (
    connect,
    create_schema,
    drop_schema,
    schema_url,
    server_url,
    skipped,
    unavailable,
)
from .profiling import profile_call
from .registry import Benchmark, Config, Figure, Outcome, Row, Target

NAME = "pg-resume"
# Bump when the generated content or layout changes.
DATASET_VERSION = 1
PREFIX = "memctl_bench_resume_"

RAW_QUERY = (
    "SELECT session, seq, id, ts, type, role, content, tool_call::text, tool_call_id,"
    " payload::text FROM events WHERE session = %s AND type = 'message' ORDER BY seq"
)


def dataset_schema(spec: ResumeSpec) -> str:
    return f"{PREFIX}{spec.label}_schema{LATEST_VERSION}_data{DATASET_VERSION}"


def resume_schema(url: str, spec: ResumeSpec) -> str:
    """The URL of the cached dataset for ``spec``, built first if missing or stale."""
    name = dataset_schema(spec)
    conn: Any = connect(url)
    with conn:
        found = [
            row[0]
            for row in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)",
                (f"{PREFIX}{spec.label}_",),
            )
        ]
    if name in found:
        return schema_url(url, name)
    for stale in found:
        drop_schema(url, stale)
    partial = f"{PREFIX}{spec.label}_building"
    drop_schema(url, partial)
    create_schema(url, partial)
    _build(spec, schema_url(url, partial))
    from psycopg import sql

    conn = connect(url)
    with conn:
        conn.execute(
            sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                sql.Identifier(partial), sql.Identifier(name)
            )
        )
    return schema_url(url, name)


def _build(spec: ResumeSpec, url: str) -> None:
    store = open_store(url)
    writer = Writer(Identity.of(os.getpid()))
    streams: dict[str, Iterator[Message]] = {}
    done, shown, start = 0, -1, time.monotonic()
    try:
        for session_id, size in spec.plan():
            stream = streams.setdefault(
                session_id, message_stream(seed=zlib.crc32(session_id.encode()))
            )
            batch = []
            for _ in range(size):
                m = next(stream)
                batch.append(
                    NewEvent(
                        type="message",
                        role=m.role,
                        content=m.content,
                        tool_call=m.tool_call,
                        tool_call_id=m.tool_call_id,
                    )
                )
            store.append(session_id, batch, writer)
            done += size
            if done * 10 // spec.total != shown:
                shown = done * 10 // spec.total
                elapsed = time.monotonic() - start
                print(
                    f"  building {spec.label} resume dataset on PostgreSQL: {done:,}/"
                    f"{spec.total:,} events ({done / max(elapsed, 1e-9):,.0f}/s)",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        store.close()
    conn: Any = connect(url)
    with conn:
        conn.execute("VACUUM ANALYZE events")
        conn.execute("VACUUM ANALYZE sessions")


def raw_restore(conn: Any, session_id: str) -> list[tuple[Any, ...]]:
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
    url = server_url()
    reason = unavailable(url)
    if reason is not None:
        return skipped(NAME, reason)
    spec = RESUME_QUICK if config.quick else RESUME_FULL
    target = resume_schema(url, spec)
    session_id = spec.target_session
    rounds = config.pick(15, 5)
    memory = memctl.open(target)
    conn: Any = connect(target)
    outcome = Outcome()
    try:
        # Warm both (and the server's cache), and check they agree on the answer.
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
        outcome.rows.append(
            Row(
                NAME,
                f"Memory.restore, {spec.target:,} of {spec.total:,} msgs vs raw query",
                Figure(median(mine) * 1000, "ms"),
                Figure(median(theirs) * 1000, "ms"),
                Target("<=", 100, on="memctl"),
                f"{rounds} alternating runs each over TCP; memctl {spread(mine, 1000)} ms, raw "
                f"{spread(theirs, 1000)} ms, per-pair ratio "
                f"{spread(paired_ratios(mine, theirs), fmt='{:.2f}')}; dataset kept in schema "
                f"{dataset_schema(spec)}",
            )
        )
        if config.profile:
            outcome.profiles.append(
                (f"{NAME}: Memory.restore (by own time)", profile_call(lambda: ours()))
            )
    finally:
        memory.close()
        conn.close()
    return outcome


BENCHMARK = Benchmark(
    NAME, "resume 10k-message session in a 1M-event PostgreSQL db (target <= 100 ms)", run
)
