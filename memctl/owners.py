"""Who owns a session, and whether that owner is still alive.

A pid alone cannot say that: pids are reused. An owner is host + boot id + pid
+ the process start time (clock ticks since boot, field 22 of
``/proc/PID/stat``). On the same host and boot, the owner is alive only if a
process with that pid exists *and* started at that tick. From another host
nothing can be checked directly, so the lease (kept by the database clock)
decides.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

from .models import Owner, Status

DEFAULT_LEASE_SECONDS = 60.0


@cache
def host_name() -> str:
    # os.uname() is free; importing socket for gethostname() is not.
    return os.uname().nodename


@cache
def boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return None


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None if it is not running."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; the
    # fields after the last ')' are fixed. starttime is field 22 overall.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Identity:
    """A process as memctl records it in a session's owner fields."""

    host: str
    pid: int
    start_time: int | None
    boot_id: str | None

    @classmethod
    def of(cls, pid: int) -> Identity:
        return cls(host_name(), pid, process_start_time(pid), boot_id())

    def matches(self, owner: Owner | None) -> bool:
        return (
            owner is not None
            and owner.host == self.host
            and owner.pid == self.pid
            and owner.start_time == self.start_time
            and owner.boot_id == self.boot_id
        )


def cli_owner_pid(explicit: int | None = None) -> int:
    """The owner of CLI writes: ``--owner-pid``, ``MEMCTL_OWNER_PID``, else our parent."""
    if explicit is not None:
        return explicit
    raw = os.environ.get("MEMCTL_OWNER_PID")
    if raw:
        try:
            return int(raw)
        except ValueError:
            pass
    return os.getppid()


def owner_alive(owner: Owner | None, db_now: float) -> bool:
    """Decide liveness exactly as PRODUCT.md's status table says."""
    if owner is None:
        return False
    if owner.host == host_name() and owner.boot_id is not None and owner.boot_id == boot_id():
        started = process_start_time(owner.pid)
        if started is None:
            # No /proc entry: fall back to a signal probe only when /proc is
            # missing altogether (not Linux); otherwise the process is gone.
            if os.path.isdir("/proc/self"):
                return False
            return owner.start_time is None and _pid_exists(owner.pid)
        return started == owner.start_time
    if owner.host == host_name() and owner.boot_id is not None and boot_id() is not None:
        # Same host, different boot: every process of that boot is gone.
        return False
    return owner.lease_until is not None and owner.lease_until > db_now


def derive_status(state: str, owner: Owner | None, db_now: float) -> Status:
    """Map the stored state ('open', 'ended', 'abandoned') to a Status."""
    if state == "ended":
        return Status.ENDED
    if state == "abandoned":
        return Status.ABANDONED
    return Status.ACTIVE if owner_alive(owner, db_now) else Status.INCOMPLETE
