"""Many real `memctl record` processes streaming at once: nothing lost, nothing doubled."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from pytest import MonkeyPatch

import memctl
from memctl import sqlite
from tests.conftest import MEMCTL

PROCESSES = 8
EVENTS = 500
# A few hundred bytes of content per event, so each stream spans several reads.
PAD = "x" * 300
# Lines are written in small groups, so every process commits many small
# transactions that interleave with the others' instead of one big batch.
GROUP = 10


def lines_for(process: int) -> list[bytes]:
    return [
        json.dumps(
            {"role": "user", "content": f"p{process} e{i} {PAD}", "id": f"p{process}-e{i}"}
        ).encode()
        + b"\n"
        for i in range(EVENTS)
    ]


def feed(
    proc: subprocess.Popen[bytes], lines: list[bytes], ready: threading.Barrier, first: list[bytes]
) -> None:
    """Send one line, wait until every process has stored its first, then stream the rest."""
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(lines[0])
        proc.stdin.flush()
        first.append(proc.stdout.readline())
        ready.wait(timeout=60)
        for start in range(1, len(lines), GROUP):
            proc.stdin.write(b"".join(lines[start : start + GROUP]))
            proc.stdin.flush()
            time.sleep(0.001)
    except BrokenPipeError:
        pass  # the process died; its exit code and stderr tell why
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()


def stream_all(db_url: str, sessions: list[str]) -> list[tuple[int, bytes, bytes]]:
    """Run one `memctl record -s SESSION` per entry at once; return (rc, stdout, stderr)."""
    procs = [
        subprocess.Popen(
            [MEMCTL, "--db", db_url, "record", "-s", sid],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for sid in sessions
    ]
    ready = threading.Barrier(len(procs))
    firsts: list[list[bytes]] = [[] for _ in procs]
    feeders = [
        threading.Thread(target=feed, args=(proc, lines_for(number), ready, firsts[number]))
        for number, proc in enumerate(procs)
    ]
    for feeder in feeders:
        feeder.start()
    for feeder in feeders:
        feeder.join()
    results = []
    for proc, first in zip(procs, firsts, strict=True):
        assert proc.stdout is not None and proc.stderr is not None
        # The feeder read the first seq line; the rest is still in the pipe.
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.wait(timeout=120)
        proc.stdout.close()
        proc.stderr.close()
        results.append((proc.returncode, b"".join(first) + out, err))
    return results


def assert_clean_runs(results: list[tuple[int, bytes, bytes]]) -> None:
    for code, _, err in results:
        assert b"locked" not in err.lower()
        assert err == b"", err.decode(errors="replace")
        assert code == 0


def test_eight_processes_share_one_session(db_url: str) -> None:
    """8 processes x 500 events into one session: each stored once, seqs gapless, no errors."""
    sid = "conc-shared"
    results = stream_all(db_url, [sid] * PROCESSES)
    assert_clean_runs(results)
    with memctl.open(db_url) as mem:
        events = mem.events(sid)
        problems = mem.store.check()
    total = PROCESSES * EVENTS
    assert [e.seq for e in events] == list(range(1, total + 1))
    ids = Counter(e.id for e in events)
    assert set(ids) == {f"p{p}-e{i}" for p in range(PROCESSES) for i in range(EVENTS)}
    assert max(ids.values()) == 1
    assert all(
        e.content is not None and e.content.startswith(e.id.replace("-", " ")) for e in events
    )
    # Each process printed the seqs it was given: together, every seq exactly once.
    printed = [int(seq) for _, out, _ in results for seq in out.split()]
    assert sorted(printed) == list(range(1, total + 1))
    # Within one process, its own events keep their input order.
    for process in range(PROCESSES):
        own = [e.seq for e in events if e.id.startswith(f"p{process}-")]
        assert own == sorted(own)
    assert problems == []


def test_eight_processes_each_own_session(db_url: str) -> None:
    """8 processes x 500 events, one session each: every session complete and gapless."""
    sessions = [f"conc-own-{p}" for p in range(PROCESSES)]
    results = stream_all(db_url, sessions)
    assert_clean_runs(results)
    with memctl.open(db_url) as mem:
        for process, sid in enumerate(sessions):
            events = mem.events(sid)
            assert [e.seq for e in events] == list(range(1, EVENTS + 1))
            assert [e.id for e in events] == [f"p{process}-e{i}" for i in range(EVENTS)]
            info = mem.get(sid)
            assert info.events == info.messages == EVENTS
        assert mem.store.check() == []
    for _, out, _ in results:
        assert out.split() == [str(seq).encode() for seq in range(1, EVENTS + 1)]


def test_a_held_sqlite_lock_is_waited_for_once(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    """A write behind a lock held elsewhere gives up after the busy timeout, not twice that.

    SQLite's busy handler waits out busy_timeout and then reports the
    database busy; memctl's retry after that must not wait a full timeout again.
    """
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT_SECONDS", 2.0)
    path = tmp_path / "m.db"
    with memctl.open(str(path)) as mem:
        mem.start(session_id="held").add_message("user", "first")
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer, stuck inside its transaction
        try:
            started = time.monotonic()
            with pytest.raises(memctl.StorageUnavailable, match="stayed locked"):
                mem.start(session_id="blocked")
            waited = time.monotonic() - started
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        # 2 s of timeout: before the fix this took 4 s. Generous above, for a loaded machine.
        assert 1.9 <= waited < 3.5, waited
        # The connection's own timeout is back to the full value: the next write works.
        assert mem.start(session_id="after").id == "after"
        store = mem.store
        assert isinstance(store, sqlite.SQLiteStore)
        assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 2000
