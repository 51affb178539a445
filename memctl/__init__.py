"""memctl: crash-safe memory for LLM agents.

``memctl.open()`` returns a ``Memory``; ``Memory.start()`` a ``Session`` to
record into. Importing memctl is cheap: no Rich, no psycopg, no sqlite-utils
until something needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .core import Memory, Session, open
from .errors import (
    BadInput,
    Conflict,
    FencedOut,
    MemctlError,
    MemoryClosed,
    NothingToRecover,
    SessionNotFound,
    SessionOwned,
    StorageUnavailable,
)
from .models import Checkpoint, Event, SessionInfo, Status
from .working import Message, WorkingMemory

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .episodes import EpisodeStorage, SQLiteEpisodeStorage
    from .pg_episodes import PostgresEpisodeStorage
    from .recovery import welcome_back
    from .seed import (
        CheckpointManager,
        EpisodeEvent,
        EpisodicMemory,
        PersistentMemorySystem,
        SemanticMemory,
        SessionStore,
    )

# Loaded on first use, so `import memctl` (and `memctl record`) stays cheap.
_LAZY = {
    "welcome_back": "memctl.recovery",
    "CheckpointManager": "memctl.seed",
    "EpisodeEvent": "memctl.seed",
    "EpisodicMemory": "memctl.seed",
    "PersistentMemorySystem": "memctl.seed",
    "SemanticMemory": "memctl.seed",
    "SessionStore": "memctl.seed",
    "EpisodeStorage": "memctl.episodes",
    "SQLiteEpisodeStorage": "memctl.episodes",
    "PostgresEpisodeStorage": "memctl.pg_episodes",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'memctl' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "BadInput",
    "Checkpoint",
    "CheckpointManager",
    "Conflict",
    "EpisodeEvent",
    "EpisodeStorage",
    "EpisodicMemory",
    "Event",
    "FencedOut",
    "MemctlError",
    "Memory",
    "MemoryClosed",
    "Message",
    "NothingToRecover",
    "PersistentMemorySystem",
    "PostgresEpisodeStorage",
    "SQLiteEpisodeStorage",
    "SemanticMemory",
    "Session",
    "SessionInfo",
    "SessionNotFound",
    "SessionOwned",
    "SessionStore",
    "Status",
    "StorageUnavailable",
    "WorkingMemory",
    "__version__",
    "open",
    "welcome_back",
]
