"""Full-text search on SQLite: the FTS5 index, keeping it current, and querying it.

Plain functions over a ``sqlite3.Connection`` so the store can call them inside
the write transaction it already holds: an event and its index entry commit
together or not at all. The index is an ordinary FTS5 table whose rowid is
``events.pk`` and whose one column holds ``search.index_text`` of the event;
keeping the text in the FTS table itself (rather than an external-content
view over ``events``) is what lets ``snippet()`` show context, and lets an
event be re-indexed without knowing what was indexed before.

Queries are parsed by ``memctl.search`` and reach FTS5 only as a bound MATCH
expression made of quoted tokens; an FTS5 error that slips through anyway
becomes ``BadInput``, never a traceback.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .errors import BadInput, StorageUnavailable
from .search import (
    FTS5_TOKENIZER,
    MARK_END,
    MARK_START,
    SearchHit,
    index_text,
    parse,
    to_fts5,
)
from .snippets import snippet
from .storage import NO_FILTERS, SearchFilters

MIGRATION: tuple[str, list[str]] = (
    "0003_search",
    [f'CREATE VIRTUAL TABLE events_fts USING fts5(body, tokenize="{FTS5_TOKENIZER}")'],
)

# What check() tells a person to run; the command line owns the wording.
REBUILD_HINT = "rebuild it with 'memctl db check --rebuild-search'"

CHUNK = 2_000
SNIPPET_TOKENS = 16
# FTS5's snippet() takes time that grows with the square of the matches in
# one text: measured, 4 ms for a text holding the searched word 1,000 times,
# 66 ms for 4,000, 4.4 s for 32,000, and more than two minutes for a 1 MiB
# event holding it 400,000 times, which then stalled every search that found
# it. memctl.snippets (the PostgreSQL adapter's, linear) made that one's
# snippet in 0.3 s; it serves texts longer than this, snippet() the rest.
SNIPPET_IN_SQL = 8_192

IndexRow = tuple[int, "str | None", "dict[str, Any] | None", "dict[str, Any] | None"]
Progress = Callable[[int, int], None]


def rowid(cursor: sqlite3.Cursor) -> int:
    """The rowid an INSERT just gave its row (always set after an INSERT)."""
    value = cursor.lastrowid
    if value is None:  # pragma: no cover - sqlite3 sets it for every INSERT
        raise StorageUnavailable("SQLite did not report the new row's id")
    return value


def index_events(conn: sqlite3.Connection, rows: Iterable[IndexRow]) -> None:
    """Index newly inserted events: (pk, content, tool_call, payload) each.

    Every event gets a row, even one with nothing to index, so the index and
    the events can be compared by count and rowid.
    """
    conn.executemany(
        "INSERT INTO events_fts (rowid, body) VALUES (?, ?)",
        ((pk, index_text(content, tool_call, payload)) for pk, content, tool_call, payload in rows),
    )


# The index trails the log by fewer than this many events: FTS5 writes a new
# segment per commit (and merges them later), so indexing every event in its
# own transaction halved the append rate; indexing 256 at a time brings the
# cost down to about a tenth of the append (32 at a time: a sixth). A search
# (and db check) first indexes whatever is still pending, a few milliseconds
# at most, so results are always complete.
INDEX_EVERY = 256


def due(pks: Sequence[int]) -> bool:
    """Whether a batch that got these pks should bring the index up to date."""
    return len(pks) >= INDEX_EVERY or any(pk % INDEX_EVERY == 0 for pk in pks)


def pending(conn: sqlite3.Connection) -> bool:
    """Whether some events are not indexed yet (cheap: two max() lookups)."""
    row = conn.execute(
        "SELECT (SELECT coalesce(max(pk), 0) FROM events)"
        " > (SELECT coalesce(max(rowid), 0) FROM events_fts)"
    ).fetchone()
    return bool(row[0])


def catch_up(conn: sqlite3.Connection) -> int:
    """Index every event after the last indexed one (inside a write transaction).

    Events get pks in commit order and are indexed in pk order, so "after the
    highest indexed rowid" is exactly what is missing.
    """
    (last,) = conn.execute("SELECT coalesce(max(rowid), 0) FROM events_fts").fetchone()
    rows = conn.execute(
        "SELECT pk, content, tool_call, payload FROM events WHERE pk > ? ORDER BY pk", (last,)
    ).fetchall()
    index_events(
        conn,
        [
            (pk, content, _decode(tool_call), _decode(payload))
            for pk, content, tool_call, payload in rows
        ],
    )
    return len(rows)


def unindex_events(conn: sqlite3.Connection, pks: Iterable[int]) -> None:
    """Drop index entries of deleted events (call before or after deleting them)."""
    conn.executemany("DELETE FROM events_fts WHERE rowid = ?", ((pk,) for pk in pks))


def reindex_events(conn: sqlite3.Connection, rows: Sequence[IndexRow]) -> None:
    """Replace index entries of rewritten events."""
    unindex_events(conn, (row[0] for row in rows))
    index_events(conn, rows)


def _decode(text: str | None) -> Any:
    return json.loads(text) if text is not None else None


def backfill(conn: sqlite3.Connection, progress: Progress | None = None) -> int:
    """Index every event that is not indexed yet, in pk order and in chunks.

    Run it inside the caller's write transaction (the migration's): the index
    is then either complete or absent, never half-built. Returns how many
    events were indexed; ``progress(done, total)`` counts events examined.
    """
    total = int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    done = indexed = 0
    last_pk = 0
    if progress is not None:
        progress(0, total)
    while True:
        chunk = conn.execute(
            "SELECT pk, content, tool_call, payload FROM events WHERE pk > ? ORDER BY pk LIMIT ?",
            (last_pk, CHUNK),
        ).fetchall()
        if not chunk:
            break
        first, last_pk = chunk[0][0], chunk[-1][0]
        present = {
            row[0]
            for row in conn.execute(
                "SELECT rowid FROM events_fts WHERE rowid BETWEEN ? AND ?", (first, last_pk)
            )
        }
        missing = [
            (pk, content, _decode(tool_call), _decode(payload))
            for pk, content, tool_call, payload in chunk
            if pk not in present
        ]
        index_events(conn, missing)
        indexed += len(missing)
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    if indexed >= CHUNK:
        # Many small segments slow every later query down; merge them once.
        conn.execute("INSERT INTO events_fts (events_fts) VALUES ('optimize')")
    return indexed


def rebuild(conn: sqlite3.Connection, progress: Progress | None = None) -> int:
    """Throw the index away and index every event again (inside a write transaction)."""
    conn.execute("DELETE FROM events_fts")
    return backfill(conn, progress)


def check(conn: sqlite3.Connection, *, deep: bool = True) -> list[str]:
    """Problems with the search index; an empty list means it matches the events.

    Walks events and index side by side in rowid order to find events missing
    from the index, index rows without an event and (``deep``) index text that
    no longer matches its event, then runs FTS5's own integrity check. The
    integrity check is an INSERT command, so this takes the write lock briefly.
    """
    try:
        conn.execute("SELECT 1 FROM events_fts LIMIT 0")
    except sqlite3.OperationalError:
        return [f"search index: missing; {REBUILD_HINT}"]
    missing: list[int] = []
    extra: list[int] = []
    stale: list[int] = []
    events = conn.execute(
        "SELECT pk, content, tool_call, payload FROM events ORDER BY pk"
        if deep
        else "SELECT pk, NULL, NULL, NULL FROM events ORDER BY pk"
    )
    entries = conn.execute(
        "SELECT rowid, body FROM events_fts ORDER BY rowid"
        if deep
        else "SELECT rowid, NULL FROM events_fts ORDER BY rowid"
    )
    event = events.fetchone()
    entry = entries.fetchone()
    while event is not None or entry is not None:
        if entry is None or (event is not None and event[0] < entry[0]):
            missing.append(event[0])
            event = events.fetchone()
        elif event is None or entry[0] < event[0]:
            extra.append(entry[0])
            entry = entries.fetchone()
        else:
            if deep and entry[1] != index_text(event[1], _decode(event[2]), _decode(event[3])):
                stale.append(event[0])
            event = events.fetchone()
            entry = entries.fetchone()
    problems = []
    for found, what in (
        (missing, "events are not in the search index"),
        (extra, "search index rows have no event"),
        (stale, "events are indexed with outdated text"),
    ):
        if found:
            examples = ", ".join(str(pk) for pk in found[:5])
            problems.append(f"search index: {len(found)} {what} (pk {examples}); {REBUILD_HINT}")
    try:
        conn.execute("INSERT INTO events_fts (events_fts, rank) VALUES ('integrity-check', 1)")
    except sqlite3.DatabaseError as exc:
        problems.append(f"search index: FTS5 integrity check failed ({exc}); {REBUILD_HINT}")
    return problems


def search(
    conn: sqlite3.Connection, query: str, filters: SearchFilters = NO_FILTERS
) -> list[SearchHit]:
    """The best (or newest) ``limit`` events matching ``query``, with snippets.

    ``since`` is inclusive and ``until`` exclusive, both memctl timestamps.
    Only fixed SQL fragments are assembled; every value is bound.
    """
    session, limit = filters.session, filters.limit
    node = parse(query)
    match = to_fts5(node)
    clauses: list[str] = []
    values: list[Any] = []
    if session is not None:
        # A session's events sit in a narrow pk range; telling FTS5 that range
        # lets it skip the other sessions' matches instead of joining each one.
        clauses.append(
            "events_fts.rowid BETWEEN (SELECT min(pk) FROM events WHERE session = ?)"
            " AND (SELECT max(pk) FROM events WHERE session = ?)"
        )
        values += [session, session]
    for clause, value in (
        ("e.session = ?", session),
        ("e.role = ?", filters.role),
        ("e.type = ?", filters.type),
        ("e.ts >= ?", filters.since),
        ("e.ts < ?", filters.until),
    ):
        if value is not None:
            clauses.append(clause)
            values.append(value)
    where = "".join(f" AND {clause}" for clause in clauses)
    # snippet() for a text up to SNIPPET_IN_SQL characters; past that the
    # text itself, for memctl.snippets (see SNIPPET_IN_SQL).
    marks = [SNIPPET_IN_SQL, MARK_START, MARK_END, SNIPPET_TOKENS, SNIPPET_IN_SQL]
    snippet_columns = (
        " CASE WHEN length(events_fts.body) <= ? THEN snippet(events_fts, 0, ?, ?, '…', ?) END,"
        " CASE WHEN length(events_fts.body) > ? THEN events_fts.body END,"
    )
    if filters.order == "rank":
        # FTS5 consumes ORDER BY rank itself and hands rows over best first,
        # so snippet() runs only for the rows returned: the query a person
        # would write by hand.
        sql = (
            "SELECT e.session, e.seq, e.ts, e.type, e.role,"  # noqa: S608 (fixed fragments only)
            f"{snippet_columns} -events_fts.rank"
            " FROM events_fts JOIN events e ON e.pk = events_fts.rowid"
            f" WHERE events_fts MATCH ?{where} ORDER BY events_fts.rank LIMIT ?"
        )
        params = [*marks, match, *values, limit]
    else:
        # Sorting by time needs a sorter, which would compute snippet() for
        # every match; pick the newest rows first, then make their snippets.
        top = (
            "SELECT events_fts.rowid AS pk FROM events_fts"  # noqa: S608 (fixed fragments only)
            " JOIN events e ON e.pk = events_fts.rowid"
            f" WHERE events_fts MATCH ?{where} ORDER BY e.ts DESC, e.pk DESC LIMIT ?"
        )
        sql = (
            f"WITH top AS MATERIALIZED ({top})"  # noqa: S608 (fixed fragments only)
            " SELECT e.session, e.seq, e.ts, e.type, e.role,"
            f"{snippet_columns} -bm25(events_fts)"
            " FROM top CROSS JOIN events_fts ON events_fts.rowid = top.pk"
            " JOIN events e ON e.pk = top.pk"
            " WHERE events_fts MATCH ? ORDER BY e.ts DESC, e.pk DESC"
        )
        params = [match, *values, limit, *marks, match]
    try:
        rows = conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        raise _search_error(query, exc) from None
    return [
        SearchHit(
            session=row[0],
            seq=int(row[1]),
            ts=row[2],
            type=row[3],
            role=row[4],
            snippet=(row[5] or "") if row[6] is None else snippet(row[6], node),
            score=round(float(row[7]), 6),
        )
        for row in rows
    ]


def _search_error(query: str, exc: sqlite3.OperationalError) -> Exception:
    message = str(exc)
    if "locked" in message or "busy" in message:
        return StorageUnavailable(f"database is busy; search again ({message})")
    if "no such table" in message:
        return StorageUnavailable(f"the search index is missing ({message}); {REBUILD_HINT}")
    shown = query if len(query) <= 80 else query[:79] + "…"
    return BadInput(f"cannot search for {shown!r}: {message}")
