"""``EpisodeStorage``: the seed's async interface to stored episodes.

``save``, ``get_by_session``, ``get_recent`` and ``search`` are coroutines,
as in the seed. ``SQLiteEpisodeStorage`` runs memctl's store on one worker
thread (a SQLite connection is used by one thread at a time);
``PostgresEpisodeStorage`` lives in ``memctl.pg_episodes`` and talks to the
server through a psycopg 3 async connection pool.
"""

from __future__ import annotations

import asyncio
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from . import core
from .core import Memory
from .owners import Identity
from .seed import EpisodeEvent, episode_to_new_event
from .storage import Writer

T = TypeVar("T")


class EpisodeStorage(ABC):
    """Where episodes live. Every method is a coroutine."""

    @abstractmethod
    async def save(self, event: EpisodeEvent) -> None:
        """Store one episode."""

    @abstractmethod
    async def get_by_session(self, session_id: str) -> list[EpisodeEvent]:
        """A session's episodes in the order they were recorded (seq order)."""

    @abstractmethod
    async def get_recent(self, limit: int) -> list[EpisodeEvent]:
        """The newest episodes across sessions, newest first."""

    @abstractmethod
    async def search(self, query: str, limit: int) -> list[EpisodeEvent]:
        """Full-text search (memctl's query language), best match first."""


class SQLiteEpisodeStorage(EpisodeStorage):
    """``EpisodeStorage`` over a memctl database (SQLite, or any URL ``memctl.open`` takes)."""

    def __init__(self, memory: Memory | str | None = None) -> None:
        self.memory = memory if isinstance(memory, Memory) else core.open(memory)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memctl-episodes")

    async def _run(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, call)

    async def save(self, event: EpisodeEvent) -> None:
        new = episode_to_new_event(event.event_type, event.payload, ts=event.timestamp)
        writer = Writer(Identity.of(os.getpid()))
        await self._run(lambda: self.memory.record(event.session_id, [new], writer))

    async def get_by_session(self, session_id: str) -> list[EpisodeEvent]:
        events = await self._run(lambda: self.memory.store.events(session_id))
        return [EpisodeEvent.from_event(event) for event in events]

    async def get_recent(self, limit: int) -> list[EpisodeEvent]:
        events = await self._run(lambda: self.memory.recent_events(limit))
        return [EpisodeEvent.from_event(event) for event in events]

    async def search(self, query: str, limit: int) -> list[EpisodeEvent]:
        events = await self._run(lambda: self.memory.search_events(query, limit=limit))
        return [EpisodeEvent.from_event(event) for event in events]

    async def close(self) -> None:
        await self._run(self.memory.close)
        self._worker.shutdown(wait=False)
