"""The "Welcome back" prompt, driven in a real pseudo-terminal."""

from __future__ import annotations

import os
import subprocess
import sys

import pexpect
import pytest

import memctl
from memctl.models import Status
from memctl.owners import Identity
from memctl.storage import Writer
from tests.conftest import MEMCTL, run_memctl


def _crashed_session(db_url: str, sid: str, last: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    for args in (["Refactor utils.py"], ["--role", "assistant", last]):
        done = run_memctl("--db", db_url, "record", "-s", sid, "--owner-pid", str(child.pid), *args)
        assert done.returncode == 0


def _spawn(db_url: str, *args: str) -> pexpect.spawn:
    env = {**os.environ, "MEMCTL_DB": db_url, "COLUMNS": "100", "TERM": "xterm"}
    return pexpect.spawn(MEMCTL, ["recover", *args], env=env, timeout=20, encoding="utf-8")


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    return str(os.path.join(str(tmp_path), "p.db"))


def test_yes_resumes(db_url: str) -> None:
    """The panel shows the last message; Enter (yes) claims and prints the transcript."""
    _crashed_session(db_url, "pty1", "Reading utils.py now")
    term = _spawn(db_url)
    term.expect("Welcome back")
    term.expect("You left off at:")
    term.expect("Reading utils.py now")
    term.expect(r"Continue\? \[Y/n\]")
    term.sendline("")
    term.expect("Refactor utils.py")
    term.expect(pexpect.EOF)
    term.close()
    assert term.exitstatus == 0
    with memctl.open(db_url) as mem:
        assert mem.get("pty1").epoch >= 2


def test_no_then_abandon(db_url: str) -> None:
    """Answering n, then y, marks the session abandoned."""
    _crashed_session(db_url, "pty2", "halfway")
    term = _spawn(db_url)
    term.expect(r"Continue\? \[Y/n\]")
    term.sendline("n")
    term.expect(r"abandoned.*\[y/N\]")
    term.sendline("y")
    term.expect(pexpect.EOF)
    term.close()
    assert term.exitstatus == 0
    with memctl.open(db_url) as mem:
        assert mem.get("pty2").status is Status.ABANDONED


def test_stored_escape_sequences_do_not_reach_terminal(sqlite_url: str) -> None:
    """Escape sequences in the last message are shown escaped, never sent raw."""
    hostile = "done \x1b]0;pwned\x07 \x1b[2J [bold red]markup[/]"
    _crashed_session(sqlite_url, "pty3", hostile)
    term = _spawn(sqlite_url)
    term.expect(r"Continue\? \[Y/n\]")
    shown = term.before
    term.sendline("n")
    term.expect(r"\[y/N\]")
    term.sendline("n")
    term.expect(pexpect.EOF)
    assert "\x1b]0;pwned" not in shown and "\x1b[2J" not in shown
    assert "\\x1b]0;pwned" in shown
    assert "[bold red]markup[/]" in shown


WELCOME = """
import memctl
session = memctl.welcome_back(memctl.open())
if session is None:
    print("RESULT none")
else:
    print("RESULT", session.id, len(session.working), session.restored.checkpoint.state)
"""


def test_welcome_back_restores_for_a_python_agent(db_url: str) -> None:
    """memctl.welcome_back() shows the panel, and on yes returns the restored session."""
    _crashed_session(db_url, "pty4", "Reading the billing code")
    with memctl.open(db_url) as mem:
        mem.store.checkpoint("pty4", {"step": 7}, "half way", _dead_writer())
    env = {**os.environ, "MEMCTL_DB": db_url, "COLUMNS": "100", "TERM": "xterm"}
    term = pexpect.spawn(sys.executable, ["-c", WELCOME], env=env, timeout=20, encoding="utf-8")
    term.expect("Welcome back")
    term.expect("Reading the billing code")
    term.expect(r"Continue\? \[Y/n\]")
    term.sendline("y")
    term.expect(r"RESULT pty4 2 \{'step': 7\}")
    term.expect(pexpect.EOF)


def _dead_writer() -> Writer:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return Writer(Identity.of(child.pid))


def test_prompt_goes_to_the_terminal_when_stdout_is_redirected(
    db_url: str, tmp_path: object
) -> None:
    """`memctl recover > FILE`: the question is asked on stderr; FILE holds only the transcript."""
    _crashed_session(db_url, "pty-out", "Reading utils.py now")
    out = os.path.join(str(tmp_path), "out.txt")
    env = {**os.environ, "MEMCTL_DB": db_url, "COLUMNS": "100", "TERM": "xterm"}
    term = pexpect.spawn(
        "sh",
        ["-c", 'exec "$0" recover > "$1"', MEMCTL, out],
        env=env,
        timeout=20,
        encoding="utf-8",
    )
    term.expect(r"Continue\? \[Y/n\]")
    term.sendline("y")
    term.expect(pexpect.EOF)
    term.close()
    assert term.exitstatus == 0
    with open(out, encoding="utf-8") as handle:
        written = handle.read()
    assert "Refactor utils.py" in written
    assert "Continue?" not in written
