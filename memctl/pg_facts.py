"""Semantic memory (facts) on PostgreSQL, with the same rules as ``sqlite_facts``.

A fact with a key is unique by that key: adding the same key again updates
it (one ``INSERT ... ON CONFLICT (key) DO UPDATE``, so two processes adding one
key at once make one fact and an ADD plus an UPDATE, never a duplicate), and
each change is kept in ``fact_history``. Forgetting deletes the fact, its
search vector with it, and scrubs the text and tags of its history rows; the
ADD/UPDATE/DELETE markers and their times stay.

Tags are a ``text[]``: a tag filter is ``%s = ANY(tags)``, one element of the
list, as SQLite's ``json_each`` gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from psycopg.rows import DictRow, dict_row

from .ids import new_id, now_ts
from .models import Fact, FactChange
from .pg_search import TSQUERY, fact_vector, run_query, tsquery_text
from .search import parse

if TYPE_CHECKING:
    from .pg_connect import Conn, PgConnector

COLUMNS = "id, key, text, tags, session, seq, created_at, updated_at"

_INSERT = """
    INSERT INTO facts (id, key, text, tags, session, seq, created_at, updated_at, search)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::tsvector)
"""
_ADD = f"{_INSERT} RETURNING {COLUMNS}"
_ADD_OR_UPDATE = f"""{_INSERT}
    ON CONFLICT (key) DO UPDATE SET text = excluded.text, tags = excluded.tags,
        session = excluded.session, seq = excluded.seq, updated_at = excluded.updated_at,
        search = excluded.search
    RETURNING {COLUMNS}
"""

_HISTORY = (
    "INSERT INTO fact_history (fact, key, action, text, tags, ts) VALUES (%s, %s, %s, %s, %s, %s)"
)


def fact_from_row(row: DictRow) -> Fact:
    return Fact(
        id=row["id"],
        key=row["key"],
        text=row["text"],
        tags=list(row["tags"]),
        session=row["session"],
        seq=int(row["seq"]) if row["seq"] is not None else None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def find(conn: Conn, ref: str) -> Fact | None:
    """A fact by key, else by id."""
    row = conn.execute(
        f"SELECT {COLUMNS} FROM facts WHERE key = %s OR id = %s"  # noqa: S608 (a constant)
        " ORDER BY (key = %s) IS TRUE DESC LIMIT 1",
        (ref, ref, ref),
    ).fetchone()
    return fact_from_row(row) if row is not None else None


def put(
    conn: Conn,
    text: str,
    key: str | None,
    tags: list[str],
    session: str | None,
    seq: int | None,
    stamp: tuple[str, str],
    *,
    retry: bool = False,
) -> tuple[Fact, str]:
    """Add a fact, or update the one with ``key``; returns it and 'ADD' or 'UPDATE'.

    ``stamp`` is (new fact id, time), chosen before the first attempt: a
    ``retry`` after a lost acknowledgement finds its own history row and
    returns that instead of writing an UPDATE on top of its ADD.
    """
    fact_id, ts = stamp
    with conn.transaction():
        if retry:
            done = conn.execute(
                "SELECT fact, action FROM fact_history WHERE ts = %s AND action <> 'DELETE'"
                " AND (fact = %s OR key = %s) ORDER BY pk DESC LIMIT 1",
                (ts, fact_id, key),
            ).fetchone()
            fact = find(conn, done["fact"]) if done is not None else None
            if done is not None and fact is not None and fact.text == text:
                return fact, done["action"]
        # Without a key there is nothing to conflict on: always a new fact.
        row = conn.execute(
            _ADD if key is None else _ADD_OR_UPDATE,
            (fact_id, key, text, tags, session, seq, ts, ts, fact_vector(text)),
        ).fetchone()
        assert row is not None  # INSERT ... RETURNING, or the update of the conflicting row
        fact = fact_from_row(row)
        action = "ADD" if fact.id == fact_id else "UPDATE"
        conn.execute(_HISTORY, (fact.id, fact.key, action, fact.text, fact.tags, ts))
    return fact, action


def search(conn: Conn, query: str, limit: int) -> list[Fact]:
    """Facts matching ``query`` (memctl's query language), best match first."""
    match = tsquery_text(parse(query))
    rows = run_query(
        conn,
        query,
        f"SELECT {COLUMNS} FROM facts f, {TSQUERY} AS q(q) WHERE f.search @@ q.q"  # noqa: S608 (constants)
        " ORDER BY ts_rank(f.search, q.q, 1) DESC, f.updated_at DESC, f.pk DESC LIMIT %s",
        (match, limit),
        dict_row,
    )
    return [fact_from_row(row) for row in rows]


def forget(conn: Conn, ref: str) -> Fact | None:
    """Delete a fact and scrub its text from history; returns what was deleted."""
    with conn.transaction():
        fact = find(conn, ref)
        if fact is None:
            return None
        # The row goes with its search vector: nothing of it is found again.
        conn.execute("DELETE FROM facts WHERE id = %s", (fact.id,))
        conn.execute("UPDATE fact_history SET text = NULL, tags = '{}' WHERE fact = %s", (fact.id,))
        conn.execute(_HISTORY, (fact.id, fact.key, "DELETE", None, [], now_ts()))
    return fact


def listing(conn: Conn, *, tag: str | None, session: str | None, limit: int | None) -> list[Fact]:
    """Facts, most recently updated first; ``tag`` matches one element of the tag list."""
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM facts"  # noqa: S608 (a constant)
        " WHERE (%s::text IS NULL OR session = %s) AND (%s::text IS NULL OR %s = ANY(tags))"
        " ORDER BY updated_at DESC, pk DESC LIMIT %s",
        (session, session, tag, tag, limit),
    ).fetchall()
    return [fact_from_row(row) for row in rows]


def history(conn: Conn, ref: str) -> list[FactChange]:
    """A fact's changes, oldest first (also after it was forgotten, by key or id)."""
    rows = conn.execute(
        "SELECT fact, key, action, text, tags, ts FROM fact_history"
        " WHERE fact = %s OR key = %s ORDER BY pk",
        (ref, ref),
    ).fetchall()
    return [
        FactChange(
            fact=row["fact"],
            key=row["key"],
            action=row["action"],
            text=row["text"],
            tags=list(row["tags"]),
            ts=row["ts"],
        )
        for row in rows
    ]


class PgFactMethods:
    """The facts part of ``Store`` for ``PostgresStore``."""

    _db: PgConnector

    def put_fact(
        self,
        text: str,
        *,
        key: str | None = None,
        tags: Sequence[str] = (),
        session: str | None = None,
        seq: int | None = None,
    ) -> tuple[Fact, str]:
        stamp = (new_id("f"), now_ts())
        values = (text, key, list(tags), session, seq, stamp)
        return self._db.run(
            lambda conn: put(conn, *values), lambda conn: put(conn, *values, retry=True)
        )

    def get_fact(self, ref: str) -> Fact | None:
        return self._db.run(lambda conn: find(conn, ref))

    def facts(
        self, *, tag: str | None = None, session: str | None = None, limit: int | None = None
    ) -> list[Fact]:
        return self._db.run(lambda conn: listing(conn, tag=tag, session=session, limit=limit))

    def fact_history(self, ref: str) -> list[FactChange]:
        return self._db.run(lambda conn: history(conn, ref))

    def search_facts(self, query: str, *, limit: int = 10) -> list[Fact]:
        return self._db.run(lambda conn: search(conn, query, limit))

    def forget_fact(self, ref: str) -> Fact | None:
        return self._db.run(lambda conn: forget(conn, ref))
