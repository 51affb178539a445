"""Semantic memory (facts) on SQLite: plain functions over the store's connection.

``SQLiteStore`` calls these inside its own transactions. A fact with a key is
unique by that key: adding the same key again updates it, and the old value
goes to ``fact_history``. Forgetting removes the fact and scrubs the text of
its history rows (the ADD/UPDATE/DELETE markers and times stay), so what was
forgotten is really gone.
"""

from __future__ import annotations

import json
import sqlite3

from .errors import BadInput
from .ids import new_id, now_ts
from .models import Fact, FactChange
from .search import parse, to_fts5


def _fact(row: sqlite3.Row) -> Fact:
    return Fact(
        id=row["id"],
        key=row["key"],
        text=row["text"],
        tags=json.loads(row["tags"]),
        session=row["session"],
        seq=row["seq"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def find(conn: sqlite3.Connection, ref: str) -> Fact | None:
    """A fact by key, else by id."""
    row = conn.execute("SELECT * FROM facts WHERE key = ? OR id = ? LIMIT 1", (ref, ref)).fetchone()
    return _fact(row) if row is not None else None


def _history(conn: sqlite3.Connection, fact: Fact, action: str, ts: str) -> None:
    conn.execute(
        "INSERT INTO fact_history (fact, key, action, text, tags, ts) VALUES (?, ?, ?, ?, ?, ?)",
        (fact.id, fact.key, action, fact.text, json.dumps(fact.tags), ts),
    )


def put(
    conn: sqlite3.Connection,
    text: str,
    key: str | None,
    tags: list[str],
    session: str | None,
    seq: int | None,
) -> tuple[Fact, str]:
    """Add a fact, or update the one with ``key``; returns it and 'ADD' or 'UPDATE'."""
    ts = now_ts()
    existing = find(conn, key) if key is not None else None
    if existing is not None and existing.key == key:
        conn.execute(
            "UPDATE facts SET text = ?, tags = ?, session = ?, seq = ?, updated_at = ? WHERE id = ?",
            (text, json.dumps(tags), session, seq, ts, existing.id),
        )
        action = "UPDATE"
        fact_id = existing.id
    else:
        fact_id = new_id("f")
        conn.execute(
            "INSERT INTO facts (id, key, text, tags, session, seq, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (fact_id, key, text, json.dumps(tags), session, seq, ts, ts),
        )
        action = "ADD"
    fact = find(conn, fact_id)
    assert fact is not None  # written just above, in this transaction
    _history(conn, fact, action, ts)
    _reindex(conn, fact_id, text)
    return fact, action


def _pk(conn: sqlite3.Connection, fact_id: str) -> int:
    return int(conn.execute("SELECT pk FROM facts WHERE id = ?", (fact_id,)).fetchone()[0])


def _reindex(conn: sqlite3.Connection, fact_id: str, text: str) -> None:
    pk = _pk(conn, fact_id)
    conn.execute("DELETE FROM facts_fts WHERE rowid = ?", (pk,))
    conn.execute("INSERT INTO facts_fts (rowid, body) VALUES (?, ?)", (pk, text))


def search(conn: sqlite3.Connection, query: str, limit: int) -> list[Fact]:
    """Facts matching ``query`` (memctl's query language), best match first."""
    match = to_fts5(parse(query))
    try:
        rows = conn.execute(
            "SELECT f.* FROM facts_fts JOIN facts f ON f.pk = facts_fts.rowid"
            " WHERE facts_fts MATCH ? ORDER BY facts_fts.rank LIMIT ?",
            (match, limit),
        ).fetchall()
    except sqlite3.OperationalError as exc:
        raise BadInput(f"cannot search for {query!r}: {exc}") from None
    return [_fact(row) for row in rows]


def forget(conn: sqlite3.Connection, ref: str) -> Fact | None:
    """Delete a fact and scrub its text from history; returns what was deleted."""
    fact = find(conn, ref)
    if fact is None:
        return None
    # The index entry goes first, while the pk that names it still exists.
    conn.execute("DELETE FROM facts_fts WHERE rowid = ?", (_pk(conn, fact.id),))
    conn.execute("DELETE FROM facts WHERE id = ?", (fact.id,))
    conn.execute("UPDATE fact_history SET text = NULL, tags = '[]' WHERE fact = ?", (fact.id,))
    conn.execute(
        "INSERT INTO fact_history (fact, key, action, text, tags, ts) VALUES (?, ?, 'DELETE', NULL, '[]', ?)",
        (fact.id, fact.key, now_ts()),
    )
    return fact


def listing(
    conn: sqlite3.Connection, *, tag: str | None, session: str | None, limit: int | None
) -> list[Fact]:
    """Facts, most recently updated first; ``tag`` matches one element of the tag list."""
    rows = conn.execute(
        "SELECT * FROM facts WHERE (? IS NULL OR session = ?)"
        " AND (? IS NULL OR EXISTS (SELECT 1 FROM json_each(facts.tags) WHERE value = ?))"
        " ORDER BY updated_at DESC, pk DESC LIMIT ?",
        (session, session, tag, tag, -1 if limit is None else limit),
    ).fetchall()
    return [_fact(row) for row in rows]


def history(conn: sqlite3.Connection, ref: str) -> list[FactChange]:
    """A fact's changes, oldest first (also after it was forgotten, by key or id)."""
    rows = conn.execute(
        "SELECT * FROM fact_history WHERE fact = ? OR key = ? ORDER BY pk", (ref, ref)
    ).fetchall()
    return [
        FactChange(
            fact=row["fact"],
            key=row["key"],
            action=row["action"],
            text=row["text"],
            tags=json.loads(row["tags"]),
            ts=row["ts"],
        )
        for row in rows
    ]
