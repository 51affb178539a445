"""memctl: crash-safe memory for LLM agents.

``memctl.open()`` returns a ``Memory``; ``Memory.start()`` a ``Session`` to
record into. Importing memctl is cheap: no Rich, no psycopg, no sqlite-utils
until something needs them.
"""

from __future__ import annotations

from .core import Memory, Session, open
from .errors import (
    BadInput,
    Conflict,
    FencedOut,
    MemctlError,
    NothingToRecover,
    SessionNotFound,
    SessionOwned,
    StorageUnavailable,
)
from .models import Checkpoint, Event, SessionInfo, Status
from .working import Message, WorkingMemory

__version__ = "0.1.0"

__all__ = [
    "BadInput",
    "Checkpoint",
    "Conflict",
    "Event",
    "FencedOut",
    "MemctlError",
    "Memory",
    "Message",
    "NothingToRecover",
    "Session",
    "SessionInfo",
    "SessionNotFound",
    "SessionOwned",
    "Status",
    "StorageUnavailable",
    "WorkingMemory",
    "__version__",
    "open",
]
