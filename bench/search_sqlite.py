"""Search on SQLite at scale: memctl's search against hand-written FTS5, and recording cost.

``python -m bench.search_sqlite [--events N] [--quick]``

1. Builds (once, cached under ``$MEMCTL_BENCH_CACHE`` or ``~/.cache/memctl-bench``)
   a database of N agent-like events recorded through ``SQLiteStore.append``
   (which indexes as it records), with three planted words in about 0.01%, 1%
   and 10% of the events, then times a full rebuild of the index (what
   upgrading an existing database to search costs).
2. Times top-20 searches through ``memctl.sqlite_search.search`` (parse,
   translate, rank, snippets, JSON-ready hits) against the query a person would
   write by hand for the same result, and against FTS5 ranking alone.
3. Records events one per transaction into a fresh database through the
   store (which indexes them in batches, and is caught up at the end, inside
   the clock) against raw sqlite3 doing the same with a hand-written FTS5
   trigger on the content, and reports events/s.

``make bench`` runs it as the ``sqlite-search`` entry (``run`` below).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from memctl.models import NewEvent
from memctl.owners import Identity
from memctl.sqlite import SQLiteStore
from memctl.sqlite_schema import LATEST_VERSION
from memctl.sqlite_search import catch_up, rebuild, search
from memctl.storage import SearchFilters, Writer

from .registry import Benchmark, Config, Figure, Outcome, Row, Target

DATASET_VERSION = 2
PLANTED = {"zqrare": 0.0001, "zqmid": 0.01, "zqcommon": 0.10}
TARGET_MS = {"zqrare": 5.0, "zqmid": 50.0, "zqcommon": 200.0}
SESSIONS = 1_000
BATCH = 1_000


def cache_dir() -> Path:
    explicit = os.environ.get("MEMCTL_BENCH_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "memctl-bench"


def _vocabulary(rng: random.Random, size: int = 5_000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = {"".join(rng.choices(letters, k=rng.randint(3, 10))) for _ in range(size)}
    return sorted(words)


def events(total: int, seed: int = 7) -> Iterator[tuple[str, NewEvent]]:
    """(session, event) pairs: user / assistant with a tool call / tool output / assistant."""
    rng = random.Random(seed)
    vocab = _vocabulary(rng)
    # Zipf-like word frequencies, as in real text.
    weights = [1.0 / (rank + 1) for rank in range(len(vocab))]
    per_session = max(1, total // SESSIONS)

    def text(low: int, high: int) -> str:
        words = rng.choices(vocab, weights, k=rng.randint(low, high))
        for word, share in PLANTED.items():
            if rng.random() < share:
                words.insert(rng.randrange(len(words) + 1), word)
        return " ".join(words)

    for index in range(total):
        session = f"s_{index // per_session:06d}"
        kind = index % 4
        if kind == 0:
            yield session, NewEvent("message", "user", text(5, 30))
        elif kind == 1:
            arguments = {"path": f"src/{rng.choice(vocab)}.py", "limit": rng.randint(1, 500)}
            tool_call = {"id": f"c{index}", "name": "read_file", "arguments": arguments}
            yield session, NewEvent("message", "assistant", text(3, 15), tool_call=tool_call)
        elif kind == 2:
            yield session, NewEvent("message", "tool", text(10, 120), tool_call_id=f"c{index - 1}")
        else:
            yield session, NewEvent("message", "assistant", text(5, 60))


def build(path: Path, total: int) -> dict[str, float]:
    """Record ``total`` events, then add the index as the migration would."""
    partial = path.with_suffix(".partial")
    for suffix in ("", "-wal", "-shm"):
        Path(str(partial) + suffix).unlink(missing_ok=True)
    store = SQLiteStore(partial)
    writer = Writer(Identity.of(os.getpid()))
    started = time.perf_counter()
    batch: list[NewEvent] = []
    current = None
    for session, event in events(total):
        if (session != current or len(batch) >= BATCH) and batch:
            assert current is not None
            store.append(current, batch, writer)
            batch = []
        current = session
        batch.append(event)
        if len(batch) == 1 and current and total >= 100_000 and int(current[2:]) % 100 == 0:
            print(f"  recorded up to {current}", file=sys.stderr, flush=True)
    if batch and current is not None:
        store.append(current, batch, writer)
    recorded = time.perf_counter() - started
    conn = store._conn
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size_with = partial.stat().st_size
    started = time.perf_counter()
    with store._write():
        rebuild(conn, _progress())
    backfilled = time.perf_counter() - started
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    partial.rename(path)
    info = {"record_s": recorded, "backfill_s": backfilled, "bytes_with_index": size_with}
    path.with_suffix(".json").write_text(json.dumps(info))
    return info


def _progress() -> Callable[[int, int], None]:
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] > 5 or done == total:
            last[0] = now
            print(f"  indexed {done:,}/{total:,}", file=sys.stderr, flush=True)

    return report


def dataset(total: int) -> tuple[Path, dict[str, float]]:
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"search-sqlite-{total}-s{LATEST_VERSION}-v{DATASET_VERSION}.db"
    if path.exists():
        return path, json.loads(path.with_suffix(".json").read_text())
    print(f"building {path} (once)", file=sys.stderr)
    return path, build(path, total)


def timed(action: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall time in ms over ``repeat`` runs after one warm-up."""
    result = action()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), result


RAW_WITH_SNIPPET = (
    "SELECT e.session, e.seq, e.ts, e.type, e.role,"
    " snippet(events_fts, 0, '[', ']', '…', 16), bm25(events_fts)"
    " FROM events_fts JOIN events e ON e.pk = events_fts.rowid"
    " WHERE events_fts MATCH ? ORDER BY rank LIMIT 20"
)
RAW_RANK_ONLY = "SELECT rowid, rank FROM events_fts WHERE events_fts MATCH ? ORDER BY rank LIMIT 20"


def query_bench(path: Path, repeat: int) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path, isolation_level=None)
    rows: list[dict[str, Any]] = []
    total = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    queries = [(word, f'"{word}"') for word in PLANTED]
    queries += [
        ("zqmid zqcommon", '"zqmid" AND "zqcommon"'),
        ("zqcom*", '"zqcom"*'),
        ("zqcommon -zqmid", '"zqcommon" NOT "zqmid"'),
    ]
    for query, raw in queries:
        count = conn.execute(
            "SELECT count(*) FROM events_fts WHERE events_fts MATCH ?", (raw,)
        ).fetchone()[0]

        def ours(query: str = query) -> list[dict[str, Any]]:
            return [hit.to_dict() for hit in search(conn, query)]

        def by_hand(raw: str = raw, sql: str = RAW_WITH_SNIPPET) -> list[Any]:
            return conn.execute(sql, (raw,)).fetchall()

        def rank_only(raw: str = raw) -> list[Any]:
            return conn.execute(RAW_RANK_ONLY, (raw,)).fetchall()

        def recent(query: str = query) -> list[Any]:
            return search(conn, query, SearchFilters(order="recent"))

        def one_session(query: str = query) -> list[Any]:
            return search(conn, query, SearchFilters(session="s_000500"))

        ours_ms, hits = timed(ours, repeat)
        raw_ms, _ = timed(by_hand, repeat)
        rank_ms, _ = timed(rank_only, repeat)
        recent_ms, _ = timed(recent, repeat)
        session_ms, _ = timed(one_session, repeat)
        rows.append(
            {
                "query": query,
                "matches": count,
                "share": count / total,
                "memctl_ms": ours_ms,
                "raw_snippet_ms": raw_ms,
                "raw_rank_only_ms": rank_ms,
                "ratio": ours_ms / raw_ms if raw_ms else float("nan"),
                "recent_ms": recent_ms,
                "session_filter_ms": session_ms,
                "target_ms": TARGET_MS.get(query),
                "hits": len(hits),
            }
        )
    conn.close()
    return rows


RAW_SCHEMA = [
    "CREATE TABLE sessions (id TEXT PRIMARY KEY, last_seq INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE events (pk INTEGER PRIMARY KEY, session TEXT NOT NULL, seq INTEGER NOT NULL,"
    " id TEXT NOT NULL UNIQUE, ts TEXT NOT NULL, type TEXT NOT NULL, role TEXT, content TEXT,"
    " tool_call TEXT, tool_call_id TEXT, payload TEXT, UNIQUE (session, seq))",
    "CREATE VIRTUAL TABLE events_fts USING fts5(body)",
    "CREATE TRIGGER events_ai AFTER INSERT ON events BEGIN"
    " INSERT INTO events_fts (rowid, body) VALUES (new.pk, new.content); END",
]


def record_memctl(stream: list[NewEvent], directory: Path, sync: str) -> float:
    """Events/s through the store, one per transaction, the index caught up at the end."""
    store = SQLiteStore(directory / "memctl.db", durability="full" if sync == "FULL" else "normal")
    writer = Writer(Identity.of(os.getpid()))
    started = time.perf_counter()
    for event in stream:
        store.append("s_bench", [event], writer)
    # The index trails the log by up to INDEX_EVERY events; the work of
    # catching it up (what the next search would do) is part of recording.
    with store._write() as conn:
        catch_up(conn)
    elapsed = time.perf_counter() - started
    assert store._conn.execute("SELECT count(*) FROM events_fts").fetchone()[0] == len(stream)
    store.close()
    return len(stream) / elapsed


def record_raw(stream: list[NewEvent], directory: Path, sync: str) -> float:
    """The hand-written reference: BEGIN IMMEDIATE, seq, insert, FTS5 trigger, COMMIT."""
    conn = sqlite3.connect(directory / "raw.db", isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync}")
    for statement in RAW_SCHEMA:
        conn.execute(statement)
    conn.execute("INSERT INTO sessions (id) VALUES ('s_bench')")
    started = time.perf_counter()
    for number, event in enumerate(stream):
        conn.execute("BEGIN IMMEDIATE")
        (seq,) = conn.execute(
            "UPDATE sessions SET last_seq = last_seq + 1 WHERE id = 's_bench' RETURNING last_seq"
        ).fetchone()
        conn.execute(
            "INSERT INTO events (session, seq, id, ts, type, role, content, tool_call, payload)"
            " VALUES ('s_bench', ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                seq,
                f"e{number}",
                "2026-11-25T00:00:00.000000Z",
                event.type,
                event.role,
                event.content,
                json.dumps(event.tool_call) if event.tool_call else None,
                json.dumps(event.payload) if event.payload else None,
            ),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return len(stream) / elapsed


def record_bench(count: int, sync: str = "NORMAL") -> tuple[float, float]:
    """(memctl, raw) events/s, alternating halves so load hits both alike."""
    stream = [event for _, event in events(count, seed=11)]
    half = len(stream) // 2
    mine: list[float] = []
    theirs: list[float] = []
    for part in (stream[:half], stream[half:]):
        with tempfile.TemporaryDirectory() as directory:
            mine.append(record_memctl(part, Path(directory), sync))
        with tempfile.TemporaryDirectory() as directory:
            theirs.append(record_raw(part, Path(directory), sync))
    return statistics.mean(mine), statistics.mean(theirs)


NAME = "sqlite-search"


def run(config: Config) -> Outcome:
    """The ``make bench`` entry: ranked top-20 queries, then recording with the index."""
    total = config.pick(1_000_000, 20_000)
    path, _ = dataset(total)
    outcome = Outcome()
    for row in query_bench(path, config.pick(15, 3)):
        if row["target_ms"] is None:
            continue
        what = f"search top-20, {row['share']:.2%} of {total:,} events vs raw FTS5 + snippet"
        ours = Figure(row["memctl_ms"], "ms")
        raw = Figure(row["raw_snippet_ms"], "ms")
        note = (
            f"{row['query']}: {row['matches']:,} matches; ranking alone "
            f"{row['raw_rank_only_ms']:.2f} ms; --order recent {row['recent_ms']:.2f} ms"
        )
        outcome.rows.append(Row(NAME, what, ours, raw, Target("<=", 1.5), note))
        outcome.rows.append(Row(NAME, what, ours, raw, Target("<=", row["target_ms"], on="memctl")))
    mine, theirs = record_bench(config.pick(4_000, 500))
    outcome.rows.append(
        Row(
            NAME,
            "record with the index, 1 event/txn vs raw sqlite3 + FTS5 trigger",
            Figure(mine, "ev/s"),
            Figure(theirs, "ev/s"),
            Target(">=", 3000, on="memctl"),
            "synchronous=NORMAL (memctl's default); the raw trigger indexes content only",
        )
    )
    return outcome


BENCHMARK = Benchmark(NAME, "full-text search over 1M events, and recording with the index", run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search_sqlite", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--record", type=int, default=3_000, help="events for the recording run")
    parser.add_argument("--quick", action="store_true", help="20,000 events, few repeats")
    parser.add_argument("--only", choices=("query", "record"), help="run one half")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.repeat, args.record = 20_000, 3, 500
    if args.only in (None, "query"):
        path, info = dataset(args.events)
        print(f"dataset: {path}")
        print(
            f"  recorded {args.events:,} events in {info['record_s']:.1f}s; "
            f"rebuilding the index (what the migration costs) {info['backfill_s']:.1f}s; "
            f"size {info['bytes_with_index'] / 1e6:.0f} MB"
        )
        print(
            f"\n{'query':<18}{'matches':>9}{'share':>8}{'memctl':>9}{'raw+snip':>10}{'rank only':>11}"
            f"{'ratio':>7}{'target':>8}{'recent':>9}{'-s':>8}   (ms, median of {args.repeat})"
        )
        for row in query_bench(path, args.repeat):
            target = f"{row['target_ms']:.0f}" if row["target_ms"] else "-"
            print(
                f"{row['query']:<18}{row['matches']:>9,}{row['share']:>8.2%}{row['memctl_ms']:>9.2f}"
                f"{row['raw_snippet_ms']:>10.2f}{row['raw_rank_only_ms']:>11.2f}{row['ratio']:>7.2f}"
                f"{target:>8}{row['recent_ms']:>9.2f}{row['session_filter_ms']:>8.2f}"
            )
    if args.only in (None, "record"):
        mine, theirs = record_bench(args.record)
        print(
            f"\nrecording {args.record:,} events, one per transaction: memctl {mine:,.0f}/s,"
            f" raw FTS5 trigger {theirs:,.0f}/s ({mine / theirs:.0%} of raw)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
