"""Who owns a session, and whether that owner is still alive.

A pid alone cannot say that: pids are reused. An owner is host + boot id + pid
+ the process start time (clock ticks since boot, field 22 of
``/proc/PID/stat``). On the same host and boot, the owner is alive only if a
process with that pid exists *and* started at that tick. From another host
nothing can be checked directly, so the lease (kept by the database clock)
decides.

A killed process keeps its /proc entry, in state Z, until its parent reaps
it; an agent SIGKILLed under a slow or careless parent would otherwise look
alive and its session could not be recovered. So a process counts as running
only if some thread of it has not exited.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

from .errors import BadInput
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


# Z (zombie) and X (dead) tasks have exited; the /proc entry only waits for
# the parent to reap them. Linux 2.6.33 to 3.13 also spelled dead 'x'.
_EXITED_STATES = (b"Z", b"X", b"x")


def _stat_fields(path: str) -> list[bytes] | None:
    """Fields 3 onwards of a /proc ``stat`` file, or None if it cannot be read."""
    try:
        with open(path, "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses, and any
    # process can set it; only the fields after the last ')' are fixed.
    end = stat.rfind(b")")
    if end < 0:
        return None
    return stat[end + 1 :].split()


def _exited(fields: list[bytes]) -> bool:
    return not fields or fields[0] in _EXITED_STATES


def _some_thread_running(pid: int) -> bool:
    # A main thread that called pthread_exit() leaves the process's own stat
    # in state Z while its other threads go on working: that agent is alive.
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tids:
        fields = _stat_fields(f"/proc/{pid}/task/{tid}/stat")
        if fields is not None and not _exited(fields):
            return True
    return False


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None if it is not running.

    A zombie (exited, not yet reaped) is not running: it gets None exactly as
    a pid with no /proc entry does.
    """
    fields = _stat_fields(f"/proc/{pid}/stat")
    if fields is None or len(fields) < 20:
        return None
    if _exited(fields) and not _some_thread_running(pid):
        return None
    try:
        # starttime is field 22 overall.
        return int(fields[19])
    except ValueError:
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


# Linux's PID_MAX_LIMIT: no process id is larger.
MAX_PID = 1 << 22


def cli_owner_pid(explicit: int | None = None) -> int:
    """The owner of CLI writes: ``--owner-pid``, ``MEMCTL_OWNER_PID``, else our parent."""
    if explicit is not None:
        return explicit
    raw = os.environ.get("MEMCTL_OWNER_PID")
    if raw:
        try:
            pid = int(raw)
        except ValueError:
            pid = 0
        if not 0 < pid <= MAX_PID:
            # A typo here would silently make the caller's shell the owner.
            raise BadInput(f"MEMCTL_OWNER_PID must be a process id, not {raw!r}")
        return pid
    return os.getppid()


def env_epoch() -> int | None:
    """The fencing epoch a ``memctl run`` child inherited in ``MEMCTL_EPOCH``, if any."""
    raw = os.environ.get("MEMCTL_EPOCH")
    if not raw:
        return None
    try:
        epoch = int(raw)
    except ValueError:
        epoch = 0
    # Epochs count claims from 1; the bound keeps the number within SQL's integers.
    if not 0 < epoch < 1 << 62:
        raise BadInput(f"MEMCTL_EPOCH must be a claim's epoch (a positive number), not {raw!r}")
    return epoch


def owner_alive(owner: Owner | None, db_now: float) -> bool:
    """Decide liveness exactly as PRODUCT.md's status table says."""
    if owner is None:
        return False
    if owner.host == host_name() and owner.boot_id is not None and owner.boot_id == boot_id():
        started = process_start_time(owner.pid)
        if started is None:
            # Not running by /proc: fall back to a signal probe only when /proc
            # is missing altogether (not Linux); otherwise the process is gone.
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
