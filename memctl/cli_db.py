"""``memctl db``: where the database is, what is in it, and its health."""

# No `from __future__ import annotations` here: typer would eval() every
# string annotation at start-up, which costs `memctl record` tens of ms.

import typer

from .cli_common import JsonOpt, fail, say, state_of
from .storage import resolve_url
from .text import dumps

db_app = typer.Typer(
    no_args_is_help=True, help="Where the database is, what is in it, and its health."
)


@db_app.command("path")
def db_path(ctx: typer.Context) -> None:
    """Print where the database is (a PostgreSQL password is never shown)."""
    from .storage import is_postgres, sqlite_path

    url = resolve_url(state_of(ctx).url)
    if is_postgres(url):
        from .redact import redact_url

        typer.echo(redact_url(url))
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
        typer.echo(f"{key}: {value}")


@db_app.command("check")
def db_check(ctx: typer.Context) -> None:
    """Check integrity: the file itself and the session summaries against their logs."""
    problems = state_of(ctx).memory().store.check()
    if problems:
        for problem in problems:
            say(f"memctl: {problem}")
        fail(f"{len(problems)} problems found", 5)
    typer.echo("ok")


@db_app.command("migrate")
def db_migrate(ctx: typer.Context) -> None:
    """Bring the schema up to date (memctl also does this whenever it opens a database)."""
    typer.echo(f"schema version {state_of(ctx).memory().store.schema_version()}")
