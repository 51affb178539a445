"""Owner liveness against real processes: live, zombie, reaped, and odd ones.

A SIGKILLed agent stays in /proc as a zombie until its parent reaps it; these
tests hold a child in that state (by not calling wait() yet) and check that
memctl already counts it as gone.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from memctl.models import Owner, Status
from memctl.owners import Identity, derive_status, owner_alive, process_start_time
from tests.conftest import run_memctl, wait_for

SLEEPER = "import time; time.sleep(60)"


def _owner_of(pid: int) -> Owner:
    """The owner memctl records for ``pid`` (as ``ledger.eligible`` builds it)."""
    me = Identity.of(pid)
    return Owner(me.host, me.pid, me.start_time, me.boot_id, None)


def _alive(owner: Owner) -> bool:
    # A lease that expired long ago: on this host only /proc can say alive.
    return owner_alive(owner, time.time())


def _state(pid: int, task: int | None = None) -> str | None:
    path = f"/proc/{pid}/stat" if task is None else f"/proc/{pid}/task/{task}/stat"
    try:
        with open(path, "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 1 :].split()[0].decode()


@contextmanager
def _child(*args: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def _kill_to_zombie(proc: subprocess.Popen[str]) -> None:
    """SIGKILL ``proc`` and return once it is a zombie, without reaping it."""
    os.kill(proc.pid, signal.SIGKILL)
    wait_for(lambda: _state(proc.pid) == "Z")


def test_live_process_is_alive() -> None:
    """A running owner with the recorded start time is alive and its session active."""
    with _child("-c", SLEEPER) as proc:
        owner = _owner_of(proc.pid)
        assert owner.start_time is not None
        assert _alive(owner)
        assert derive_status("open", owner, time.time()) is Status.ACTIVE
        time.sleep(0.2)
        assert _alive(owner)


def test_zombie_owner_is_gone() -> None:
    """A SIGKILLed owner not yet reaped by its parent is gone, and so it stays once reaped."""
    with _child("-c", SLEEPER) as proc:
        owner = _owner_of(proc.pid)
        assert _alive(owner)
        _kill_to_zombie(proc)
        assert os.path.exists(f"/proc/{proc.pid}/stat")  # still there, as a zombie
        assert process_start_time(proc.pid) is None
        assert not _alive(owner)
        assert derive_status("open", owner, time.time()) is Status.INCOMPLETE
        assert proc.wait() == -signal.SIGKILL
        assert not _alive(owner)
        assert derive_status("open", owner, time.time()) is Status.INCOMPLETE


def test_zombie_identity_matches_no_live_owner() -> None:
    """Taken from a zombie, an identity has no start time, as for a pid that does not exist."""
    with _child("-c", SLEEPER) as proc:
        _kill_to_zombie(proc)
        assert Identity.of(proc.pid).start_time is None
        assert not _alive(_owner_of(proc.pid))


def test_parenthesised_name_does_not_fool_the_parser() -> None:
    """A process whose name holds ') Z ' is judged by its real state, not its name."""
    rename = "open('/proc/self/comm', 'w').write('a) Z 1 (b'); print('ready', flush=True); "
    with _child("-c", rename + SLEEPER) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        with open(f"/proc/{proc.pid}/comm", encoding="utf-8") as handle:
            assert handle.read().strip() == "a) Z 1 (b"
        owner = _owner_of(proc.pid)
        assert owner.start_time is not None
        assert _alive(owner)
        _kill_to_zombie(proc)
        assert not _alive(owner)


# exit(2), unlike exit_group(2), ends only the calling thread.
SYS_EXIT = {"x86_64": 60, "aarch64": 93}.get(platform.machine())

LEADER_EXITS = textwrap.dedent(
    """
    import ctypes, sys, threading, time
    threading.Thread(target=time.sleep, args=(60,)).start()
    ctypes.CDLL(None).syscall(int(sys.argv[1]), 0)
    """
)


@pytest.mark.skipif(SYS_EXIT is None, reason=f"no exit(2) number for {platform.machine()}")
def test_process_whose_main_thread_exited_is_alive() -> None:
    """A process whose main thread exited shows state Z but is alive while a thread runs."""
    with _child("-c", LEADER_EXITS, str(SYS_EXIT)) as proc:
        owner = _owner_of(proc.pid)
        wait_for(lambda: _state(proc.pid) == "Z")
        assert any(
            _state(proc.pid, int(tid)) not in ("Z", "X")
            for tid in os.listdir(f"/proc/{proc.pid}/task")
        )
        assert _alive(owner)
        os.kill(proc.pid, signal.SIGKILL)
        wait_for(lambda: len(os.listdir(f"/proc/{proc.pid}/task")) == 1)
        assert not _alive(owner)


AGENT = textwrap.dedent(
    """
    import sys, time, memctl
    with memctl.open(sys.argv[1]) as mem:
        s = mem.start(session_id=sys.argv[2])
        s.add_message("user", "hello")
        print("recorded", flush=True)
        time.sleep(60)
    """
)


def test_recover_finds_session_of_unreaped_agent(tmp_path: Path) -> None:
    """`memctl recover` offers a SIGKILLed agent's session before its parent reaps it."""
    url = str(tmp_path / "data" / "memctl.db")
    with _child("-c", AGENT, url, "zombie-1") as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "recorded"
        listed = run_memctl("--db", url, "recover", "--json")
        assert listed.returncode == 0
        assert json.loads(listed.stdout) == []
        _kill_to_zombie(proc)
        listed = run_memctl("--db", url, "recover", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [s["id"] for s in json.loads(listed.stdout)] == ["zombie-1"]
        assert _state(proc.pid) == "Z"  # the answer came while it was a zombie
