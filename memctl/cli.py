"""The ``memctl`` command line: thin commands over the library.

Each command gathers options, calls the library, and hands the result to a
renderer. Errors surface in one place, ``MemctlGroup.invoke``, which prints a
one-line message on stderr and exits with the error's code. Data goes to
stdout; words for people go to stderr.
"""

# No `from __future__ import annotations` here: typer would eval() every
# string annotation at start-up, which costs `memctl record` tens of ms.

import gc
import os
import sys
from enum import Enum
from typing import Annotated, Any, TextIO

import typer

from . import __version__, cli_recover
from .cli_common import (
    MAX_COUNT,
    JsonlOpt,
    JsonOpt,
    MemctlGroup,
    OwnerPidOpt,
    SessionOpt,
    fail,
    fancy,
    one_format,
    print_rich,
    resolve,
    say,
    session_arg,
    state_of,
    writer_for,
)
from .cli_db import db_app
from .cli_fact import fact_app
from .errors import BadInput, NotFound
from .inputs import (
    Cleaned,
    event_from_mapping,
    max_event_bytes,
    parse_json,
    parse_json_object_option,
)
from .models import ROLES, Status
from .owners import cli_owner_pid
from .text import counted, dumps

app = typer.Typer(
    cls=MemctlGroup,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Crash-safe memory for LLM agents: record, checkpoint, recover, search.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"memctl {__version__}")
        raise typer.Exit()


# Whether this process started with stdout closed (main), and the commands
# that print nothing on stdout, so need none.
_stdout_closed = False
_PRINT_NOTHING = frozenset({"end", "run"})


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
    if _stdout_closed and ctx.invoked_subcommand not in _PRINT_NOTHING:
        # Refuse before anything happens: a record or a claim that then
        # cannot print its result would be worse.
        raise BadInput(
            "stdout is closed; nothing done (redirect it to /dev/null to discard the output)"
        )
    state = state_of(ctx)
    state.url = db
    state.durability = "full" if durable else "normal"
    ctx.call_on_close(state.close)


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
    memory = state_of(ctx).memory()
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

    With no TEXT and no event options, and stdin not a terminal, reads events
    as JSON lines, one object a line with the keys of `memctl show --jsonl`,
    and prints one seq a line as each is stored. A bad line is reported by
    number; the others are kept. Event options with no TEXT while stdin
    holds data is exit 2: pass '-' to record stdin as the text.
    """
    session_id = session_arg(session)
    if session_id is None:
        raise BadInput("no session: pass -s SESSION, set MEMCTL_SESSION, or run 'memctl start'")
    memory = state_of(ctx).memory()
    writer = writer_for(owner_pid)
    single = any(
        v is not None for v in (role, event_type, tool_call, tool_call_id, payload, event_id)
    )
    if text is None and single and _stdin_waiting():
        # The options describe one event, so the lines cannot be JSON events;
        # storing the event without them would drop what was piped in.
        raise BadInput(
            "stdin holds data but no TEXT was given: pass '-' to record stdin as the "
            "event's text, or leave out the event options to read JSON lines"
        )
    if text is None and not single:
        if sys.stdin.isatty():
            raise BadInput("nothing to record: give TEXT, or pipe JSON lines into memctl record")
        from .stream import record_stream

        # The storing thread wakes for each reply from the database; a short
        # switch interval lets it take the GIL from the reader sooner (an
        # import of 100,000 lines into PostgreSQL measured 13-20% faster with
        # 0.5 ms than with Python's 5 ms). This process does nothing else meanwhile.
        sys.setswitchinterval(0.0005)
        # Each line parsed makes a few dicts and lists, so the cyclic
        # collector runs every 700 allocations and walks everything the
        # imports left behind (typer, rich, psycopg), none of it garbage.
        # Freezing that and collecting less often cut the import's CPU by
        # 10-15% (100,000 lines into PostgreSQL); a stream makes few cycles.
        gc.freeze()
        gc.set_threshold(10_000, 50, 100)
        acks = _Acks()
        outcome = record_stream(memory, session_id, writer, sys.stdin.fileno(), acks)
        for number, message in outcome.errors:
            say(f"memctl: line {number}: {message}")
        if outcome.replaced:
            say(f"memctl: replaced {outcome.replaced} NUL or surrogate characters with U+FFFD")
        if outcome.errors:
            fail(f"{counted(len(outcome.errors), 'bad line')} skipped, {outcome.stored} stored", 2)
        if acks.lost is not None:
            fail(f"could not print the seqs ({acks.lost}); all {outcome.stored} stored", 1)
        return
    if text == "-":
        # Read no more than can be stored, so a huge input is refused early.
        limit = max_event_bytes()
        raw = sys.stdin.buffer.read(limit + 1)
        if len(raw) > limit:
            raise BadInput(
                f"stdin is larger than the event limit of {limit} bytes (MEMCTL_MAX_EVENT_BYTES)"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            # Raw text is often a tool's output, and a stray binary byte in it
            # should not cost the rest (a JSON line with one is refused: JSON
            # must be UTF-8). Said, not counted as NULs or surrogates.
            text = raw.decode("utf-8", errors="replace")
            say(
                f"memctl: stdin is not valid UTF-8 (from byte {error.start}); "
                "stored with U+FFFD in place of the bytes that are not"
            )
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
    if event.type == "message" and event.content is None and event.tool_call is None:
        # `memctl record --role user` with the text forgotten (or an empty
        # pipe): an empty message helps no one. "" says it on purpose.
        raise BadInput("a message needs TEXT (or '-' to read it from stdin) or a --tool-call")
    if cleaned.replaced:
        say(f"memctl: replaced {cleaned.replaced} NUL or surrogate characters with U+FFFD")
    (seq,) = memory.record(session_id, [event], writer)
    typer.echo(seq)


class _Acks:
    """Prints each stored batch's seqs; stops printing, never storing, when stdout fails.

    A reader that goes away (``memctl record < big.jsonl | head -1``) is not
    an error: the rest is stored quietly. Any other failure to print (stdout
    closed, a full disk) is kept in ``lost`` and reported once all is stored.
    """

    def __init__(self) -> None:
        self.lost: str | None = None
        self._quiet = False

    def __call__(self, seqs: list[int]) -> None:
        if not seqs or self._quiet:
            return
        out = sys.stdout
        try:
            if out is None:
                raise ValueError("stdout is closed")
            out.write("".join(f"{seq}\n" for seq in seqs))
            out.flush()
        except BrokenPipeError:
            self._quiet = True
            # Keep the interpreter's final flush of what is left quiet too.
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        except (OSError, ValueError) as error:
            self._quiet = True
            self.lost = str(error)


def _stdin_waiting() -> bool:
    """Whether stdin is a pipe or file with data in it (not a terminal, not /dev/null)."""
    # Only the no-TEXT form with event options gets here: imported on use.
    import array
    import fcntl
    import select
    import stat
    import termios

    stdin = sys.stdin
    if stdin is None or stdin.isatty():
        return False
    fd = stdin.fileno()
    try:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            return os.lseek(fd, 0, os.SEEK_CUR) < info.st_size
        if not (stat.S_ISFIFO(info.st_mode) or stat.S_ISSOCK(info.st_mode)):
            return False
        # A writer started alongside memctl (cat FILE | memctl record ...)
        # may not have written yet: give it a moment, then count what waits.
        select.select([fd], [], [], 0.05)
        waiting = array.array("i", [0])
        fcntl.ioctl(fd, termios.FIONREAD, waiting)
    except OSError:
        return False
    return waiting[0] > 0


@app.command("list")
def list_sessions(
    ctx: typer.Context,
    status: Annotated[Status | None, typer.Option("--status", help="Only this status.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Active since WHEN: 2026-11-24, 30m, 2h, 7d.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=MAX_COUNT, help="At most N sessions.")
    ] = 20,
    as_json: JsonOpt = False,
    as_jsonl: JsonlOpt = False,
) -> None:
    """Sessions, newest activity first, with status and last message."""
    from .ids import parse_when
    from .render import plain_sessions, rich_sessions

    one_format(as_json, as_jsonl)
    found = (
        state_of(ctx)
        .memory()
        .sessions(status=status, since=parse_when(since) if since else None, limit=limit)
    )
    if as_json:
        typer.echo(dumps([info.to_dict() for info in found]))
    elif as_jsonl:
        for info in found:
            typer.echo(dumps(info.to_dict()))
    elif fancy():
        if found:
            print_rich(rich_sessions(found))
        else:
            say("No sessions yet. Start one with: memctl start --title 'my task'")
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
        int | None, typer.Option("--tail", min=1, max=MAX_COUNT, help="Only the last N events.")
    ] = None,
    around: Annotated[
        int | None,
        typer.Option("--around", min=1, max=MAX_COUNT, help="Only the events around this seq."),
    ] = None,
    context: Annotated[
        int,
        typer.Option(
            "--context", "-C", min=0, max=MAX_COUNT, help="Events either side of --around."
        ),
    ] = 3,
    full: Annotated[bool, typer.Option("--full", help="Do not fold long content.")] = False,
    as_json: JsonOpt = False,
    as_jsonl: JsonlOpt = False,
) -> None:
    """Print a session's events, read-only (safe on a crashed session)."""
    from .render import plain_transcript, rich_transcript

    one_format(as_json, as_jsonl)
    memory = state_of(ctx).memory()
    session_id = resolve(memory, session, last)
    if around is not None:
        first = max(around - context, 1)
        events = memory.events(session_id, after_seq=first - 1)[: around + context - first + 1]
        if not any(event.seq == around for event in events):
            count = memory.get(session_id).events
            raise NotFound(f"session {session_id} has no event {around} (it has {count})")
    else:
        events = memory.events(session_id, tail=tail)
    if as_json:
        typer.echo(dumps([event.to_dict() for event in events]))
    elif as_jsonl:
        for event in events:
            typer.echo(dumps(event.to_dict()))
    elif fancy():
        print_rich(rich_transcript(events, full=full))
    else:
        for line in plain_transcript(events):
            typer.echo(line)


class Order(str, Enum):
    rank = "rank"
    recent = "recent"


@app.command()
def search(
    ctx: typer.Context,
    query: Annotated[
        str, typer.Argument(help='Words (all must match), "a phrase", prefix*, OR, -word.')
    ],
    session: SessionOpt = None,
    role: Annotated[str | None, typer.Option("--role", "-r", help="Only this role.")] = None,
    event_type: Annotated[str | None, typer.Option("--type", help="Only this event type.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="From WHEN: 2026-11-24, 30m, 2h, 7d.")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Before WHEN.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=1000, help="At most N hits.")
    ] = 20,
    order: Annotated[
        Order, typer.Option("--order", help="Best match or newest first.")
    ] = Order.rank,
    as_json: JsonOpt = False,
    as_jsonl: JsonlOpt = False,
) -> None:
    """Full-text search over every message, tool call, tool result and event.

    Words are ANDed; "a phrase" matches words in order; prefix* matches the
    start of a word; OR between words; -word excludes. Any text is a valid
    query. Each hit shows how to open it: memctl show SESSION --around SEQ.
    A query that starts with '-' goes after '--': memctl search -- -word.
    """
    from .ids import parse_when
    from .render import plain_hits, rich_hits

    one_format(as_json, as_jsonl)
    if role is not None and role not in ROLES:
        raise BadInput(f"--role must be one of {', '.join(ROLES)}, not {role!r}")
    memory = state_of(ctx).memory()
    hits = memory.search(
        query,
        session_id=memory.resolve(session_arg(session)) if session_arg(session) else None,
        role=role,
        type=event_type,
        since=parse_when(since) if since else None,
        until=parse_when(until) if until else None,
        limit=limit,
        order=order.value,
    )
    if as_json:
        typer.echo(dumps([hit.to_dict() for hit in hits]))
    elif as_jsonl:
        for hit in hits:
            typer.echo(dumps(hit.to_dict()))
    elif fancy():
        if hits:
            print_rich(rich_hits(hits))
        else:
            say(f"No matches for {query!r}.")
    else:
        for line in plain_hits(hits):
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

    memory = state_of(ctx).memory()
    session_id = resolve(memory, session, last)
    if not peek:
        claimed = memory.claim(session_id, owner_pid=cli_owner_pid(owner_pid), force=force)
        say(f"memctl: resumed {session_id} (epoch {claimed.epoch})")
    restored = memory.restore(session_id, since_checkpoint=since_checkpoint)
    emit_resumed(restored, output.value, fancy=fancy())


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
    memory = state_of(ctx).memory()
    session_id = resolve(memory, session, how="-s SESSION")
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
        if not raw.strip():
            where = {"-": "stdin"}.get(state, state[1:] if state.startswith("@") else "--state")
            raise BadInput(f"--state is empty ({where} held nothing): give JSON, e.g. '{{}}'")
        value = parse_json(raw, "--state")
    written = memory.checkpoint(session_id, writer_for(owner_pid), value, note)
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
    memory = state_of(ctx).memory()
    session_id = resolve(memory, session)
    info = memory.end(session_id, writer_for(owner_pid), abandon=abandon)
    say(f"memctl: {info.status.value} {session_id}")


# After the commands above, so --help lists them in the order a session goes.
cli_recover.register(app)
app.add_typer(fact_app, name="fact")
app.add_typer(db_app, name="db")


def main() -> None:
    global _stdout_closed
    # With a standard stream closed (`memctl ... >&-`, as some supervisors
    # start programs) Python sets it to None. A closed stdin is no input; a
    # closed stdout is refused by every command that prints (see _main).
    if sys.stdin is None:
        sys.stdin = _null_stream(0)
    if sys.stdout is None:
        _stdout_closed = True
        sys.stdout = _null_stream(1)
    app(prog_name="memctl")


def _null_stream(fd: int) -> TextIO:
    """/dev/null as standard stream ``fd`` (0 or 1), inherited by children (``memctl run``'s)."""
    null = os.open(os.devnull, os.O_WRONLY if fd else os.O_RDONLY)
    if null != fd:
        os.dup2(null, fd)  # inheritable, unlike what os.open returns
        os.close(null)
    else:
        os.set_inheritable(fd, True)
    # Kept open for the process's life.
    if fd:
        return open(fd, "w", encoding="utf-8", closefd=False)
    return open(fd, encoding="utf-8", closefd=False)
