"""``memctl recover`` and ``memctl run``: picking up after a crash, and running agents."""

# No `from __future__ import annotations`: see cli.py.

import sys
from typing import Annotated

import typer

from .cli_common import OwnerPidOpt, fail, fancy, say, state_of
from .errors import BadInput, NothingToRecover
from .models import Status
from .owners import cli_owner_pid
from .storage import resolve_url
from .text import dumps


def recover(
    ctx: typer.Context,
    session: Annotated[
        str | None, typer.Argument(help="Recover this session [default: the newest incomplete]")
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Resume without asking; print the session id.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="List incomplete sessions as JSON; claims nothing.")
    ] = False,
    owner_pid: OwnerPidOpt = None,
) -> None:
    """Find sessions a crash left unfinished and pick one up.

    On a terminal, shows where the agent left off and asks to continue.
    Exit 4 when there is nothing to recover (`--json` prints [] and exits 0).
    """
    from . import recovery

    if as_json and yes:
        raise BadInput("--json lists and claims nothing; it cannot be used with --yes")
    memory = state_of(ctx).memory()
    session_id = memory.resolve(session) if session else None
    if as_json:
        found = [
            info
            for info in recovery.candidates(memory, session_id)
            if info.status is Status.INCOMPLETE
        ]
        typer.echo(dumps([info.to_dict() for info in found]))
        return
    found = recovery.candidates(memory, session_id)
    if not found:
        raise NothingToRecover("nothing to recover: no incomplete sessions")
    target = found[0]
    pid = cli_owner_pid(owner_pid)
    if yes:
        recovery.recover(memory, target, owner_pid=pid)
        typer.echo(target.id)
        return
    if not sys.stdin.isatty():
        raise BadInput(
            "stdin is not a terminal, so memctl will not ask: pass --yes to resume "
            f"{target.id}, or --json to list"
        )
    from rich.console import Console

    from .panel import welcome_panel
    from .resume import emit_resumed

    Console(stderr=True, highlight=False).print(welcome_panel(target, more=len(found) - 1))
    if recovery.ask_yes_no("Continue?", default=True):
        claimed = recovery.recover(memory, target, owner_pid=pid)
        emit_resumed(memory.restore(target.id), "transcript", fancy=fancy())
        say(f"memctl: resumed {target.id} (epoch {claimed.epoch}); it is yours now")
    elif recovery.ask_yes_no("Mark it abandoned, so it is not offered again?", default=False):
        memory.abandon(target.id)
        say(f"memctl: abandoned {target.id}")


def run(
    ctx: typer.Context,
    command: Annotated[list[str], typer.Argument(help="The agent command, after --.")],
    session_id: Annotated[
        str | None, typer.Option("--id", help="Id for the new session [default: generated]")
    ] = None,
    resume_id: Annotated[
        str | None, typer.Option("--resume", help="Continue this session instead of a new one.")
    ] = None,
    title: Annotated[
        str | None, typer.Option("--title", "-t", help="Title for a new session.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="With --resume: take over from a live owner.")
    ] = False,
) -> None:
    """Run an agent inside a session: `memctl run -- python agent.py`.

    The child gets MEMCTL_SESSION, MEMCTL_DB, MEMCTL_OWNER_PID and
    MEMCTL_EPOCH. Exit 0 ends the session; a crash or a signal leaves it
    incomplete for `memctl recover`. memctl exits with the child's status.
    """
    from .runner import CannotStart, run_child

    if session_id and resume_id:
        raise BadInput("--id starts a new session and --resume continues one: pick one")
    if not command:
        raise BadInput("no command given: memctl run -- CMD [ARGS...]")
    state = state_of(ctx)
    memory = state.memory()
    if resume_id:
        session = memory.claim(memory.resolve(resume_id), force=force)
    else:
        session = memory.start(title, session_id=session_id)
    say(f"memctl: running in session {session.id}")
    try:
        code = run_child(memory, session, resolve_url(state.url), command)
    except CannotStart as failure:
        if not resume_id:
            # Nothing ran in it: not a crash for recover to offer.
            session.abandon()
        fail(str(failure), failure.code)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command()(recover)
    # Everything after the command belongs to the agent, options included.
    app.command(context_settings={"allow_interspersed_args": False})(run)
