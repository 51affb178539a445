"""``memctl run``: run an agent as a child process inside a session.

memctl stays the session's owner while the child runs (keeping the lease
alive) and hands the child what it needs to write with the session's epoch:
``MEMCTL_SESSION``, ``MEMCTL_DB``, ``MEMCTL_OWNER_PID``, ``MEMCTL_EPOCH``.
Exit 0 ends the session. Any other exit, or death by a signal, is recorded
as an ``exit`` event and leaves the session incomplete, ready for ``recover``.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from types import FrameType

from .core import Memory, Session
from .errors import FencedOut

# Signals a supervisor passes on. SIGINT is not among them: Ctrl-C at a
# terminal already reaches the child (same process group), and sending it a
# second copy would interrupt its clean-up.
FORWARDED = tuple(
    sig
    for sig in (
        getattr(signal, name, None)
        for name in ("SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")
    )
    if sig is not None
)


def child_env(session: Session, url: str) -> dict[str, str]:
    return {
        **os.environ,
        "MEMCTL_SESSION": session.id,
        "MEMCTL_DB": url,
        "MEMCTL_OWNER_PID": str(os.getpid()),
        "MEMCTL_EPOCH": str(session.epoch),
    }


def exit_code(returncode: int) -> int:
    """The shell convention: a child killed by signal N exits 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


class CannotStart(Exception):
    """The command never ran; ``code`` is the status a shell gives for that (127 or 126)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def run_child(memory: Memory, session: Session, url: str, command: Sequence[str]) -> int:
    """Run ``command`` in ``session``; returns the exit status to pass on.

    CannotStart if it cannot be started at all: not found is 127, found but
    not runnable (no permission, a directory, not an executable format) 126,
    as a shell has it. ``command`` is not empty (the CLI checks that before
    it starts a session for it).
    """
    try:
        child = subprocess.Popen(list(command), env=child_env(session, url))
    except FileNotFoundError:
        raise CannotStart(f"command not found: {command[0]}", 127) from None
    except OSError as exc:
        raise CannotStart(f"cannot run {command[0]}: {exc.strerror or exc}", 126) from None

    def forward(signum: int, frame: FrameType | None) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        returncode = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.signal(signal.SIGINT, previous_int)

    try:
        if returncode == 0:
            session.end()
        else:
            how: dict[str, object] = {"code": exit_code(returncode)}
            if returncode < 0:
                how["signal"] = signal.Signals(-returncode).name
            session.record("exit", how, content=describe_exit(returncode))
            session.stop()
    except FencedOut:
        # Someone claimed the session while the child ran; it is theirs now.
        session.stop()
    return exit_code(returncode)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"agent killed by {signal.Signals(-returncode).name}"
    return f"agent exited with status {returncode}"
