"""The storage seam: one ``Store`` protocol, one adapter per backend.

The seam sits at the repository level (append, claim, checkpoint, list...)
rather than at the query level because SQLite and PostgreSQL differ in dialect,
driver and locking; each adapter owns its SQL. ``open_store`` picks the adapter
from the URL and imports only that adapter's driver.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .errors import BadInput, StorageUnavailable
from .models import Checkpoint, Event, Fact, FactChange, NewEvent, SessionInfo, Status
from .owners import DEFAULT_LEASE_SECONDS, Identity

if TYPE_CHECKING:
    from .search import SearchHit

SESSION_STATES = ("open", "ended", "abandoned")

# progress(done, total): long work (migrations that backfill) reports through it.
Progress = Callable[[int, int], None]


SEARCH_ORDERS = ("rank", "recent")
MAX_SEARCH_LIMIT = 1_000


@dataclass(frozen=True)
class SearchFilters:
    """What narrows a search: all optional; ``since`` inclusive, ``until`` exclusive.

    Checked when made, so every backend gets an order and a limit it knows.
    """

    session: str | None = None
    role: str | None = None
    type: str | None = None
    since: str | None = None
    until: str | None = None
    limit: int = 20
    order: str = "rank"

    def __post_init__(self) -> None:
        if self.order not in SEARCH_ORDERS:
            raise BadInput(f"order must be one of {', '.join(SEARCH_ORDERS)}, not {self.order!r}")
        if not 1 <= self.limit <= MAX_SEARCH_LIMIT:
            raise BadInput(f"limit must be between 1 and {MAX_SEARCH_LIMIT}")


# The defaults: every event, best 20 first.
NO_FILTERS = SearchFilters()


@dataclass(frozen=True)
class Writer:
    """Who is writing, and the fencing epoch it holds (None: a CLI write without one)."""

    identity: Identity
    epoch: int | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS


class Store(Protocol):
    """What every backend provides. All methods are safe to call from many processes."""

    backend: str

    def describe(self) -> str:
        """Where the data lives, safe to print (no password)."""

    def close(self) -> None: ...

    def schema_version(self) -> int: ...

    # -- sessions ----------------------------------------------------------
    def create_session(
        self, session_id: str, title: str | None, metadata: dict[str, Any], writer: Writer
    ) -> SessionInfo:
        """Create a session owned by ``writer`` (Conflict if the id exists)."""

    def claim(
        self,
        session_id: str,
        writer: Writer,
        *,
        force: bool = False,
        expected_epoch: int | None = None,
    ) -> SessionInfo:
        """Take ownership and raise the epoch, atomically.

        Refused (Conflict) when a live process owns the session and ``force``
        is not set, or when ``expected_epoch`` is given and someone else
        claimed the session since the caller looked at it.
        """

    def end_session(self, session_id: str, state: str, writer: Writer) -> SessionInfo:
        """Mark a session 'ended' or 'abandoned'."""

    def touch(self, session_id: str, writer: Writer) -> None:
        """Heartbeat: extend the lease of ``writer``, which must hold the current epoch.

        Raises FencedOut once another process has claimed the session.
        """

    def get_session(self, session_id: str) -> SessionInfo | None: ...

    def find_sessions(self, prefix: str, limit: int = 10) -> list[str]:
        """Ids that start with ``prefix``, sorted."""

    def latest_session_id(self) -> str | None:
        """The session with the most recent activity."""

    def sessions(
        self,
        *,
        status: Status | None = None,
        since: str | None = None,
        limit: int | None = None,
    ) -> list[SessionInfo]:
        """Session summaries, newest activity first; never reads transcripts."""

    # -- events ------------------------------------------------------------
    def append(self, session_id: str, events: Sequence[NewEvent], writer: Writer) -> list[int]:
        """Append events in one transaction, creating the session if new.

        Returns each event's seq; an event whose id was stored before returns
        the first seq and is not stored again.
        """

    def prepare_append(
        self, session_id: str, events: Sequence[NewEvent], writer: Writer
    ) -> Callable[[], list[int]]:
        """``append`` in two steps: the work that needs no database now, the rest later.

        Calling the result stores the events and returns their seqs, as
        ``append`` would; it may be called on another thread, so that a bulk
        import prepares one batch while the previous one is being stored.
        """

    def events(
        self,
        session_id: str,
        *,
        after_seq: int = 0,
        tail: int | None = None,
        messages_only: bool = False,
    ) -> list[Event]:
        """Events in seq order: all after ``after_seq``, or only the last ``tail``."""

    def recent_events(self, limit: int) -> list[Event]:
        """The newest events across all sessions, newest first."""

    def get_events(self, keys: Sequence[tuple[str, int]]) -> list[Event]:
        """The events at these (session, seq) places, in the order given."""

    # -- search ------------------------------------------------------------
    def search(self, query: str, filters: SearchFilters) -> list[SearchHit]:
        """Ranked (or newest-first) full-text hits with snippets; BadInput for a bad query."""

    def rebuild_search(self) -> int:
        """Rebuild the search index from the events; returns how many were indexed."""

    # -- checkpoints -------------------------------------------------------
    def checkpoint(
        self, session_id: str, state: Any, note: str | None, writer: Writer
    ) -> Checkpoint:
        """Record a checkpoint at the session's current seq and refresh the lease."""

    def latest_checkpoint(self, session_id: str) -> Checkpoint | None: ...

    def checkpoints(self, session_id: str) -> list[Checkpoint]:
        """Every checkpoint of a session, oldest first."""

    # -- copying in (db copy) --------------------------------------------------
    def import_session(
        self, info: SessionInfo, events: Sequence[Event], checkpoints: Sequence[Checkpoint]
    ) -> int:
        """Copy (a chunk of) a session from another database, keeping ids, seqs and times.

        Repeatable: events and checkpoints already present (by id) are skipped.
        Conflict if the target holds different events under the same session id.
        Returns the number of events added.
        """

    def import_fact(self, fact: Fact | None, history: Sequence[FactChange]) -> bool:
        """Copy a fact (None if it was forgotten) and its history; False if already there."""

    def fact_ids(self) -> list[str]:
        """Ids of every fact with a history, forgotten ones included."""

    # -- facts (semantic memory) -------------------------------------------
    def put_fact(
        self,
        text: str,
        *,
        key: str | None = None,
        tags: Sequence[str] = (),
        session: str | None = None,
        seq: int | None = None,
    ) -> tuple[Fact, str]:
        """Add a fact, or update the one with ``key``; returns it and 'ADD' or 'UPDATE'."""

    def get_fact(self, ref: str) -> Fact | None:
        """A fact by key, else by id."""

    def facts(
        self, *, tag: str | None = None, session: str | None = None, limit: int | None = None
    ) -> list[Fact]:
        """Facts, most recently updated first."""

    def fact_history(self, ref: str) -> list[FactChange]:
        """ADD / UPDATE / DELETE entries of a fact, oldest first."""

    def search_facts(self, query: str, *, limit: int = 10) -> list[Fact]:
        """Facts matching ``query`` (memctl's query language), best match first."""

    def forget_fact(self, ref: str) -> Fact | None:
        """Delete a fact for good (index and history text included); None if unknown."""

    # -- maintenance -------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Backend, location, schema version, counts and sizes."""

    def check(self) -> list[str]:
        """Integrity problems found; an empty list means healthy."""


def default_db_path() -> Path:
    """The default database: ``memctl/memctl.db`` under the platform's user data dir."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("memctl", appauthor=False)) / "memctl.db"


def resolve_url(url: str | None) -> str:
    """``--db`` value, else ``MEMCTL_DB``, else the default path.

    An empty value is refused rather than taken as "unset": a script whose
    variable came out empty would otherwise write to the user's own
    database.
    """
    if url is None:
        url = os.environ.get("MEMCTL_DB")
        if url is None:
            return str(default_db_path())
        if not url.strip():
            raise BadInput("MEMCTL_DB is set but empty: give a path or URL, or unset it")
    if not url.strip():
        raise BadInput("--db is empty: give a path or URL, or leave it out")
    return url


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def sqlite_path(url: str) -> Path:
    """The file behind a plain path or ``sqlite:///path`` URL."""
    if url.startswith("sqlite:///"):
        # sqlite:///rel/path is relative, sqlite:////abs/path absolute (SQLAlchemy's rule).
        return Path(url[len("sqlite:///") :]).expanduser()
    if url.startswith("sqlite:"):
        raise BadInput(f"not a SQLite URL: {url!r} (use sqlite:///relative or sqlite:////absolute)")
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise BadInput(
            f"unsupported database URL scheme {scheme!r}: use a file path, sqlite:///PATH "
            "or postgresql://..."
        )
    return Path(url).expanduser()


def open_store(
    url: str | None = None, *, durability: str = "normal", progress: Progress | None = None
) -> Store:
    """Open the store at ``url`` (see ``resolve_url``), creating and migrating it."""
    resolved = resolve_url(url)
    if durability not in ("normal", "full"):
        raise BadInput("durability must be 'normal' or 'full'")
    if is_postgres(resolved):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            if exc.name is None or not exc.name.startswith("psycopg"):
                raise
            raise StorageUnavailable(
                "PostgreSQL needs memctl's postgres extra (psycopg 3):"
                " pip install 'memctl[postgres]'"
            ) from None
        return PostgresStore(resolved, progress=progress)
    from .sqlite import SQLiteStore

    return SQLiteStore(sqlite_path(resolved), durability=durability, progress=progress)
