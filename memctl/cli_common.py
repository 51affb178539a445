"""Pieces every memctl command shares: the error boundary, global state, options.

``MemctlGroup.invoke`` is the single place where errors become exit codes:
a ``MemctlError`` prints one line on stderr and exits with its code.
"""

# No `from __future__ import annotations` here: typer would eval() every
# string annotation at start-up, which costs `memctl record` tens of ms.

import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from . import core
from .core import Memory
from .errors import BadInput, MemctlError
from .owners import MAX_PID, Identity, cli_owner_pid, env_epoch
from .storage import Writer


def fail(message: str, code: int) -> NoReturn:
    typer.echo(f"memctl: {message}", err=True)
    raise typer.Exit(code)


class MemctlGroup(TyperGroup):
    """The single error boundary: MemctlError -> message on stderr + its exit code."""

    def invoke(self, ctx: Any) -> Any:
        warnings.showwarning = show_warning
        try:
            return super().invoke(ctx)
        except MemctlError as error:
            fail(f"error: {error}", error.exit_code)
        except BrokenPipeError:
            # Reader went away (memctl list | head): not an error. Point stdout
            # at /dev/null so the interpreter's final flush stays quiet.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as error:
            if os.environ.get("MEMCTL_DEBUG"):
                raise
            if error.__class__.__module__.startswith("typer"):
                raise  # usage errors: typer formats them and exits 2
            if _sqlite_damage(error):
                fail(f"error: the database is unreadable ({error}); see 'memctl db check'", 5)
            fail(
                f"unexpected error: {type(error).__name__}: {error} "
                "(set MEMCTL_DEBUG=1 for a traceback)",
                1,
            )


def _sqlite_damage(error: Exception) -> bool:
    """Whether ``error`` is what SQLite raises for a damaged file.

    Its exact class only: the subclasses (locked, constraint, misuse) mean
    something else. sqlite3 is imported here, on the error path, so that a
    PostgreSQL user's start-up does not load it.
    """
    import sqlite3

    return type(error) is sqlite3.DatabaseError


def show_warning(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
    typer.echo(f"memctl: warning: {message}", err=True)


@dataclass
class State:
    """Global options, and the database opened on first use."""

    url: str | None = None
    durability: str = "normal"
    _memory: Memory | None = field(default=None, repr=False)

    def memory(self) -> Memory:
        if self._memory is None:
            self._memory = core.open(
                self.url, durability=self.durability, progress=migration_progress()
            )
        return self._memory

    def close(self) -> None:
        if self._memory is not None:
            self._memory.close()


def state_of(ctx: typer.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


# -- shared option helpers -------------------------------------------------

SessionOpt = Annotated[
    str | None,
    typer.Option("--session", "-s", help="Session id or unique prefix [default: $MEMCTL_SESSION]"),
]
# Bounds keep absurd numbers from reaching SQL as integers SQLite cannot hold.
MAX_COUNT = 1_000_000_000
OwnerPidOpt = Annotated[
    int | None,
    typer.Option(
        "--owner-pid",
        min=1,
        max=MAX_PID,
        help="Process that owns the session [default: $MEMCTL_OWNER_PID, else the caller]",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
JsonlOpt = Annotated[bool, typer.Option("--jsonl", help="Print one JSON object a line.")]


def fancy() -> bool:
    """Rich output only for a person: a terminal, and NO_COLOR unset."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def print_rich(renderable: Any) -> None:
    from rich.console import Console

    Console(highlight=False).print(renderable)


def writer_for(owner_pid: int | None) -> Writer:
    """The identity of a CLI write, with the epoch a `memctl run` child inherited."""
    return Writer(Identity.of(cli_owner_pid(owner_pid)), env_epoch())


def session_arg(value: str | None) -> str | None:
    return value or os.environ.get("MEMCTL_SESSION") or None


def resolve(memory: Memory, ref: str | None, last: bool | None = None, how: str = "SESSION") -> str:
    """The session a command names: ``ref`` (or $MEMCTL_SESSION), or the latest with ``--last``.

    ``last`` is None for a command without ``--last``; ``how`` is how the
    command takes a session, for the message when none is given.
    """
    if last and ref:
        raise BadInput(f"give {how} or --last, not both")
    chosen = session_arg(ref)
    if chosen is None and not last:
        either = f"{how}, --last" if last is not None else how
        raise BadInput(f"no session given: pass {either}, or set MEMCTL_SESSION")
    return memory.resolve(chosen, last=bool(last))


def one_format(as_json: bool, as_jsonl: bool) -> None:
    """Refuse --json with --jsonl: a script asking for both has a bug to hear about."""
    if as_json and as_jsonl:
        raise BadInput("--json and --jsonl cannot be used together")


def say(message: str) -> None:
    typer.echo(message, err=True)


def migration_progress() -> Any:
    """A progress callback that draws a bar on a terminal's stderr, else None.

    It only appears when a migration has long work to do (indexing an
    existing database for search); opening an up-to-date database never calls it.
    """
    if not sys.stderr.isatty():
        return None
    bar: Any = None
    task: Any = None

    def report(done: int, total: int) -> None:
        nonlocal bar, task
        if bar is None:
            from rich.progress import Progress

            bar = Progress(transient=True, console=_stderr_console())
            bar.start()
            task = bar.add_task("updating the database", total=total)
        bar.update(task, completed=done, total=total)
        if done >= total:
            bar.stop()

    return report


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)
