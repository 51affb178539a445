"""``PostgresEpisodeStorage`` against a real server, as the seed uses it.

Each test opens a psycopg 3 ``AsyncConnectionPool`` on a fresh schema and
drives the storage with ``asyncio.run``. What it writes is checked through
memctl's own store too: episodes are memctl events, with memctl's seqs,
summary and search.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import TypeVar

import pytest
from psycopg_pool import AsyncConnectionPool

from memctl import PostgresEpisodeStorage, pg_schema
from memctl.errors import BadInput, StorageUnavailable
from memctl.models import NewEvent
from memctl.owners import Identity
from memctl.postgres import PostgresStore
from memctl.seed import EpisodeEvent
from memctl.storage import SearchFilters, Writer

T = TypeVar("T")
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(url: str, body: Callable[[PostgresEpisodeStorage], Awaitable[T]]) -> T:
    """Run ``body`` with a storage over a fresh async pool on ``url``."""

    async def main() -> T:
        async with AsyncConnectionPool(url, min_size=1, max_size=4, open=False) as pool:
            return await body(PostgresEpisodeStorage(pool))

    return asyncio.run(main())


def test_save_migrates_and_get_by_session_reads_back(pg_schema_url: str) -> None:
    """Episodes saved into an empty schema come back in order, as the seed wrote them."""

    async def body(storage: PostgresEpisodeStorage) -> list[EpisodeEvent]:
        await storage.save(EpisodeEvent(at(0), "session_user", {"content": "Fix billing"}, "s1"))
        call = {"id": "c1", "name": "read_file", "arguments": {"path": "billing.py"}}
        await storage.save(
            EpisodeEvent(
                at(1), "session_assistant", {"content": "Reading", "tool_call": call}, "s1"
            )
        )
        await storage.save(
            EpisodeEvent(at(2), "tool_called", {"tool": "read_file", "ok": True}, "s1")
        )
        await storage.save(EpisodeEvent(at(3), "session_user", {"content": "elsewhere"}, "s2"))
        return await storage.get_by_session("s1")

    episodes = run(pg_schema_url, body)
    assert [(e.seq, e.event_type, e.timestamp) for e in episodes] == [
        (1, "session_user", at(0)),
        (2, "session_assistant", at(1)),
        (3, "tool_called", at(2)),
    ]
    assert episodes[1].payload["tool_call"]["name"] == "read_file"
    assert episodes[2].payload == {"tool": "read_file", "ok": True}
    assert all(e.session_id == "s1" for e in episodes)
    store = PostgresStore(pg_schema_url)
    try:
        assert store.schema_version() == pg_schema.LATEST_VERSION
        info = store.get_session("s1")
        assert info is not None
        # The summary memctl keeps: counts, last message, the unanswered call, the owner.
        assert (info.events, info.messages) == (3, 2)
        assert info.last_message is not None and info.last_message.content == "Reading"
        assert info.pending_tool_call is not None and info.pending_tool_call["id"] == "c1"
        assert Identity.of(os.getpid()).matches(info.owner)
        assert info.status.value == "active"
        assert [e.type for e in store.events("s1")] == ["message", "message", "tool_called"]
        assert store.check() == []
    finally:
        store.close()


def test_save_keeps_seq_gapless_beside_other_writers(pg_schema_url: str) -> None:
    """Concurrent saves, and memctl's own appends, share one gapless seq."""
    store = PostgresStore(pg_schema_url, pool=4)
    try:
        store.append("s1", [_message("before")], _writer())

        async def body(storage: PostgresEpisodeStorage) -> list[EpisodeEvent]:
            loop = asyncio.get_running_loop()
            # memctl's own writer appends from a thread while the saves run.
            appends = [
                loop.run_in_executor(None, store.append, "s1", [_message(f"cli {i}")], _writer())
                for i in range(10)
            ]
            saves = [storage.save(EpisodeEvent(at(i), "step", {"n": i}, "s1")) for i in range(40)]
            await asyncio.gather(*saves, *appends)
            return await storage.get_by_session("s1")

        episodes = run(pg_schema_url, body)
        assert [e.seq for e in episodes] == list(range(1, 52))
        assert sorted(e.payload["n"] for e in episodes if e.event_type == "step") == list(range(40))
        info = store.get_session("s1")
        assert info is not None and (info.events, info.messages) == (51, 11)
        assert store.check() == []
    finally:
        store.close()


def test_get_recent_is_newest_first_across_sessions(pg_schema_url: str) -> None:
    """get_recent returns the newest episodes of every session, newest first."""

    async def body(storage: PostgresEpisodeStorage) -> list[EpisodeEvent]:
        for i, session in enumerate(["a", "b", "a", "c", "b"]):
            await storage.save(EpisodeEvent(at(i), "step", {"n": i}, session))
        return await storage.get_recent(3)

    recent = run(pg_schema_url, body)
    assert [(e.session_id, e.payload["n"]) for e in recent] == [("b", 4), ("c", 3), ("a", 2)]


def test_search_is_full_text(pg_schema_url: str) -> None:
    """search is memctl's ranked full-text search: tokens, prefixes, no JSON keys, no LIKE."""

    async def body(storage: PostgresEpisodeStorage) -> dict[str, list[EpisodeEvent]]:
        texts = [
            "The billing service keeps failing",
            "Retrying the billing call with backoff",
            "Deploy to staging",
            "rebilling is a different word",
        ]
        for i, text in enumerate(texts):
            await storage.save(EpisodeEvent(at(i), "session_user", {"content": text}, "s1"))
        await storage.save(EpisodeEvent(at(9), "note", {"billing_key": "nothing here"}, "s2"))
        return {
            query: await storage.search(query, 10)
            for query in ("billing", "retr*", "billing -backoff", "billing_key", "Billing Service")
        }

    found = run(pg_schema_url, body)
    assert {(e.session_id, e.seq) for e in found["billing"]} == {("s1", 1), ("s1", 2)}
    assert [e.seq for e in found["retr*"]] == [2]
    assert [e.seq for e in found["billing -backoff"]] == [1]
    assert found["billing_key"] == []  # a JSON key; and "rebilling" is not "billing"
    assert [e.seq for e in found["Billing Service"]] == [1]
    store = PostgresStore(pg_schema_url)
    try:
        # The same events as memctl's own search finds.
        hits = store.search("billing", SearchFilters())
        assert {(h.session, h.seq) for h in hits} == {
            (e.session_id, e.seq) for e in found["billing"]
        }
    finally:
        store.close()


@pytest.mark.parametrize("query", ["", "'", "-billing", "x" * 2000])
def test_bad_search_is_bad_input(pg_schema_url: str, query: str) -> None:
    """A query with nothing to search for is BadInput, never a database error."""

    async def body(storage: PostgresEpisodeStorage) -> list[EpisodeEvent]:
        await storage.save(EpisodeEvent(at(0), "session_user", {"content": "billing"}, "s1"))
        return await storage.search(query, 5)

    with pytest.raises(BadInput):
        run(pg_schema_url, body)


@pytest.mark.parametrize("reader", ["get_recent", "search"])
def test_a_limit_under_one_is_bad_input(pg_schema_url: str, reader: str) -> None:
    """get_recent(-1) and search(q, 0) are BadInput, not a database error."""

    async def body(storage: PostgresEpisodeStorage) -> list[EpisodeEvent]:
        await storage.save(EpisodeEvent(at(0), "session_user", {"content": "billing"}, "s1"))
        if reader == "get_recent":
            return await storage.get_recent(-1)
        return await storage.search("billing", 0)

    with pytest.raises(BadInput, match="at least 1"):
        run(pg_schema_url, body)


def test_storage_on_an_already_migrated_schema(pg_schema_url: str) -> None:
    """A schema memctl created is used as is, beside a PostgresStore writing to it."""
    store = PostgresStore(pg_schema_url)
    try:
        store.append("s1", [_message("first, from the CLI side")], _writer())

        async def body(storage: PostgresEpisodeStorage) -> list[EpisodeEvent]:
            await storage.save(
                EpisodeEvent(at(5), "session_assistant", {"content": "second"}, "s1")
            )
            return await storage.get_by_session("s1")

        episodes = run(pg_schema_url, body)
        assert [e.payload.get("content") for e in episodes] == [
            "first, from the CLI side",
            "second",
        ]
        assert [e.seq for e in store.events("s1")] == [1, 2]
    finally:
        store.close()


def _writer() -> Writer:
    return Writer(Identity.of(os.getpid()))


def _message(text: str) -> NewEvent:
    return NewEvent("message", "user", text)


def test_save_gives_up_on_a_session_a_stuck_writer_holds(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction left open on the session row (a stopped process) makes save fail after
    the lock timeout with StorageUnavailable, not wait forever; afterwards save works."""
    import psycopg

    from memctl import pg_append

    monkeypatch.setattr(pg_append, "LOCK_TIMEOUT_SECONDS", 0.5)
    first = EpisodeEvent(at(0), "session_user", {"content": "hello"}, "s_stuck")
    run(pg_schema_url, lambda storage: storage.save(first))

    async def blocked(storage: PostgresEpisodeStorage) -> None:
        second = EpisodeEvent(at(1), "session_user", {"content": "again"}, "s_stuck")
        with pytest.raises(StorageUnavailable, match="gave up waiting for a lock on session"):
            await asyncio.wait_for(storage.save(second), timeout=10)

    with psycopg.connect(pg_schema_url) as holder:
        holder.execute("SELECT 1 FROM sessions WHERE id = 's_stuck' FOR UPDATE")
        run(pg_schema_url, blocked)
    third = EpisodeEvent(at(2), "session_user", {"content": "after"}, "s_stuck")
    run(pg_schema_url, lambda storage: storage.save(third))
    saved = run(pg_schema_url, lambda storage: storage.get_by_session("s_stuck"))
    assert [e.payload["content"] for e in saved] == ["hello", "after"]
