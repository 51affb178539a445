"""Full-text search on PostgreSQL: the tsvector column, keeping it right, and querying it.

What is indexed is decided in Python, by ``memctl.search``, exactly as for
SQLite: ``tokens(index_text(...))`` gives an event's search tokens (folded,
diacritics removed, JSON keys left out), and the column holds them as a
tsvector literal, each token with its positions (``event_vector``), cast with
``::tsvector``. The server's own parser never sees the text: ``to_tsvector``
would split or drop tokens its parser reads differently (``½``, ``x²``, some
56,000 code points in all), and the literal costs the server half as much
(17 against 35 µs an event, measured here). Every writer of ``events`` and
``facts`` (append, copy, episodes, backfill) binds ``event_vector`` or
``fact_vector`` as ``%s::tsvector``.

Queries are parsed by ``memctl.search.parse`` and reach the server only as a
bound tsquery literal made of quoted tokens (``search.to_tsquery``);
a server error that slips through anyway becomes ``BadInput``, never a
traceback.

Ranking is ``ts_rank(search, query, 1)``: term frequency with the rank divided
by ``1 + log(document length)``, the closest built-in to SQLite's bm25 (a long
tool output that mentions a word once does not beat a short message about
it). Scores are higher for better matches, as on SQLite.

Snippets are made by ``memctl.snippets``, in Python, for the rows that
survive the LIMIT, over the event's index text (content, tool name, argument
and payload values), the text SQLite's ``snippet()`` works on. ``ts_headline``
cannot do it: PostgreSQL's parser reads ``services/billing/client.py`` as one
file-name token and keeps diacritics, so it would not mark ``client`` there,
nor ``Résumé`` for ``resume``; marking by memctl's own tokens marks exactly
what matched.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg.abc import Params
from psycopg.rows import DictRow, RowFactory, dict_row, tuple_row

from .errors import BadInput, StorageUnavailable
from .ledger import loads
from .pg_connect import refused_prepared
from .search import (
    Node,
    SearchHit,
    index_text,
    parse,
    query_words,
    raw_index_text,
    to_tsquery,
    tokens,
)
from .snippets import ELLIPSIS, snippet
from .storage import NO_FILTERS, SearchFilters

if TYPE_CHECKING:
    from .pg_connect import PgConnector

# CAST rather than ::, so that it can also stand in a FROM list.
TSQUERY = "CAST(%s AS tsquery)"

# PostgreSQL's limits for a tsvector: a lexeme under 2048 bytes, positions
# from 1 to 16383 (the server clamps larger ones to 16383, as to_tsvector does).
MAX_LEXEME_BYTES = 2047
MAX_POSITION = 16383
# A lexeme's first position N as "':N '" and each later one as ",N '", so
# that a literal is one join (see vector_text); made at import for the first
# 1,024 positions (a table of all 16,383 cost 13 ms of every start).
_FIRST = [f"':{position} '" for position in range(1, 1025)]
_LATER = [f",{position} '" for position in range(1, 1025)]
# At most 4 bytes a character: a word this long or shorter is within the limit.
_SURELY_SHORT = MAX_LEXEME_BYTES // 4
# A tsvector holds at most 1 MiB - 1 of text: the server counts every
# occurrence's bytes as it parses the literal, and each distinct lexeme's
# bytes, padding and positions (2 bytes each) in the result. Counting
# ``bytes + 5`` per occurrence bounds both; the rest of a longer text is left
# out of the index (measured: 150,000 distinct numbers, 790 kB, were refused).
VECTOR_BUDGET = 1_000_000

# What check() tells a person to run; the command line owns the wording.
REBUILD_HINT = "rebuild it with 'memctl db check --rebuild-search'"

CHUNK = 2_000

Progress = Callable[[int, int], None]

# Event columns as memctl reads them: json as text (decoded by the ledger, so
# a connection configured differently, such as an application's async pool,
# reads the same values) and never the tsvector.
EVENT_COLUMNS = (
    "e.session, e.seq, e.id, e.ts, e.type, e.role, e.content, e.tool_call::text AS tool_call,"
    " e.tool_call_id, e.payload::text AS payload"
)
# What a hit needs, in the order hit_from_row unpacks it: no ids, no vector.
HIT_COLUMNS = (
    "e.session, e.seq, e.ts, e.type, e.role, e.content, e.tool_call::text, e.payload::text"
)

R = TypeVar("R")


def vector_text(words: list[str], *, may_be_long: bool = True) -> str:
    """``words`` as a tsvector literal: ``'billing':1,3 'retry':2``.

    The literal is already in the server's own form: each lexeme once, with
    its positions in order, lexemes sorted as the server sorts them (by
    bytes, which for UTF-8 is Python's order of str). Parsing it, the server
    finds nothing to sort or merge; that took 100,000 events' vectors from
    2.29 to 1.89 s of server CPU against one entry per word (measured here:
    COPY in batches of 1,000, GIN index in place). Tokens hold only letters,
    digits and marks (``search.tokens``), so they need no escaping inside
    the quotes. A token too long for PostgreSQL is left out (the others keep
    their positions, so phrases around it stay apart); no query can name one
    (``tsquery_text`` refuses it). ``may_be_long=False`` skips looking for
    one, and counting bytes, for words cut from a text too short to hold one.
    """
    if not words:
        return ""
    # Four bytes a character at most: only a long text needs its bytes counted
    # (words from a text too short to hold a long word are far within it).
    if may_be_long and 4 * sum(map(len, words)) + 5 * len(words) > VECTOR_BUDGET:
        words = _within_budget(words)
    if len(words) > len(_FIRST):
        places = _many_places(words)
    else:
        # Each word's positions, as "':1,5 '". Quadratic in one word's
        # repeats, but bounded by len(_FIRST), which is why the tables are
        # longer than words (strict=False). Inline: a call costs 10%.
        places = {}
        for word, first, later in zip(words, _FIRST, _LATER, strict=False):
            if word in places:
                places[word] = places[word][:-2] + later
            else:
                places[word] = first
    if may_be_long and max(map(len, places)) > _SURELY_SHORT:
        for word in [word for word in places if len(word) > _SURELY_SHORT]:
            if len(word.encode("utf-8")) > MAX_LEXEME_BYTES:
                del places[word]
        if not places:
            return ""
    lexemes = sorted(places)
    # Interleave lexemes and their positions with slice assignment and join
    # once: a third of the cost of formatting each pair.
    parts = [""] * (2 * len(lexemes))
    parts[::2] = lexemes
    parts[1::2] = itemgetter(*lexemes)(places) if len(lexemes) > 1 else [places[lexemes[0]]]
    return "'" + "".join(parts)[:-2]


def _many_places(words: list[str]) -> dict[str, str]:
    """vector_text's positions for any number of words, past MAX_POSITION clamped to it."""
    positions: dict[str, list[str]] = {}
    for position, word in enumerate(words, 1):
        positions.setdefault(word, []).append(str(min(position, MAX_POSITION)))
    # The server keeps a repeated position once.
    return {word: "':" + ",".join(dict.fromkeys(at)) + " '" for word, at in positions.items()}


def _within_budget(words: list[str]) -> list[str]:
    """The first of ``words`` that fit a tsvector (``VECTOR_BUDGET``)."""
    # A word too long to be a lexeme is left out anyway and costs nothing.
    sizes = (len(word.encode("utf-8")) for word in words)
    costs = accumulate(size + 5 if size <= MAX_LEXEME_BYTES else 0 for size in sizes)
    return words[: bisect_right(list(costs), VECTOR_BUDGET)]


def event_vector(
    content: str | None, tool_call: dict[str, Any] | None, payload: dict[str, Any] | None
) -> str:
    """The tsvector literal stored for one event."""
    return _text_vector(raw_index_text(content, tool_call, payload))


def fact_vector(text: str) -> str:
    """The tsvector literal stored for a fact."""
    return _text_vector(text)


def _text_vector(text: str) -> str:
    return vector_text(tokens(text), may_be_long=len(text) > _SURELY_SHORT)


def tsquery_text(node: Node) -> str:
    """The tsquery literal bound into ``TSQUERY`` for a parsed query.

    A word too long to be a lexeme can be in no vector (``vector_text``
    leaves such words out), so it is refused rather than sent to fail.
    """
    for word in query_words(node):
        if len(word) > _SURELY_SHORT and len(word.encode("utf-8")) > MAX_LEXEME_BYTES:
            raise BadInput(
                f"a word of the query is too long to search for on PostgreSQL "
                f"(at most {MAX_LEXEME_BYTES} bytes)"
            )
    return to_tsquery(node)


# -- keeping the column right ------------------------------------------------

_REINDEX = """
    UPDATE events e SET search = d.vector::tsvector
    FROM unnest(%s::text[], %s::bigint[], %s::text[]) AS d(session, seq, vector)
    WHERE e.session = d.session AND e.seq = d.seq
      AND e.search IS DISTINCT FROM d.vector::tsvector
"""

_STALE = """
    SELECT d.session, d.seq
    FROM unnest(%s::text[], %s::bigint[], %s::text[]) AS d(session, seq, vector)
    JOIN events e ON e.session = d.session AND e.seq = d.seq
    WHERE e.search IS DISTINCT FROM d.vector::tsvector
"""


_CHUNK = """
    SELECT e.session, e.seq, e.content, e.tool_call::text AS tool_call,
           e.payload::text AS payload
    FROM events e WHERE (e.session, e.seq) > (%s, %s) AND (NOT %s OR e.search IS NULL)
    ORDER BY e.session, e.seq LIMIT %s
"""


def _chunks(conn: psycopg.Connection[Any], *, only_missing: bool) -> Iterator[list[DictRow]]:
    """Events in primary-key order, CHUNK at a time.

    Keyset paging: each chunk starts in the primary key's index right after
    the last one, so a million events cost a thousand index probes, not a
    scan from the start per chunk. '' sorts before every session id.
    """
    after: tuple[str, int] = ("", 0)
    with conn.cursor(row_factory=dict_row) as cur:
        while True:
            rows = cur.execute(_CHUNK, (*after, only_missing, CHUNK)).fetchall()
            if not rows:
                return
            yield rows
            after = (rows[-1]["session"], int(rows[-1]["seq"]))


def _vectors(rows: Sequence[DictRow]) -> tuple[list[str], list[int], list[str]]:
    return (
        [row["session"] for row in rows],
        [int(row["seq"]) for row in rows],
        [
            event_vector(row["content"], loads(row["tool_call"]), loads(row["payload"]))
            for row in rows
        ],
    )


def backfill(
    conn: psycopg.Connection[Any], progress: Progress | None = None, *, only_missing: bool = True
) -> int:
    """Fill the search column of every event that has none; returns how many were looked at.

    With ``only_missing=False`` every event's vector is computed again and
    written where it differs (a rebuild). Run it inside the caller's
    transaction (the migration's): the index is then complete or absent,
    never half-built. ``progress(done, total)`` counts events looked at out
    of those to do.
    """
    row = conn.execute(
        "SELECT count(*) FROM events WHERE NOT %s OR search IS NULL", (only_missing,)
    ).fetchone()
    total = int(_first(row))
    done = 0
    if progress is not None:
        progress(0, total)
    for rows in _chunks(conn, only_missing=only_missing):
        conn.execute(_REINDEX, _vectors(rows))
        done += len(rows)
        if progress is not None:
            progress(done, total)
    return done


def rebuild(conn: psycopg.Connection[Any], progress: Progress | None = None) -> int:
    """Index every event again (call inside a transaction)."""
    return backfill(conn, progress, only_missing=False)


def check(conn: psycopg.Connection[Any], *, deep: bool = True) -> list[str]:
    """Problems with the search column; an empty list means it matches the events.

    Counts events without an entry, and (``deep``) recomputes every event's
    document in Python and asks the server which stored vectors differ.
    """
    problems: list[str] = []
    row = conn.execute(
        "SELECT count(*) FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = 'events'"
        " AND column_name = 'search'"
    ).fetchone()
    if not _first(row):
        return [f"search index: missing; {REBUILD_HINT}"]
    missing = conn.execute(
        "SELECT session, seq FROM events WHERE search IS NULL ORDER BY session, seq"
    ).fetchall()
    if missing:
        problems.append(
            f"search index: {len(missing)} events are not in the search index "
            f"({_examples(missing)}); {REBUILD_HINT}"
        )
    if deep:
        stale: list[Any] = []
        for rows in _chunks(conn, only_missing=False):
            stale.extend(conn.execute(_STALE, _vectors(rows)).fetchall())
        # Events without an entry were reported above.
        known = {(_at(r, "session", 0), int(_at(r, "seq", 1))) for r in missing}
        stale = [r for r in stale if (_at(r, "session", 0), int(_at(r, "seq", 1))) not in known]
        if stale:
            problems.append(
                f"search index: {len(stale)} events are indexed with outdated text "
                f"({_examples(stale)}); {REBUILD_HINT}"
            )
    row = conn.execute(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema()"
        " AND tablename = 'events' AND indexname = 'events_search'"
    ).fetchone()
    if not _first(row):
        problems.append(
            "search index: the GIN index events_search is missing; run 'memctl db migrate'"
        )
    return problems


def check_facts(conn: psycopg.Connection[Any]) -> list[str]:
    """Facts whose search vector does not match their text."""
    with conn.cursor(row_factory=dict_row) as cur:
        facts = cur.execute("SELECT id, text FROM facts ORDER BY id").fetchall()
        rows = cur.execute(
            "SELECT f.id FROM unnest(%s::text[], %s::text[]) AS d(id, vector)"
            " JOIN facts f ON f.id = d.id"
            " WHERE f.search IS DISTINCT FROM d.vector::tsvector ORDER BY f.id",
            ([r["id"] for r in facts], [fact_vector(r["text"]) for r in facts]),
        ).fetchall()
    if not rows:
        return []
    return [
        f"fact search index: {len(rows)} facts are indexed with outdated text "
        f"({', '.join(r['id'] for r in rows[:5])}); {REBUILD_HINT}"
    ]


def rebuild_facts(conn: psycopg.Connection[Any]) -> None:
    """Re-index every fact (inside a transaction)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT id, text FROM facts").fetchall()
        cur.execute(
            "UPDATE facts f SET search = d.vector::tsvector"
            " FROM unnest(%s::text[], %s::text[]) AS d(id, vector)"
            " WHERE f.id = d.id AND f.search IS DISTINCT FROM d.vector::tsvector",
            ([r["id"] for r in rows], [fact_vector(r["text"]) for r in rows]),
        )


def _at(row: Any, key: str, index: int) -> Any:
    return row[key] if isinstance(row, dict) else row[index]


def _examples(rows: Sequence[Any]) -> str:
    shown = ", ".join(f"{_at(r, 'session', 0)}#{_at(r, 'seq', 1)}" for r in rows[:5])
    return f"e.g. {shown}"


def _first(row: Any) -> Any:
    if row is None:
        return 0
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


# -- querying ------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """A search ready to run: the parsed query, the SQL and its parameters."""

    node: Node
    sql: str
    params: dict[str, Any]


# order="recent" first walks the newest events (time index) and stops at the
# limit; when the newest RECENT_WINDOW events hold fewer matches than that,
# all matches are looked up in the GIN index instead (one branch of the UNION
# runs, the other is gated off). PostgreSQL alone would walk the time index to the
# end for a rare word, because it cannot tell rare from common words well.
RECENT_WINDOW = 10_000

# Best first, whole rows in the same scan: a second pass joining the top rows
# back to events measured slower (0.69 against 0.49 ms for a rare word, 512
# against 452 ms for a word in 10% of a million events), since the top-N
# sort keeps only ``limit`` rows whatever their width.
_RANKED = """
    SELECT {columns}, ts_rank(e.search, q.q, 1)::float8 AS score
    FROM events e, CAST(%(q)s AS tsquery) AS q(q)
    WHERE e.search @@ q.q{where}
    ORDER BY score DESC, e.ts DESC, e.session, e.seq LIMIT %(limit)s
"""

_NEWEST = """
    WITH newest AS (
        SELECT r.session, r.seq FROM (
            SELECT e.session, e.seq, e.ts, e.search FROM events e WHERE TRUE{where}
            ORDER BY e.ts DESC, e.session DESC, e.seq DESC LIMIT %(window)s
        ) AS r
        WHERE r.search @@ %(q)s::tsquery
        ORDER BY r.ts DESC, r.session DESC, r.seq DESC LIMIT %(limit)s
    ), matches AS MATERIALIZED (
        SELECT e.session, e.seq, e.ts FROM events e
        WHERE e.search @@ %(q)s::tsquery{where}
    )
    SELECT session, seq FROM newest WHERE (SELECT count(*) FROM newest) = %(limit)s
    UNION ALL (
        SELECT session, seq FROM matches
        WHERE (SELECT count(*) FROM newest) < %(limit)s
        ORDER BY ts DESC, session DESC, seq DESC LIMIT %(limit)s
    )
"""


def build(query: str, filters: SearchFilters = NO_FILTERS, columns: str = EVENT_COLUMNS) -> Query:
    """The SQL for the best (or newest) ``limit`` events matching ``query``.

    Rows carry ``columns`` (``EVENT_COLUMNS`` or ``HIT_COLUMNS``) and
    ``score``. By rank, one scan keeps the best ``limit`` rows; newest first,
    the selection (``_NEWEST``) reads only keys, times and vectors, and whole
    rows are read for the survivors.
    ``since`` is inclusive, ``until`` exclusive. Only fixed SQL fragments are
    assembled; every value is bound.
    """
    node = parse(query)
    params: dict[str, Any] = {
        "q": tsquery_text(node),
        "limit": filters.limit,
        "window": RECENT_WINDOW,
    }
    clauses: list[str] = []
    for name, clause, value in (
        ("session", "e.session = %(session)s", filters.session),
        ("role", "e.role = %(role)s", filters.role),
        ("type", "e.type = %(type)s", filters.type),
        ("since", "e.ts >= %(since)s", filters.since),
        ("until", "e.ts < %(until)s", filters.until),
    ):
        if value is not None:
            clauses.append(clause)
            params[name] = value
    where = "".join(f" AND {clause}" for clause in clauses)
    if filters.order == "rank":
        return Query(node, _RANKED.format(columns=columns, where=where), params)
    sql = (
        f"SELECT {columns}, ts_rank(e.search, q.q, 1)::float8 AS score"  # noqa: S608 (fixed fragments only)
        f" FROM ({_NEWEST.format(where=where)}) AS top"
        " JOIN events e ON e.session = top.session AND e.seq = top.seq,"
        " CAST(%(q)s AS tsquery) AS q(q) ORDER BY e.ts DESC, e.session DESC, e.seq DESC"
    )
    return Query(node, sql, params)


def search(db: PgConnector, query: str, filters: SearchFilters) -> list[SearchHit]:
    """The best (or newest) ``limit`` events matching ``query``, with snippets."""
    built = build(query, filters, HIT_COLUMNS)
    rows = db.run(lambda conn: run_query(conn, query, built.sql, built.params, tuple_row))
    return [hit_from_row(row, built.node) for row in rows]


def run_query(
    conn: psycopg.Connection[Any],
    query: str,
    sql: str,
    params: Params,
    rows: RowFactory[R],
) -> list[R]:
    """Execute a search statement, its rows made by ``rows``.

    An error other than a lost connection or a refused prepared statement is
    BadInput.
    """
    failure = None
    try:
        with conn.cursor(row_factory=rows) as cur:
            return cur.execute(sql, params).fetchall()
    except psycopg.Error as exc:
        if is_connection_lost(exc, conn) or refused_prepared(exc):
            raise  # the connector deals with these and retries
        failure = exc
    # Raised outside the except block: the driver's error is not chained.
    raise query_error(query, failure)


def is_connection_lost(exc: psycopg.Error, conn: Any) -> bool:
    """Whether ``exc`` means the connection is gone, rather than a refused statement."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return conn.closed or conn.broken or state is None or state.startswith(("57P", "08"))


def query_error(query: str, exc: psycopg.Error) -> Exception:
    """What a failed search statement becomes: BadInput, with the server's first line."""
    message = " ".join(str(exc).split("\n", 1)[0].split())
    if exc.sqlstate == "42703" or exc.sqlstate == "42P01":
        return StorageUnavailable(f"the search index is missing ({message}); {REBUILD_HINT}")
    shown = query if len(query) <= 80 else query[:79] + ELLIPSIS
    return BadInput(f"cannot search for {shown!r}: {message}")


def hit_from_row(row: tuple[Any, ...], node: Node) -> SearchHit:
    """A hit from a row of ``HIT_COLUMNS`` and the score."""
    session, seq, ts, event_type, role, content, tool_call, payload, score = row
    return SearchHit(
        session=session,
        seq=int(seq),
        ts=ts,
        type=event_type,
        role=role,
        snippet=snippet(index_text(content, loads(tool_call), loads(payload)), node),
        score=round(float(score), 6),
    )


class PgSearchMethods:
    """``Store.search`` and ``Store.rebuild_search`` for ``PostgresStore``."""

    _db: PgConnector

    def search(self, query: str, filters: SearchFilters) -> list[SearchHit]:
        return search(self._db, query, filters)

    def rebuild_search(self) -> int:
        def run(conn: psycopg.Connection[DictRow]) -> int:
            with conn.transaction():
                rebuild_facts(conn)
                return rebuild(conn)

        return self._db.run(run)
