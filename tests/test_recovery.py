"""Crash safety and recovery with real processes and real signals, on both backends."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import memctl
from memctl.errors import BadInput
from memctl.models import Status
from tests.conftest import MEMCTL, run_memctl, wait_for

KILLS = 200 if os.environ.get("MEMCTL_SOAK") else 50

RECORDER = textwrap.dedent(
    """
    import sys, memctl
    url, sid = sys.argv[1], sys.argv[2]
    with memctl.open(url) as mem:
        s = mem.start(session_id=sid)
        i = 0
        while True:
            i += 1
            seq = s.add_message("user", f"message {i}", id=f"{sid}-{i}")
            print(seq, flush=True)
    """
)


def test_kill_loop_loses_nothing_acknowledged(db_url: str) -> None:
    """SIGKILL at random moments never loses an acknowledged event nor corrupts the store."""
    rng = random.Random(1234)
    for round_ in range(KILLS):
        sid = f"kill-{round_}"
        proc = subprocess.Popen(
            [sys.executable, "-c", RECORDER, db_url, sid],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()  # it is recording now
        assert first.strip() == "1"
        time.sleep(rng.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read()
        proc.wait()
        acked = [int(line) for line in [first, *rest.splitlines()] if line.strip()]
        with memctl.open(db_url) as mem:
            seqs = [event.seq for event in mem.events(sid)]
            assert seqs == list(range(1, len(seqs) + 1)), "seq has a gap or a duplicate"
            assert set(acked) <= set(seqs), "an acknowledged event was lost"
            assert mem.get(sid).status is Status.INCOMPLETE
            assert mem.store.check() == []
        resumed = run_memctl("--db", db_url, "recover", sid, "--yes")
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.decode().strip() == sid


def test_live_owner_is_never_offered(db_url: str, tmp_path: Path) -> None:
    """A session whose `memctl run` child is still running is active, not incomplete."""
    ready = tmp_path / "ready"
    agent = f"import pathlib, time; pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"
    proc = subprocess.Popen(
        [MEMCTL, "--db", db_url, "run", "--id", "live", "--", sys.executable, "-c", agent],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(ready.exists)
        listed = run_memctl("--db", db_url, "recover", "--json")
        assert listed.returncode == 0
        assert "live" not in [s["id"] for s in json.loads(listed.stdout)]
        refused = run_memctl("--db", db_url, "recover", "live", "--yes")
        assert refused.returncode == 6
    finally:
        proc.terminate()
        proc.wait()


def test_racing_recoveries_have_one_winner(db_url: str) -> None:
    """Of 16 simultaneous `recover SESSION --yes`, exactly one wins; the rest exit 6."""
    with memctl.open(db_url) as mem:
        for round_ in range(3):
            sid = f"race-{round_}"
            _record_as_dead_owner(db_url, sid, "hello")
            assert mem.get(sid).status is Status.INCOMPLETE
            racers = [
                subprocess.Popen(
                    [MEMCTL, "--db", db_url, "recover", sid, "--yes"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
                for _ in range(16)
            ]
            codes = sorted(racer.wait() for racer in racers)
            for racer in racers:
                assert racer.stderr is not None and b"Traceback" not in racer.stderr.read()
                assert racer.stdout is not None
                racer.stdout.close()
                racer.stderr.close()
            assert codes == [0] + [6] * 15


def _record_as_dead_owner(db_url: str, sid: str, *args: str) -> None:
    """Record as a process that has since exited, leaving the session incomplete."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    done = run_memctl("--db", db_url, "record", "-s", sid, "--owner-pid", str(child.pid), *args)
    assert done.returncode == 0, done.stderr


ZOMBIE = textwrap.dedent(
    """
    import sys, memctl
    url, sid = sys.argv[1], sys.argv[2]
    with memctl.open(url) as mem:
        s = mem.start(session_id=sid)
        s.add_message("user", "before the pause")
        print("ready", flush=True)
        sys.stdin.readline()          # SIGSTOPped here, then woken
        try:
            s.add_message("user", "zombie write")
        except memctl.FencedOut:
            print("fenced", flush=True)
        else:
            print("wrote", flush=True)
    """
)


def test_zombie_writer_is_fenced_out(db_url: str) -> None:
    """A stopped owner that wakes after a takeover cannot write again."""
    zombie = subprocess.Popen(
        [sys.executable, "-c", ZOMBIE, db_url, "zomb"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert zombie.stdout is not None and zombie.stdin is not None
    assert zombie.stdout.readline().strip() == "ready"
    zombie.send_signal(signal.SIGSTOP)
    try:
        refused = run_memctl("--db", db_url, "resume", "zomb", "--format", "json")
        assert refused.returncode == 6, "a stopped process is still alive: no silent takeover"
        taken = run_memctl("--db", db_url, "resume", "zomb", "--force", "--format", "json")
        assert taken.returncode == 0, taken.stderr
        run_memctl("--db", db_url, "record", "-s", "zomb", "--role", "assistant", "new owner")
    finally:
        zombie.send_signal(signal.SIGCONT)
    zombie.stdin.write("go\n")
    zombie.stdin.flush()
    assert zombie.stdout.readline().strip() == "fenced"
    zombie.wait()
    with memctl.open(db_url) as mem:
        contents = [event.content for event in mem.events("zomb")]
    assert contents == ["before the pause", "new owner"]


def test_run_ends_session_on_success(db_url: str) -> None:
    """`memctl run` passes the session to the child and ends it on exit 0."""
    script = (
        "import os, subprocess; subprocess.run(['memctl', 'record', os.environ['MEMCTL_EPOCH']])"
    )
    env = {"PATH": f"{Path(MEMCTL).parent}{os.pathsep}{os.environ['PATH']}"}
    done = run_memctl(
        "--db", db_url, "run", "--id", "ok1", "--", sys.executable, "-c", script, env=env
    )
    assert done.returncode == 0, done.stderr
    with memctl.open(db_url) as mem:
        info = mem.get("ok1")
        assert info.status is Status.ENDED
        assert [e.content for e in mem.events("ok1")] == [str(info.epoch)]


def test_library_agent_attaches_to_the_run_session(db_url: str) -> None:
    """Memory.attach() inside `memctl run` writes with the run's claim; outside it is BadInput."""
    script = textwrap.dedent(
        """
        import memctl
        with memctl.open() as mem:
            s = mem.attach()
            print(len(s.working), s.restored is not None)
            s.add_message("assistant", "from the library")
        """
    )
    done = run_memctl("--db", db_url, "run", "--id", "att1", "--", sys.executable, "-c", script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [b"0", b"True"]
    with memctl.open(db_url) as mem:
        assert mem.get("att1").status is Status.ENDED
        assert [e.content for e in mem.events("att1")] == ["from the library"]
        with pytest.raises(BadInput):
            mem.attach()


def test_run_failure_leaves_session_incomplete(db_url: str) -> None:
    """A non-zero exit is recorded, the session is incomplete, and memctl exits with it."""
    failed = run_memctl(
        "--db", db_url, "run", "--id", "bad1", "--", sys.executable, "-c", "raise SystemExit(3)"
    )
    assert failed.returncode == 3
    killed = run_memctl(
        "--db", db_url, "run", "--id", "bad2", "--",
        sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
    )  # fmt: skip
    assert killed.returncode == 128 + signal.SIGKILL
    with memctl.open(db_url) as mem:
        assert mem.get("bad1").status is Status.INCOMPLETE
        (exit_event,) = mem.events("bad2")
        assert exit_event.type == "exit" and exit_event.payload == {
            "code": 137,
            "signal": "SIGKILL",
        }


@pytest.mark.parametrize(
    ("make", "code", "words"),
    [
        (lambda d: str(d / "missing"), 127, "command not found"),
        (lambda d: str(d), 126, "cannot run"),
        (lambda d: str(_file(d / "plain.txt", "hello", 0o644)), 126, "cannot run"),
        (lambda d: str(_file(d / "garbage", "not a program", 0o755)), 126, "cannot run"),
    ],
)
def test_run_of_a_command_that_cannot_start(
    db_url: str, tmp_path: Path, make: Any, code: int, words: str
) -> None:
    """Not found is 127, not runnable 126, as in a shell; the empty session is not offered."""
    done = run_memctl("--db", db_url, "run", "--id", "nostart", "--", make(tmp_path))
    assert done.returncode == code, done.stderr
    assert words.encode() in done.stderr and b"unexpected" not in done.stderr
    with memctl.open(db_url) as mem:
        assert mem.get("nostart").status is Status.ABANDONED
    offered = run_memctl("--db", db_url, "recover", "--json")
    assert json.loads(offered.stdout) == []


def _file(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_run_forwards_sigterm(db_url: str, tmp_path: Path) -> None:
    """SIGTERM sent to `memctl run` reaches the agent."""
    ready = tmp_path / "ready"
    agent = textwrap.dedent(
        f"""
        import pathlib, signal, sys, time
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(42))
        pathlib.Path({str(ready)!r}).touch()
        time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [MEMCTL, "--db", db_url, "run", "--id", "term", "--", sys.executable, "-c", agent],
        stderr=subprocess.DEVNULL,
    )
    wait_for(ready.exists)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 42


def test_fenced_run_child_gets_exit_6(db_url: str) -> None:
    """A child writing with MEMCTL_EPOCH after a takeover is refused with exit 6."""
    with memctl.open(db_url) as mem:
        session = mem.start(session_id="fence")
        mem.claim("fence", force=True)
        session.stop()
    refused = run_memctl(
        "--db", db_url, "record", "-s", "fence", "late",
        env={"MEMCTL_EPOCH": str(session.epoch)},
    )  # fmt: skip
    assert refused.returncode == 6
    assert b"Traceback" not in refused.stderr


def test_resume_answers_interrupted_tool_call(db_url: str) -> None:
    """After a crash inside a tool call, resume's openai history answers every call."""
    call = json.dumps({"id": "call_9", "name": "grep", "arguments": {"q": "retry"}})
    _record_as_dead_owner(db_url, "tc", "find retries")
    _record_as_dead_owner(db_url, "tc", "--role", "assistant", "--tool-call", call, "Searching")
    out = run_memctl("--db", db_url, "resume", "tc", "--format", "openai")
    assert out.returncode == 0, out.stderr
    messages = json.loads(out.stdout)
    assert messages[1]["tool_calls"][0]["id"] == "call_9"
    assert messages[2]["role"] == "tool" and messages[2]["tool_call_id"] == "call_9"
    again = run_memctl("--db", db_url, "resume", "tc", "--format", "openai")
    assert len(json.loads(again.stdout)) == 3, "a second claim must not answer the call twice"


def test_recover_nothing_exits_4(db_url: str) -> None:
    """recover and recover --yes exit 4 with nothing to recover; --json prints []."""
    assert run_memctl("--db", db_url, "recover", "--yes").returncode == 4
    assert run_memctl("--db", db_url, "recover").returncode == 4
    listed = run_memctl("--db", db_url, "recover", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []


def test_recover_does_not_prompt_without_terminal(db_url: str) -> None:
    """With stdin not a terminal and no --yes, recover explains instead of waiting."""
    _record_as_dead_owner(db_url, "np", "x")
    out = run_memctl("--db", db_url, "recover", timeout=20)
    assert out.returncode == 2 and b"--yes" in out.stderr
