"""The SQLite index trails the log by a few events, and search never notices."""

from __future__ import annotations

import os

import memctl
from memctl.models import NewEvent
from memctl.owners import Identity
from memctl.sqlite import SQLiteStore
from memctl.sqlite_search import INDEX_EVERY, pending
from memctl.storage import Writer


def test_events_not_yet_indexed_are_found(db_url: str) -> None:
    """A search right after a few appends finds them all (pending events are indexed first)."""
    with memctl.open(db_url) as mem:
        writer = Writer(Identity.of(os.getpid()))
        for number in range(INDEX_EVERY + 3):
            event = NewEvent(type="message", role="user", content=f"zebra number {number}")
            mem.store.append("lag", [event], writer)
        hits = mem.search("zebra", limit=1000)
        assert sorted(hit.seq for hit in hits) == list(range(1, INDEX_EVERY + 4))
        assert mem.store.check() == []


def test_index_catches_up_in_batches(tmp_path: object) -> None:
    """Appends leave fewer than INDEX_EVERY events unindexed; a search clears the backlog."""
    path = os.path.join(str(tmp_path), "m.db")
    with memctl.open(path) as mem:
        writer = Writer(Identity.of(os.getpid()))
        for number in range(INDEX_EVERY * 2 + 5):
            mem.store.append("lag", [NewEvent(type="note", payload={"n": str(number)})], writer)
        assert isinstance(mem.store, SQLiteStore)
        conn = mem.store._conn
        indexed = conn.execute("SELECT count(*) FROM events_fts").fetchone()[0]
        assert indexed == INDEX_EVERY * 2 and pending(conn)
        mem.search("anything")
        assert not pending(conn)
