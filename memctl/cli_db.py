"""``memctl db``: where the database is, what is in it, and its health."""

# No `from __future__ import annotations` here: typer would eval() every
# string annotation at start-up, which costs `memctl record` tens of ms.

import os
import sys
from dataclasses import asdict
from typing import Annotated, Any

import typer

from .cli_common import JsonOpt, fail, fancy, say, state_of
from .errors import BadInput
from .storage import resolve_url
from .text import counted, dumps

db_app = typer.Typer(
    no_args_is_help=True, help="Where the database is, what is in it, and its health."
)


@db_app.command("path")
def db_path(ctx: typer.Context) -> None:
    """Print where the database is (a PostgreSQL password is never shown)."""
    from .storage import is_postgres, sqlite_path

    url = resolve_url(state_of(ctx).url)
    if is_postgres(url):
        from .pg_conninfo import parse_target

        typer.echo(parse_target(url).safe)
    else:
        typer.echo(sqlite_path(url).resolve())


@db_app.command("info")
def db_info(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Backend, location, schema version, counts and sizes."""
    info = state_of(ctx).memory().store.info()
    if as_json:
        typer.echo(dumps(info))
        return
    for key, value in info.items():
        if isinstance(value, dict):
            # Nested figures (sizes by part) as "key.part: value" lines.
            for part, figure in value.items():
                typer.echo(f"{key}.{part}: {figure}")
        else:
            typer.echo(f"{key}: {value}")


@db_app.command("check")
def db_check(
    ctx: typer.Context,
    rebuild_search: Annotated[
        bool,
        typer.Option("--rebuild-search", help="Rebuild the search index from the events first."),
    ] = False,
) -> None:
    """Check integrity: the database itself, session summaries against their logs,
    and the search index against the events."""
    store = state_of(ctx).memory().store
    if rebuild_search:
        say(f"memctl: reindexed {store.rebuild_search()} events")
    problems = store.check()
    if problems:
        for problem in problems:
            say(f"memctl: {problem}")
        fail(f"{counted(len(problems), 'problem')} found", 5)
    typer.echo("ok")


@db_app.command("migrate")
def db_migrate(ctx: typer.Context) -> None:
    """Bring the schema up to date (memctl also does this whenever it opens a database)."""
    typer.echo(f"schema version {state_of(ctx).memory().store.schema_version()}")


@db_app.command("copy")
def db_copy(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", help="Target database URL or path.")],
    sessions: Annotated[
        list[str] | None,
        typer.Option("--session", "-s", help="Copy only this session; repeatable."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy sessions (ids, seqs, timestamps, checkpoints) and facts to another database.

    Safe to re-run: what the target already has is skipped. The counts are
    verified at the end. Without --session, every session and fact is copied.
    """
    from . import core
    from .copy import copy_database

    memory = state_of(ctx).memory()
    ids = [memory.resolve(ref) for ref in sessions] if sessions else None
    with core.open(to) as target:
        if _same_database(memory.store, target.store):
            raise BadInput(f"--to names the database being copied ({target.store.describe()})")
        if fancy() or sys.stderr.isatty():
            from rich.progress import Progress

            with Progress(transient=True, console=_stderr_console()) as bar:
                task = bar.add_task("copying events", total=None)

                def advance(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                report = copy_database(memory.store, target.store, ids, progress=advance)
        else:
            report = copy_database(memory.store, target.store, ids)
        where = target.store.describe()
    if as_json:
        typer.echo(dumps(asdict(report)))
        return
    say(
        f"memctl: copied {report.sessions} sessions to {where}: "
        f"{report.events_added} new events ({report.events - report.events_added} already there), "
        f"{report.facts_added} new facts ({report.facts - report.facts_added} already there); "
        "counts verified"
    )


def _same_database(source: Any, target: Any) -> bool:
    """Whether two open stores are one database: the same file, or the same server URL."""
    if source.backend != target.backend:
        return False
    if source.backend == "sqlite":
        return os.path.samefile(source.path, target.path)
    return bool(source.describe() == target.describe())


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)
