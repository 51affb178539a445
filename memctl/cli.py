"""The ``memctl`` command line: thin commands over the library.

Each command gathers options, calls the library, and hands the result to a
renderer. Errors surface in one place, ``MemctlGroup.invoke``, which prints a
one-line message on stderr and exits with the error's code. Data goes to
stdout; words for people go to stderr.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from . import __version__, core
from .core import Memory
from .errors import BadInput, MemctlError, NothingToRecover
from .inputs import Cleaned, event_from_mapping, parse_json, parse_json_object_option
from .models import Status
from .owners import Identity, cli_owner_pid
from .storage import Writer, resolve_url
from .text import dumps


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"memctl: {message}", err=True)
    raise typer.Exit(code)


class MemctlGroup(TyperGroup):
    """The single error boundary: MemctlError -> message on stderr + its exit code."""

    def invoke(self, ctx: Any) -> Any:
        warnings.showwarning = _show_warning
        try:
            return super().invoke(ctx)
        except MemctlError as error:
            _fail(f"error: {error}", error.exit_code)
        except BrokenPipeError:
            # Reader went away (memctl list | head): not an error. Point stdout
            # at /dev/null so the interpreter's final flush stays quiet.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as error:
            if os.environ.get("MEMCTL_DEBUG"):
                raise
            if error.__class__.__module__.startswith("typer"):
                raise  # usage errors: typer formats them and exits 2
            _fail(
                f"unexpected error: {type(error).__name__}: {error} "
                "(set MEMCTL_DEBUG=1 for a traceback)",
                1,
            )


def _show_warning(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
    typer.echo(f"memctl: warning: {message}", err=True)


app = typer.Typer(
    cls=MemctlGroup,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    help="Crash-safe memory for LLM agents: record, checkpoint, recover, search.",
)
db_app = typer.Typer(
    no_args_is_help=True, help="Where the database is, what is in it, and its health."
)
app.add_typer(db_app, name="db")


@dataclass
class State:
    """Global options, and the database opened on first use."""

    url: str | None = None
    durability: str = "normal"
    _memory: Memory | None = field(default=None, repr=False)

    def memory(self) -> Memory:
        if self._memory is None:
            self._memory = core.open(self.url, durability=self.durability)
        return self._memory

    def close(self) -> None:
        if self._memory is not None:
            self._memory.close()


def _state(ctx: typer.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def _version(value: bool) -> None:
    if value:
        typer.echo(f"memctl {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Database: a file path, sqlite:///PATH or postgresql://... "
            "[default: $MEMCTL_DB, else the user data dir]",
            show_default=False,
        ),
    ] = None,
    durable: Annotated[
        bool,
        typer.Option(
            "--durable",
            help="Sync every write to disk (survives power loss, slower). "
            "The default survives a process crash.",
            envvar="MEMCTL_DURABLE",
        ),
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    state = _state(ctx)
    state.url = db
    state.durability = "full" if durable else "normal"
    ctx.call_on_close(state.close)


# -- shared option helpers -------------------------------------------------

SessionOpt = Annotated[
    str | None,
    typer.Option("--session", "-s", help="Session id or unique prefix [default: $MEMCTL_SESSION]"),
]
OwnerPidOpt = Annotated[
    int | None,
    typer.Option(
        "--owner-pid",
        help="Process that owns the session [default: $MEMCTL_OWNER_PID, else the caller]",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
JsonlOpt = Annotated[bool, typer.Option("--jsonl", help="Print one JSON object a line.")]


def _fancy() -> bool:
    """Rich output only for a person: a terminal, and NO_COLOR unset."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _print_rich(renderable: Any) -> None:
    from rich.console import Console

    Console(highlight=False).print(renderable)


def _writer(owner_pid: int | None) -> Writer:
    """The identity of a CLI write, with the epoch a `memctl run` child inherited."""
    raw_epoch = os.environ.get("MEMCTL_EPOCH")
    epoch = None
    if raw_epoch:
        try:
            epoch = int(raw_epoch)
        except ValueError:
            raise BadInput(f"MEMCTL_EPOCH must be a number, not {raw_epoch!r}") from None
    return Writer(Identity.of(cli_owner_pid(owner_pid)), epoch)


def _session_arg(value: str | None) -> str | None:
    return value or os.environ.get("MEMCTL_SESSION") or None


def _resolve(memory: Memory, ref: str | None, last: bool = False) -> str:
    return memory.resolve(_session_arg(ref), last=last)


def _say(message: str) -> None:
    typer.echo(message, err=True)


# -- commands ------------------------------------------------------------


@app.command()
def start(
    ctx: typer.Context,
    session_id: Annotated[
        str | None, typer.Option("--id", help="Choose the session id [default: generated]")
    ] = None,
    title: Annotated[str | None, typer.Option("--title", "-t", help="A title for people.")] = None,
    meta: Annotated[
        list[str] | None, typer.Option("--meta", help="Metadata as KEY=VALUE; repeatable.")
    ] = None,
    owner_pid: OwnerPidOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Open a new session owned by the caller and print its id."""
    metadata: dict[str, str] = {}
    for item in meta or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInput(f"--meta takes KEY=VALUE, not {item!r}")
        metadata[key] = value
    memory = _state(ctx).memory()
    session = memory.start(
        title, session_id=session_id, metadata=metadata, owner_pid=cli_owner_pid(owner_pid)
    )
    if as_json:
        typer.echo(dumps({**session.info().to_dict(), "epoch": session.epoch}))
    else:
        typer.echo(session.id)


@app.command()
def record(
    ctx: typer.Context,
    text: Annotated[
        str | None,
        typer.Argument(
            help="Message text; '-' reads it from stdin. Without TEXT, stdin is read as JSON lines.",
            show_default=False,
        ),
    ] = None,
    session: SessionOpt = None,
    role: Annotated[
        str | None,
        typer.Option("--role", "-r", help="user, assistant, system or tool [default: user]"),
    ] = None,
    event_type: Annotated[
        str | None, typer.Option("--type", help="Event type [default: message]")
    ] = None,
    tool_call: Annotated[
        str | None, typer.Option("--tool-call", help='JSON: {"id", "name", "arguments"}')
    ] = None,
    tool_call_id: Annotated[
        str | None, typer.Option("--tool-call-id", help="The tool call a tool message answers.")
    ] = None,
    payload: Annotated[str | None, typer.Option("--payload", help="JSON object.")] = None,
    event_id: Annotated[
        str | None, typer.Option("--id", help="Idempotency key: the same id is stored once.")
    ] = None,
    owner_pid: OwnerPidOpt = None,
) -> None:
    """Append an event (creating the session if new) and print its seq.

    With no TEXT and stdin not a terminal, reads events as JSON lines, one
    object a line with the keys of `memctl show --jsonl`, and prints one seq a
    line as each is stored. A bad line is reported by number; the others are kept.
    """
    session_id = _session_arg(session)
    if session_id is None:
        raise BadInput("no session: pass -s SESSION, set MEMCTL_SESSION, or run 'memctl start'")
    memory = _state(ctx).memory()
    writer = _writer(owner_pid)
    if text is None:
        if sys.stdin.isatty():
            raise BadInput("nothing to record: give TEXT, or pipe JSON lines into memctl record")
        from .stream import record_stream

        outcome = record_stream(memory, session_id, writer, sys.stdin.fileno(), _report_seq)
        for number, message in outcome.errors:
            _say(f"memctl: line {number}: {message}")
        if outcome.replaced:
            _say(f"memctl: replaced {outcome.replaced} NUL or surrogate characters with U+FFFD")
        if outcome.errors:
            _fail(f"{len(outcome.errors)} bad lines skipped, {outcome.stored} stored", 2)
        return
    if text == "-":
        text = sys.stdin.buffer.read().decode("utf-8", errors="surrogateescape")
    data: dict[str, Any] = {
        "type": event_type,
        "role": role or (None if event_type and event_type != "message" else "user"),
        "content": text,
        "tool_call": parse_json_object_option(tool_call, "--tool-call") if tool_call else None,
        "tool_call_id": tool_call_id,
        "payload": parse_json_object_option(payload, "--payload") if payload else None,
        "id": event_id,
    }
    cleaned = Cleaned()
    event = event_from_mapping(data, cleaned)
    if cleaned.replaced:
        _say(f"memctl: replaced {cleaned.replaced} NUL or surrogate characters with U+FFFD")
    (seq,) = memory.record(session_id, [event], writer)
    typer.echo(seq)


def _report_seq(seqs: list[int]) -> None:
    if seqs:
        sys.stdout.write("".join(f"{seq}\n" for seq in seqs))
        sys.stdout.flush()


@app.command("list")
def list_sessions(
    ctx: typer.Context,
    status: Annotated[Status | None, typer.Option("--status", help="Only this status.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Active since WHEN: 2026-11-24, 30m, 2h, 7d.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most N sessions.")] = 20,
    as_json: JsonOpt = False,
    as_jsonl: JsonlOpt = False,
) -> None:
    """Sessions, newest activity first, with status and last message."""
    from .ids import parse_when
    from .render import plain_sessions, rich_sessions

    found = (
        _state(ctx)
        .memory()
        .sessions(status=status, since=parse_when(since) if since else None, limit=limit)
    )
    if as_json:
        typer.echo(dumps([info.to_dict() for info in found]))
    elif as_jsonl:
        for info in found:
            typer.echo(dumps(info.to_dict()))
    elif _fancy():
        if found:
            _print_rich(rich_sessions(found))
        else:
            _say("No sessions yet. Start one with: memctl start --title 'my task'")
    else:
        for line in plain_sessions(found):
            typer.echo(line)


@app.command()
def show(
    ctx: typer.Context,
    session: Annotated[
        str | None, typer.Argument(help="Session id or prefix [default: $MEMCTL_SESSION]")
    ] = None,
    last: Annotated[bool, typer.Option("--last", help="The most recently active session.")] = False,
    tail: Annotated[
        int | None, typer.Option("--tail", min=1, help="Only the last N events.")
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="Do not fold long content.")] = False,
    as_json: JsonOpt = False,
    as_jsonl: JsonlOpt = False,
) -> None:
    """Print a session's events, read-only (safe on a crashed session)."""
    from .render import plain_transcript, rich_transcript

    memory = _state(ctx).memory()
    session_id = _resolve(memory, session, last)
    events = memory.events(session_id, tail=tail)
    if as_json:
        typer.echo(dumps([event.to_dict() for event in events]))
    elif as_jsonl:
        for event in events:
            typer.echo(dumps(event.to_dict()))
    elif _fancy():
        _print_rich(rich_transcript(events, full=full))
    else:
        for line in plain_transcript(events):
            typer.echo(line)


class Format(str, Enum):
    transcript = "transcript"
    json = "json"
    jsonl = "jsonl"
    openai = "openai"


@app.command()
def resume(
    ctx: typer.Context,
    session: Annotated[str | None, typer.Argument(help="Session id or prefix.")] = None,
    last: Annotated[bool, typer.Option("--last", help="The most recently active session.")] = False,
    output: Annotated[
        Format, typer.Option("--format", "-f", help="Output format.")
    ] = Format.transcript,
    since_checkpoint: Annotated[
        bool, typer.Option("--since-checkpoint", help="Only messages after the latest checkpoint.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Take over from a live owner (fencing it out).")
    ] = False,
    peek: Annotated[bool, typer.Option("--peek", help="Read without claiming.")] = False,
    owner_pid: OwnerPidOpt = None,
) -> None:
    """Restore a session's working memory and take ownership of it.

    Prints the messages (and the latest checkpoint's state) in the chosen
    format; `--format openai` prints a chat-completions `messages` array.
    """
    from .resume import emit_resumed

    memory = _state(ctx).memory()
    session_id = _resolve(memory, session, last)
    if not peek:
        claimed = memory.claim(session_id, owner_pid=cli_owner_pid(owner_pid), force=force)
        _say(f"memctl: resumed {session_id} (epoch {claimed.epoch})")
    restored = memory.restore(session_id, since_checkpoint=since_checkpoint)
    emit_resumed(restored, output.value, fancy=_fancy())


@app.command()
def checkpoint(
    ctx: typer.Context,
    session: SessionOpt = None,
    state: Annotated[
        str | None, typer.Option("--state", help="Agent state: JSON, @FILE, or - for stdin.")
    ] = None,
    note: Annotated[str | None, typer.Option("--note", help="A note for people.")] = None,
    owner_pid: OwnerPidOpt = None,
) -> None:
    """Write a checkpoint at the session's current seq and print that seq."""
    memory = _state(ctx).memory()
    session_id = _resolve(memory, session)
    value: Any = None
    if state is not None:
        if state == "-":
            raw: str | bytes = sys.stdin.buffer.read()
        elif state.startswith("@"):
            try:
                with open(state[1:], "rb") as handle:
                    raw = handle.read()
            except OSError as exc:
                raise BadInput(f"cannot read {state[1:]}: {exc.strerror}") from None
        else:
            raw = state
        value = parse_json(raw, "--state")
    written = memory.checkpoint(session_id, _writer(owner_pid), value, note)
    typer.echo(written.seq)


@app.command()
def end(
    ctx: typer.Context,
    session: Annotated[
        str | None, typer.Argument(help="Session id or prefix [default: $MEMCTL_SESSION]")
    ] = None,
    abandon: Annotated[
        bool,
        typer.Option("--abandon", help="Mark it abandoned: it will not be offered to recover."),
    ] = False,
    owner_pid: OwnerPidOpt = None,
) -> None:
    """End a session (or abandon it)."""
    memory = _state(ctx).memory()
    session_id = _resolve(memory, session)
    info = memory.end(session_id, _writer(owner_pid), abandon=abandon)
    _say(f"memctl: {info.status.value} {session_id}")


@app.command()
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

    memory = _state(ctx).memory()
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
        emit_resumed(memory.restore(target.id), "transcript", fancy=_fancy())
        _say(f"memctl: resumed {target.id} (epoch {claimed.epoch}); it is yours now")
    elif recovery.ask_yes_no("Mark it abandoned, so it is not offered again?", default=False):
        memory.abandon(target.id)
        _say(f"memctl: abandoned {target.id}")


@app.command(
    context_settings={"allow_interspersed_args": False},
)
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
    from .runner import run_child

    if session_id and resume_id:
        raise BadInput("--id starts a new session and --resume continues one: pick one")
    state = _state(ctx)
    memory = state.memory()
    if resume_id:
        session = memory.claim(memory.resolve(resume_id), force=force)
    else:
        session = memory.start(title, session_id=session_id)
    _say(f"memctl: running in session {session.id}")
    code = run_child(memory, session, resolve_url(state.url), command)
    raise typer.Exit(code)


# -- db ----------------------------------------------------------------------


@db_app.command("path")
def db_path(ctx: typer.Context) -> None:
    """Print where the database is (a PostgreSQL password is never shown)."""
    from .storage import is_postgres, sqlite_path

    url = resolve_url(_state(ctx).url)
    if is_postgres(url):
        from .redact import redact_url

        typer.echo(redact_url(url))
    else:
        typer.echo(sqlite_path(url).resolve())


@db_app.command("info")
def db_info(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Backend, location, schema version, counts and sizes."""
    info = _state(ctx).memory().store.info()
    if as_json:
        typer.echo(dumps(info))
        return
    for key, value in info.items():
        typer.echo(f"{key}: {value}")


@db_app.command("check")
def db_check(ctx: typer.Context) -> None:
    """Check integrity: the file itself and the session summaries against their logs."""
    problems = _state(ctx).memory().store.check()
    if problems:
        for problem in problems:
            _say(f"memctl: {problem}")
        _fail(f"{len(problems)} problems found", 5)
    typer.echo("ok")


@db_app.command("migrate")
def db_migrate(ctx: typer.Context) -> None:
    """Bring the schema up to date (memctl also does this whenever it opens a database)."""
    typer.echo(f"schema version {_state(ctx).memory().store.schema_version()}")


def main() -> None:
    app(prog_name="memctl")
