"""Finding sessions a crash left unfinished, and bringing one back.

``recover`` is deliberately stricter than ``resume``: it only takes a session
that is *incomplete*, and only if nobody claimed it since the caller looked
(``expected_epoch``). Of many processes recovering the same session at once,
exactly one wins; the others get a Conflict (exit 6).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import NothingToRecover, SessionOwned
from .models import SessionInfo, Status
from .working import WorkingMemory

if TYPE_CHECKING:
    from .core import Memory, Session


def candidates(memory: Memory, session_id: str | None = None) -> list[SessionInfo]:
    """Incomplete sessions, newest first (or just ``session_id``, whatever its status)."""
    if session_id is not None:
        return [memory.get(session_id)]
    return memory.incomplete()


def recover(memory: Memory, info: SessionInfo, *, owner_pid: int | None = None) -> Session:
    """Claim ``info`` (as last seen) for the caller; it must still be incomplete."""
    if info.status is Status.ACTIVE:
        owner = info.owner
        where = f" by pid {owner.pid} on {owner.host}" if owner else ""
        raise SessionOwned(f"session {info.id} is not incomplete: it is in use{where}")
    if info.status is not Status.INCOMPLETE:
        raise NothingToRecover(
            f"session {info.id} is {info.status.value}, not incomplete; "
            f"'memctl resume {info.id}' reopens it"
        )
    return memory.claim(info.id, owner_pid=owner_pid, expected_epoch=info.epoch)


def ask(prompt: str) -> str:
    """Read a line from stdin, prompting on the terminal; EOFError at end of input.

    With stdout a terminal this is ``input`` (line editing included). With
    stdout redirected (``memctl recover > out``) the prompt goes to stderr,
    like the panel before it, so that stdout holds only the output.
    """
    if sys.stdout is not None and sys.stdout.isatty():
        return input(prompt)
    sys.stderr.write(prompt)
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")


def ask_yes_no(question: str, *, default: bool, read: Callable[[str], str] = ask) -> bool:
    """Ask on the terminal; Enter takes the default. EOF counts as no."""
    suffix = " [Y/n] " if default else " [y/N] "
    while True:
        try:
            answer = read(question + suffix).strip().lower()
        except EOFError:
            return False
        if not answer:
            return default
        if answer in ("y", "yes"):
            return True
        if answer in ("n", "no"):
            return False


def welcome_back(
    memory: Memory | None = None,
    *,
    read: Callable[[str], str] = ask,
    console: Any = None,
) -> Session | None:
    """The seed's exercise as one call, for a Python agent's start-up.

    Finds the newest incomplete session, shows "Welcome back. You left off
    at: ..." and asks ``Continue?``. On yes, claims the session and returns it
    with ``working`` rebuilt from the log and ``restored`` holding the latest
    checkpoint. On no, offers to mark it abandoned and returns None. Never
    prompts when stdin is not a terminal: it returns None at once.
    """
    from . import core

    memory = memory or core.open()
    found = memory.incomplete()
    if not found or not sys.stdin.isatty():
        return None
    from rich.console import Console

    from .panel import welcome_panel

    out = console or Console(stderr=True, highlight=False)
    out.print(welcome_panel(found[0], more=len(found) - 1))
    if ask_yes_no("Continue?", default=True, read=read):
        session = recover(memory, found[0])
        session.restored = memory.restore(session.id)
        session.working = WorkingMemory.from_events(session.restored.messages)
        return session
    if ask_yes_no("Mark it abandoned, so it is not offered again?", default=False, read=read):
        memory.abandon(found[0].id)
    return None
