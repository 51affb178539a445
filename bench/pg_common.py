"""What the PostgreSQL benchmarks share: the server, and a schema of their own.

The server is ``$MEMCTL_BENCH_PG`` (default: the local test server the test
suite uses). Each benchmark works in a schema of its own, reached through a
URL whose ``search_path`` names it, so it never touches another schema's
data and memctl's migrations run there as on a fresh database. psycopg is
imported only inside these functions: without it, the SQLite benchmarks
still run and these skip.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from memctl.pg_conninfo import one_line, parse_target

from .registry import Outcome

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    return os.environ.get("MEMCTL_BENCH_PG") or DEFAULT_URL


def safe(url: str) -> str:
    """``url`` fit to print (no password)."""
    return parse_target(url).safe


def unavailable(url: str) -> str | None:
    """Why no benchmark can run against ``url``, or None when a server answers."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'memctl[postgres]')"
    failure = None
    try:
        with psycopg.connect(url, connect_timeout=3):
            pass
    except psycopg.Error as error:
        failure = one_line(str(error), parse_target(url).secrets)
    return None if failure is None else f"no PostgreSQL at {safe(url)}: {failure}"


def skipped(name: str, reason: str) -> Outcome:
    """The visible skip: a line on stderr, no rows."""
    print(f"  skipped {name}: {reason}", file=sys.stderr, flush=True)
    return Outcome()


def schema_url(url: str, schema: str) -> str:
    """``url`` with ``schema`` as its search_path (memctl creates its tables there)."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


def connect(url: str) -> Any:
    """A plain autocommit psycopg connection, as a hand-written program would open."""
    import psycopg

    return psycopg.connect(url, autocommit=True)


def create_schema(url: str, schema: str) -> None:
    from psycopg import sql

    with connect(url) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def drop_schema(url: str, schema: str) -> None:
    from psycopg import sql

    with connect(url) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextmanager
def scratch_schema(url: str, name: str) -> Iterator[str]:
    """A fresh schema for one benchmark run; yields its URL, drops it afterwards."""
    schema = f"memctl_bench_{name}_{secrets.token_hex(4)}"
    create_schema(url, schema)
    try:
        yield schema_url(url, schema)
    finally:
        drop_schema(url, schema)
