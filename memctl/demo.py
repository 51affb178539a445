"""``make demo``: a short scripted session, crash and recovery included.

It drives the real ``memctl`` command, printing each command before its
output, against a throwaway database whose path it prints (never the user's
own): start a session, record a conversation with a tool call and its
result, list, show, resume; then run an agent under ``memctl run``, kill it
with SIGKILL in the middle of a tool call, and recover it.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MEMCTL = str(Path(sys.executable).with_name("memctl"))

AGENT = """
import os, subprocess, time
def record(*args):
    subprocess.run(["memctl", "record", *args], check=True, stdout=subprocess.DEVNULL)
record("Summarise the billing service's retry policy")
record("--role", "assistant", "--tool-call",
       '{"id": "call_7", "name": "read_file", "arguments": {"path": "billing/retry.py"}}',
       "Reading billing/retry.py")
open(os.environ["DEMO_READY"], "w").close()
time.sleep(60)  # the tool call is still running when the demo kills us
"""


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m" if sys.stdout.isatty() else f"\n== {title}", flush=True)


def memctl(*args: str, stdin: int | None = subprocess.DEVNULL, check: bool = True) -> str:
    print(f"$ memctl {shlex.join(args)}", flush=True)
    result = subprocess.run(
        [MEMCTL, *args], stdin=stdin, stdout=subprocess.PIPE, text=True, check=False
    )
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    if check and result.returncode != 0:
        raise SystemExit(f"demo: memctl {args[0]} exited {result.returncode}")
    return result.stdout.strip()


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="memctl-demo-"))
    db = workdir / "memctl.db"
    os.environ["MEMCTL_DB"] = str(db)
    os.environ["PATH"] = f"{Path(MEMCTL).parent}{os.pathsep}{os.environ['PATH']}"
    os.environ.pop("MEMCTL_SESSION", None)
    print(f"memctl demo: using a throwaway database at {db}")

    step("1. Record a session: a user message, a tool call, its result")
    session = memctl("start", "--title", "refactor utils")
    memctl("record", "-s", session, "Refactor utils.py")
    memctl(
        "record", "-s", session, "--role", "assistant", "--tool-call",
        '{"id": "call_1", "name": "read_file", "arguments": {"path": "utils.py"}}',
        "Reading utils.py",
    )  # fmt: skip
    memctl("record", "-s", session, "--role", "tool", "--tool-call-id", "call_1", "def f(): ...")
    memctl("checkpoint", "-s", session, "--state", '{"step": 1}', "--note", "read the file")
    memctl("end", session)

    step("2. Look at it")
    memctl("list")
    memctl("show", session[:8])
    memctl("resume", session, "--peek", "--format", "openai")

    step("3. An agent runs under `memctl run` and is killed with SIGKILL mid tool call")
    ready = workdir / "agent-ready"
    env = {**os.environ, "DEMO_READY": str(ready)}
    print("$ memctl run --title 'billing question' -- python agent.py", flush=True)
    supervisor = subprocess.Popen(
        [MEMCTL, "run", "--title", "billing question", "--", sys.executable, "-c", AGENT],
        env=env,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not ready.exists():
        if time.monotonic() > deadline or supervisor.poll() is not None:
            raise SystemExit("demo: the agent did not start")
        time.sleep(0.05)
    agent_pid = _child_of(supervisor.pid)
    print(f"$ kill -9 {agent_pid}   # the agent dies", flush=True)
    os.kill(agent_pid, signal.SIGKILL)
    print(f"(memctl run exited {supervisor.wait()})")
    memctl("list", "--status", "incomplete")

    step("4. Recover it")
    if sys.stdin.isatty():
        memctl("recover", stdin=None)
    else:
        memctl("recover", "--yes")
    memctl("resume", "--last", "--peek", "--format", "openai")
    print(f"\nDone. Explore it yourself:  export MEMCTL_DB={db}; memctl list")


def _child_of(pid: int) -> int:
    """The agent's pid: the only child of the `memctl run` supervisor."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(children[0])


if __name__ == "__main__":
    main()
