"""Large databases built once and cached outside the repository.

Building a million events takes a while, so each dataset is kept under
``$MEMCTL_BENCH_CACHE`` (default ``~/.cache/memctl-bench``) and named after
the schema version it was built with and this module's ``DATASET_VERSION``:
a schema migration or a change to the data's shape gives a new name, and the
stale files of the same dataset are deleted. A file is built under a
temporary name and renamed when complete, so an interrupted build is never
mistaken for a finished one.

Datasets are built through memctl's own store API (``Store.append`` with
large batches), so they hold exactly what memctl would have written.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from memctl.models import NewEvent
from memctl.owners import Identity
from memctl.sqlite_schema import LATEST_VERSION
from memctl.storage import Writer, open_store

from .corpus import Message, messages

# Bump when the generated content or layout changes.
DATASET_VERSION = 1
BATCH = 1_000


def default_cache_dir() -> Path:
    explicit = os.environ.get("MEMCTL_BENCH_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "memctl-bench"


@dataclass(frozen=True)
class ResumeSpec:
    """One big session among many: ``target`` messages in ``target_session``,
    the rest of ``total`` spread over ``sessions - 1`` others."""

    label: str
    total: int
    sessions: int
    target: int

    target_session: str = "s_bench_resume_target"

    def filename(self) -> str:
        return f"resume-{self.label}-schema{LATEST_VERSION}-data{DATASET_VERSION}.db"

    def plan(self) -> list[tuple[str, int]]:
        """(session, batch size) in write order.

        The target session's batches are spread evenly through the build, as
        if it ran alongside the others, so its rows are not one contiguous run.
        """
        others = self.sessions - 1
        rest = self.total - self.target
        base, extra = divmod(rest, others)
        filler: list[tuple[str, int]] = []
        for index in range(others):
            remaining = base + (1 if index < extra else 0)
            while remaining > 0:
                size = min(BATCH, remaining)
                filler.append((f"s_bench_{index:05d}", size))
                remaining -= size
        target_batches = [
            (self.target_session, min(BATCH, self.target - start))
            for start in range(0, self.target, BATCH)
        ]
        every = max(1, len(filler) // max(1, len(target_batches)))
        plan: list[tuple[str, int]] = []
        pending = iter(target_batches)
        for position, item in enumerate(filler):
            if position % every == every // 2:
                batch = next(pending, None)
                if batch is not None:
                    plan.append(batch)
            plan.append(item)
        plan.extend(pending)
        return plan


RESUME_FULL = ResumeSpec("1m", total=1_000_000, sessions=1_000, target=10_000)
RESUME_QUICK = ResumeSpec("50k", total=50_000, sessions=50, target=2_000)


def resume_db(spec: ResumeSpec, cache_dir: Path) -> Path:
    """The cached database for ``spec``, built first if missing or stale."""
    path = cache_dir / spec.filename()
    if path.exists() and _version(path) == LATEST_VERSION:
        return path
    cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in cache_dir.glob(f"resume-{spec.label}-*"):
        stale.unlink()
    partial = cache_dir / f".{spec.filename()}.partial"
    _build(spec, partial)
    partial.rename(path)
    return path


def _version(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def _build(spec: ResumeSpec, path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    store = open_store(str(path))
    writer = Writer(Identity.of(os.getpid()))
    streams: dict[str, Iterator[Message]] = {}
    progress = _Progress(f"building {path.name.lstrip('.')}", spec.total)
    try:
        for session_id, size in spec.plan():
            stream = streams.setdefault(session_id, messages(seed=zlib.crc32(session_id.encode())))
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
            progress.advance(size)
    finally:
        store.close()
        progress.done()
    # Fold the WAL into the main file so the cache is a single, settled file.
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


class _Progress:
    """A one-line progress report on stderr (a line per 10% when not a terminal)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.count = label, total, 0
        self.start = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.shown = -1

    def advance(self, count: int) -> None:
        self.count += count
        tenth = self.count * 10 // self.total
        if self.tty or tenth != self.shown:
            self.shown = tenth
            elapsed = time.monotonic() - self.start
            rate = self.count / elapsed if elapsed else 0.0
            line = f"{self.label}: {self.count:,}/{self.total:,} events ({rate:,.0f}/s, {elapsed:.0f}s)"
            sys.stderr.write(("\r" + line) if self.tty else line + "\n")
            sys.stderr.flush()

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
