"""Maintenance reads for PostgreSQL: what ``db info`` and ``db check`` report."""

from __future__ import annotations

from typing import Any

from . import pg_schema, pg_search
from .pg_connect import Conn


def info(conn: Conn, backend: str, location: str) -> dict[str, Any]:
    """What ``memctl db info`` shows: versions, counts and on-disk sizes.

    With the server's ``shared_buffers``: a search for a common word is fast
    when the events table fits in it (README, server settings).
    """
    counts = conn.execute(
        "SELECT (SELECT count(*) FROM sessions) AS sessions,"
        " (SELECT count(*) FROM events) AS events,"
        " (SELECT count(*) FROM checkpoints) AS checkpoints,"
        " (SELECT count(*) FROM facts) AS facts,"
        " current_database() AS database, current_schema() AS schema,"
        " current_setting('server_version') AS server_version,"
        " current_setting('shared_buffers') AS shared_buffers"
    ).fetchone()
    assert counts is not None
    sizes = {
        table: int(row["size"])
        for table in ("sessions", "events", "checkpoints")
        for row in conn.execute(
            "SELECT pg_total_relation_size(to_regclass(%s)) AS size", (table,)
        ).fetchall()
        if row["size"] is not None
    }
    return {
        "backend": backend,
        "location": location,
        "schema_version": pg_schema.current_version(conn),
        "server_version": counts["server_version"],
        "shared_buffers": counts["shared_buffers"],
        "database": counts["database"],
        "schema": counts["schema"],
        "sessions": int(counts["sessions"]),
        "events": int(counts["events"]),
        "checkpoints": int(counts["checkpoints"]),
        "facts": int(counts["facts"]),
        "bytes": sizes,
    }


def check(conn: Conn) -> list[str]:
    """Integrity problems: an old schema, summaries or search vectors that disagree with the data.

    Each search problem says how to fix it (``memctl db check --rebuild-search``).
    """
    problems = []
    version = pg_schema.current_version(conn)
    if version != pg_schema.LATEST_VERSION:
        problems.append(f"schema version {version}, expected {pg_schema.LATEST_VERSION}")
    # The summaries must agree with the log they summarise.
    for row in conn.execute(
        "SELECT s.id, s.last_seq, s.events, count(e.seq) AS n,"
        " coalesce(max(e.seq), 0) AS top"
        " FROM sessions s LEFT JOIN events e ON e.session = s.id GROUP BY s.id"
        " ORDER BY s.id"
    ):
        n, top = int(row["n"]), int(row["top"])
        if n != row["events"] or top != row["last_seq"] or n != top:
            problems.append(
                f"session {row['id']}: summary says {row['events']} events up to seq "
                f"{row['last_seq']}, log has {n} up to {top}"
            )
    if version >= pg_schema.LATEST_VERSION:
        problems.extend(pg_search.check(conn))
        problems.extend(pg_search.check_facts(conn))
    return problems
