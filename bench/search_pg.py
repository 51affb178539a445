"""Search on PostgreSQL at scale: memctl's search against the query a person would write.

The dataset is ``search_sqlite``'s (same generator, same planted words in
about 0.01%, 1% and 10% of the events), recorded through memctl's own write
path (``Store.append`` in batches), so the stored search vectors are exactly
what memctl writes. Building a million events takes a while, so it is built
once into a schema of its own and kept between runs, as ``pg_resume`` does:
the schema's name carries memctl's PostgreSQL schema version and
``DATASET_VERSION`` (a migration or a change to the data gives a new name,
and the stale schemas of the same dataset are dropped), and it is built
under a temporary name and renamed when complete. What the build cost is kept
in the schema's comment.

Each planted word is searched top-20 by rank through ``Memory.search`` (what
``memctl search`` calls: parse, SQL, ranking, snippets in Python), and by a
hand-written ``ts_rank(search, q, 1)`` query that returns the same hits with
a highlighted snippet of their content (``ts_headline`` on the 20 survivors,
PostgreSQL's counterpart of the ``snippet()`` in ``search_sqlite``'s raw
query), alternating, on one warm connection each. The same query without
snippets is timed too and shown in the note.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import memctl
from memctl.models import NewEvent
from memctl.owners import Identity
from memctl.pg_schema import LATEST_VERSION
from memctl.storage import Writer, open_store

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
from .search_sqlite import BATCH, PLANTED, TARGET_MS, events

NAME = "pg-search"
# Bump when the generated content or layout changes.
DATASET_VERSION = 1
PREFIX = "memctl_bench_search_"
LIMIT = 20

# What a person would write: rank every match, keep the best 20, and show each
# with a highlighted snippet of its content (ts_headline on the 20 only).
RAW_QUERY = (
    "SELECT session, seq, ts, type, role,"
    " ts_headline('simple', content, q, 'StartSel=[, StopSel=], MaxWords=16, MinWords=5') AS snippet,"
    " r FROM (SELECT session, seq, ts, type, role, content, q, ts_rank(search, q, 1) AS r"
    " FROM events, to_tsquery('simple', %s) q WHERE search @@ q ORDER BY r DESC LIMIT 20) AS top"
    " ORDER BY r DESC"
)
# The same hits with their content but no snippet.
RAW_NO_SNIPPET = (
    "SELECT session, seq, ts, type, role, content, ts_rank(search, q, 1) AS r"
    " FROM events, to_tsquery('simple', %s) q WHERE search @@ q ORDER BY r DESC LIMIT 20"
)
RANK_ONLY = (
    "SELECT session, seq, ts_rank(search, q, 1) AS r"
    " FROM events, to_tsquery('simple', %s) q WHERE search @@ q ORDER BY r DESC LIMIT 20"
)
COUNT = "SELECT count(*) FROM events WHERE search @@ to_tsquery('simple', %s)"


def dataset_schema(total: int) -> str:
    return f"{PREFIX}{total}_schema{LATEST_VERSION}_data{DATASET_VERSION}"


def search_schema(url: str, total: int) -> tuple[str, dict[str, Any]]:
    """The URL of the cached dataset of ``total`` events (built first if missing or
    stale), and what building it cost."""
    from psycopg import sql

    name = dataset_schema(total)
    conn: Any = connect(url)
    with conn:
        found = {
            row[0]: row[1]
            for row in conn.execute(
                "SELECT nspname, obj_description(oid, 'pg_namespace') FROM pg_namespace"
                " WHERE starts_with(nspname, %s)",
                (f"{PREFIX}{total}_",),
            )
        }
    if name in found:
        return schema_url(url, name), json.loads(found[name] or "{}")
    for stale in found:
        drop_schema(url, stale)
    partial = f"{PREFIX}{total}_building"
    drop_schema(url, partial)
    create_schema(url, partial)
    print(f"  building {name} on PostgreSQL (once)", file=sys.stderr, flush=True)
    info = _build(total, schema_url(url, partial))
    conn = connect(url)
    with conn:
        conn.execute(
            sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
                sql.Identifier(partial), sql.Literal(json.dumps(info))
            )
        )
        conn.execute(
            sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                sql.Identifier(partial), sql.Identifier(name)
            )
        )
    return schema_url(url, name), info


def _build(total: int, url: str) -> dict[str, Any]:
    store = open_store(url)
    writer = Writer(Identity.of(os.getpid()))
    done, shown, start = 0, -1, time.perf_counter()
    batch: list[NewEvent] = []
    current: str | None = None
    try:
        for session, event in events(total):
            if (session != current or len(batch) >= BATCH) and batch:
                assert current is not None
                store.append(current, batch, writer)
                done += len(batch)
                batch = []
                if done * 10 // total != shown:
                    shown = done * 10 // total
                    elapsed = time.perf_counter() - start
                    print(
                        f"  building search dataset on PostgreSQL: {done:,}/{total:,} events"
                        f" ({done / max(elapsed, 1e-9):,.0f}/s)",
                        file=sys.stderr,
                        flush=True,
                    )
            current = session
            batch.append(event)
        if batch and current is not None:
            store.append(current, batch, writer)
    finally:
        store.close()
    recorded = time.perf_counter() - start
    start = time.perf_counter()
    conn: Any = connect(url)
    with conn:
        conn.execute("VACUUM ANALYZE events")
        conn.execute("VACUUM ANALYZE sessions")
        vacuumed = time.perf_counter() - start
        sizes = conn.execute(
            "SELECT pg_total_relation_size('events'), pg_relation_size('events_search')"
        ).fetchone()
    return {
        "record_s": recorded,
        "vacuum_s": vacuumed,
        "events_bytes": sizes[0],
        "gin_bytes": sizes[1],
    }


def raw_search(conn: Any, word: str, sql: str = RAW_QUERY) -> list[tuple[Any, ...]]:
    return list(conn.execute(sql, (word,)).fetchall())


def run(config: Config) -> Outcome:
    url = server_url()
    reason = unavailable(url)
    if reason is not None:
        return skipped(NAME, reason)
    total = config.pick(1_000_000, 20_000)
    target, info = search_schema(url, total)
    rounds = config.pick(15, 3)
    memory = memctl.open(target)
    conn: Any = connect(target)
    outcome = Outcome()
    built = (
        f"dataset {dataset_schema(total)}: recorded through Store.append in"
        f" {info.get('record_s', float('nan')):,.0f}s, VACUUM ANALYZE"
        f" {info.get('vacuum_s', float('nan')):,.0f}s, events"
        f" {info.get('events_bytes', 0) / 1e6:,.0f} MB with GIN {info.get('gin_bytes', 0) / 1e6:,.0f} MB"
    )
    # What decides the common word's time: whether the table fits in the
    # server's buffers (default 128 MB), and whether the planner, told that
    # random reads are dear (default 4), scans the whole table instead of
    # following the GIN index. See the README's server settings.
    buffers, random_cost = conn.execute(
        "SELECT current_setting('shared_buffers'), current_setting('random_page_cost')"
    ).fetchone()
    built += f"; server shared_buffers {buffers}, random_page_cost {random_cost}"
    try:
        for word, share in PLANTED.items():
            matches = int(conn.execute(COUNT, (word,)).fetchone()[0])

            def ours(word: str = word) -> list[dict[str, Any]]:
                return [hit.to_dict() for hit in memory.search(word, limit=LIMIT, order="rank")]

            # Warm both, and check they agree on the scores of the top 20 (ties may
            # pick different rows; the ranking must not differ).
            hits = ours()
            raw = raw_search(conn, word)
            mine_scores = [round(float(h["score"]), 4) for h in hits]
            raw_scores = [round(float(r[-1]), 4) for r in raw]
            if len(hits) != min(LIMIT, matches) or mine_scores != raw_scores:
                raise AssertionError(
                    f"{word}: memctl returned {len(hits)} hits scored {mine_scores[:5]}..., "
                    f"raw {len(raw)} scored {raw_scores[:5]}... ({matches:,} matches)"
                )

            def timed_ours(word: str = word) -> float:
                start = time.perf_counter()
                ours(word)
                return time.perf_counter() - start

            def timed_raw(word: str = word, sql: str = RAW_QUERY) -> float:
                start = time.perf_counter()
                raw_search(conn, word, sql)
                return time.perf_counter() - start

            def timed_rank(word: str = word) -> float:
                return timed_raw(word, RANK_ONLY)

            def timed_plain(word: str = word) -> float:
                return timed_raw(word, RAW_NO_SNIPPET)

            mine, theirs = alternate(timed_ours, timed_raw, rounds)
            rank_only = [timed_rank() for _ in range(max(3, rounds // 3))]
            plain = [timed_plain() for _ in range(max(3, rounds // 3))]
            what = (
                f"search top-20, {matches / total:.2%} of {total:,} events"
                " vs raw ts_rank + ts_headline"
            )
            ours_fig = Figure(median(mine) * 1000, "ms")
            raw_fig = Figure(median(theirs) * 1000, "ms")
            note = (
                f"{word}: {matches:,} matches (planted in {share:.2%}); {rounds} alternating runs"
                f" on warm connections; memctl {spread(mine, 1000)} ms, raw"
                f" {spread(theirs, 1000)} ms, per-pair ratio"
                f" {spread(paired_ratios(mine, theirs), fmt='{:.2f}')}; raw without snippets"
                f" {median(plain) * 1000:.1f} ms, without content {median(rank_only) * 1000:.1f} ms"
            )
            if word == "zqrare":
                note += f"; {built}"
            outcome.rows.append(Row(NAME, what, ours_fig, raw_fig, Target("<=", 1.5), note))
            outcome.rows.append(
                Row(NAME, what, ours_fig, raw_fig, Target("<=", TARGET_MS[word], on="memctl"))
            )
            if config.profile:
                outcome.profiles.append(
                    (f"{NAME}: Memory.search({word!r}) (by own time)", profile_call(ours))
                )
    finally:
        memory.close()
        conn.close()
    return outcome


BENCHMARK = Benchmark(
    NAME, "full-text search over 1M events on PostgreSQL vs a raw ts_rank query", run
)
