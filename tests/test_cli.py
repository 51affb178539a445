"""The commands, through typer's CliRunner and through the installed `memctl` in pipelines."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import memctl
from memctl.cli import app
from tests.conftest import MEMCTL, run_memctl

SESSION_KEYS = {
    "id",
    "title",
    "status",
    "created_at",
    "last_activity_at",
    "ended_at",
    "events",
    "messages",
    "last_message",
    "pending_tool_call",
    "checkpoint",
    "owner",
    "metadata",
}
EVENT_KEYS = {
    "session",
    "seq",
    "id",
    "ts",
    "type",
    "role",
    "content",
    "tool_call",
    "tool_call_id",
    "payload",
}
CHECKPOINT_KEYS = {"session", "seq", "id", "ts", "note", "state"}
CALL = {"id": "call_1", "name": "read_file", "arguments": {"path": "utils.py"}}

runner = CliRunner()


def cli(
    db: str, *args: str, input: str | bytes | None = None, env: dict[str, str] | None = None
) -> Result:
    """Run a command in-process; an exception escaping the CLI fails the test."""
    return runner.invoke(app, ["--db", db, *args], input=input, env=env, catch_exceptions=False)


def ok(db: str, *args: str, input: str | bytes | None = None) -> str:
    result = cli(db, *args, input=input)
    assert result.exit_code == 0, result.output
    return result.stdout


def as_json(db: str, *args: str) -> Any:
    return json.loads(ok(db, *args))


def jsonl(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines()]


def session_of(db: str, session_id: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = as_json(db, "list", "--json", "--limit", "1000")
    matches = [s for s in found if s["id"] == session_id]
    assert len(matches) == 1
    return matches[0]


def epoch(db: str, session_id: str) -> int:
    with memctl.open(db) as mem:
        return mem.get(session_id).epoch


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def shell(command: str, db: str) -> subprocess.CompletedProcess[str]:
    """Run a shell pipeline whose `memctl` is the installed entry point."""
    script = f'memctl() {{ {shlex.quote(MEMCTL)} --db {shlex.quote(db)} "$@"; }}\n{command}'
    return subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )


def conversation(db: str, sid: str) -> None:
    """user -> assistant with a tool call -> tool result -> a non-message event."""
    ok(db, "record", "-s", sid, "Refactor utils.py")
    ok(db, "record", "-s", sid, "--role", "assistant", "--tool-call", json.dumps(CALL), "Reading")
    ok(db, "record", "-s", sid, "--role", "tool", "--tool-call-id", "call_1", "def f(): ...")
    ok(db, "record", "-s", sid, "--type", "plan_updated", "--payload", '{"steps": 3}', "plan")


# -- start ---------------------------------------------------------------------


def test_start_prints_a_generated_id(db_url: str) -> None:
    """start without --id prints a new time-sortable id of an active session."""
    sid = ok(db_url, "start").strip()
    assert sid.startswith("s_") and len(sid) > 10
    assert session_of(db_url, sid)["status"] == "active"


def test_start_with_id_title_and_meta(db_url: str) -> None:
    """--id, --title and repeated --meta KEY=VALUE are stored as given."""
    out = ok(
        db_url, "start", "--id", "st-1", "--title", "refactor", "--meta", "a=1", "--meta", "b=x=y"
    )
    assert out.strip() == "st-1"
    info = session_of(db_url, "st-1")
    assert info["title"] == "refactor" and info["metadata"] == {"a": "1", "b": "x=y"}


def test_start_json_prints_session_and_epoch(db_url: str) -> None:
    """start --json prints the Session shape plus the fencing epoch."""
    doc = as_json(db_url, "start", "--id", "st-json", "--json")
    assert set(doc) == SESSION_KEYS | {"epoch"}
    assert doc["id"] == "st-json" and doc["epoch"] == 1 and doc["status"] == "active"
    assert doc["created_at"].endswith("Z") and len(doc["created_at"]) == 27


def test_start_existing_id_is_a_conflict(db_url: str) -> None:
    """Starting a session id that exists is exit 6 and leaves it alone."""
    ok(db_url, "start", "--id", "st-dup", "--title", "first")
    result = cli(db_url, "start", "--id", "st-dup", "--title", "second")
    assert result.exit_code == 6 and "resume" in result.stderr
    assert session_of(db_url, "st-dup")["title"] == "first"


def test_start_bad_meta_is_bad_usage(tmp_path: Path) -> None:
    """--meta without '=' is exit 2 and creates nothing."""
    db = str(tmp_path / "m.db")
    result = cli(db, "start", "--id", "st-meta", "--meta", "novalue")
    assert result.exit_code == 2 and "KEY=VALUE" in result.stderr
    assert as_json(db, "list", "--json") == []


# -- record --------------------------------------------------------------------


def test_record_text_prints_seq(db_url: str) -> None:
    """record TEXT appends a user message and prints its seq."""
    assert ok(db_url, "record", "-s", "rec-1", "hello").strip() == "1"
    assert ok(db_url, "record", "-s", "rec-1", "again").strip() == "2"
    events = as_json(db_url, "show", "rec-1", "--json")
    assert [(e["role"], e["content"]) for e in events] == [("user", "hello"), ("user", "again")]


def test_record_dash_reads_text_from_stdin(db_url: str) -> None:
    """record - stores stdin as the message text, newlines and all."""
    ok(db_url, "record", "-s", "rec-dash", "--role", "system", "-", input="line one\nline two")
    (event,) = as_json(db_url, "show", "rec-dash", "--json")
    assert event["content"] == "line one\nline two" and event["role"] == "system"


def test_record_tool_call_and_result(db_url: str) -> None:
    """--tool-call rides on an assistant message; --tool-call-id answers it."""
    conversation(db_url, "rec-tool")
    events = as_json(db_url, "show", "rec-tool", "--json")
    assert events[1]["role"] == "assistant" and events[1]["tool_call"] == CALL
    assert events[2]["role"] == "tool" and events[2]["tool_call_id"] == "call_1"


def test_record_pending_tool_call_in_summary(db_url: str) -> None:
    """An unanswered tool call shows in the session summary until its result is recorded."""
    ok(
        db_url,
        "record",
        "-s",
        "rec-pend",
        "--role",
        "assistant",
        "--tool-call",
        json.dumps(CALL),
        "x",
    )
    assert session_of(db_url, "rec-pend")["pending_tool_call"] == CALL
    ok(db_url, "record", "-s", "rec-pend", "--role", "tool", "--tool-call-id", "call_1", "done")
    assert session_of(db_url, "rec-pend")["pending_tool_call"] is None


def test_record_type_and_payload(db_url: str) -> None:
    """--type and --payload record an episodic event with no role."""
    ok(
        db_url,
        "record",
        "-s",
        "rec-type",
        "--type",
        "plan_updated",
        "--payload",
        '{"steps": 3}',
        "p",
    )
    (event,) = as_json(db_url, "show", "rec-type", "--json")
    assert event["type"] == "plan_updated" and event["role"] is None
    assert event["payload"] == {"steps": 3}
    info = session_of(db_url, "rec-type")
    assert info["events"] == 1 and info["messages"] == 0


def test_record_id_is_idempotent(db_url: str) -> None:
    """Recording the same --id twice stores one event and prints the first seq."""
    ok(db_url, "record", "-s", "rec-idem", "first")
    assert ok(db_url, "record", "-s", "rec-idem", "--id", "k-1", "keyed").strip() == "2"
    assert ok(db_url, "record", "-s", "rec-idem", "--id", "k-1", "keyed").strip() == "2"
    events = as_json(db_url, "show", "rec-idem", "--json")
    assert [e["id"] for e in events][1:] == ["k-1"] and len(events) == 2


def test_record_id_from_another_session_is_bad_input(db_url: str) -> None:
    """An event id already used in another session is exit 2, and nothing is stored."""
    ok(db_url, "record", "-s", "rec-a", "--id", "k-shared", "a")
    result = cli(db_url, "record", "-s", "rec-b", "--id", "k-shared", "b")
    assert result.exit_code == 2 and "rec-a" in result.stderr
    assert as_json(db_url, "show", "rec-a", "--json")[0]["content"] == "a"


@pytest.mark.parametrize(
    "option",
    [
        ["--tool-call", "{not json"],
        ["--tool-call", "[1, 2]"],
        ["--tool-call", '{"id": "c", "arguments": {}}'],
        ["--payload", '{"x": NaN}'],
        ["--role", "robot"],
    ],
)
def test_record_bad_option_is_bad_input(tmp_path: Path, option: list[str]) -> None:
    """A malformed --tool-call/--payload/--role is exit 2 and stores nothing."""
    db = str(tmp_path / "m.db")
    result = cli(db, "record", "-s", "rec-bad", *option, "text")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("memctl: ")
    assert as_json(db, "list", "--json") == []


def test_record_without_session_is_bad_usage(tmp_path: Path) -> None:
    """record with no -s and no MEMCTL_SESSION is exit 2 with a hint."""
    result = cli(str(tmp_path / "m.db"), "record", "hello")
    assert result.exit_code == 2 and "MEMCTL_SESSION" in result.stderr


def test_record_uses_memctl_session(db_url: str) -> None:
    """MEMCTL_SESSION is the default session of record."""
    result = cli(db_url, "record", "from env", env={"MEMCTL_SESSION": "rec-env"})
    assert result.exit_code == 0
    assert as_json(db_url, "show", "rec-env", "--json")[0]["content"] == "from env"


def test_record_with_options_but_no_text_does_not_drop_the_event(tmp_path: Path) -> None:
    """`record --type T --payload P` with stdin not a terminal never exits 0 having stored nothing."""
    db = str(tmp_path / "m.db")
    result = subprocess.run(
        [MEMCTL, "--db", db, "record", "-s", "rec-notext", "--type", "t", "--payload", '{"a": 1}'],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if result.returncode == 0:
        events = as_json(db, "show", "rec-notext", "--json")
        assert [e["payload"] for e in events] == [{"a": 1}]
    else:
        assert result.returncode == 2 and b"Traceback" not in result.stderr


def test_record_with_options_refuses_piped_data_it_would_drop(db_url: str) -> None:
    """`cat FILE | memctl record --role tool ...` (no TEXT, no '-') is exit 2, nothing stored."""
    result = shell(
        "printf 'def f():\\n    pass\\n' | memctl record -s rec-piped --role tool"
        " --tool-call-id call_1",
        db_url,
    )
    assert result.returncode == 2, result.stderr
    assert "pass '-'" in result.stderr and "Traceback" not in result.stderr
    assert shell("memctl show rec-piped --json", db_url).returncode == 3
    # With '-' the same pipe is the event's text.
    result = shell(
        "printf 'def f(): pass' | memctl record -s rec-piped --role tool --tool-call-id c1 -",
        db_url,
    )
    assert result.returncode == 0, result.stderr
    assert as_json(db_url, "show", "rec-piped", "--json")[0]["content"] == "def f(): pass"


def _lines(count: int) -> str:
    return "".join(
        json.dumps({"role": "user", "content": f"line {n}"}) + "\n" for n in range(count)
    )


@pytest.mark.parametrize(
    ("redirect", "code"),
    # (A stdout closed from the start, `>&-`, is refused before anything is
    # stored: test_closed_stdout_is_refused_before_anything_happens.)
    [("| head -1", 0), ("| true", 0), ("> /dev/full", 1)],
)
def test_record_stream_stores_everything_when_stdout_fails(
    tmp_path: Path, redirect: str, code: int
) -> None:
    """The seqs are acknowledgements: a reader going away or a failing stdout never stops
    the storing.

    A reader that goes away is not an error; any other failure to print is
    exit 1 after everything is stored.
    """
    db = str(tmp_path / "m.db")
    source = tmp_path / "lines.jsonl"
    source.write_text(_lines(3000))
    result = shell(
        f"memctl record -s rec-out < {shlex.quote(str(source))} {redirect}; "
        'echo "rc=${PIPESTATUS[0]}" >&2',
        db,
    )
    assert f"rc={code}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr
    if code:
        assert "could not print the seqs" in result.stderr
    assert len(as_json(db, "show", "rec-out", "--json")) == 3000


def test_conflicting_options_are_bad_usage(db_url: str) -> None:
    """SESSION with --last, --json with --jsonl, recover --json with --yes: exit 2, not a guess."""
    ok(db_url, "record", "-s", "conf-1", "hello")
    for args in (
        ["show", "conf-1", "--last"],
        ["resume", "conf-1", "--last", "--peek"],
        ["show", "conf-1", "--json", "--jsonl"],
        ["list", "--json", "--jsonl"],
        ["search", "hello", "--json", "--jsonl"],
        ["fact", "list", "--json", "--jsonl"],
        ["recover", "--json", "--yes"],
    ):
        result = cli(db_url, *args)
        assert result.exit_code == 2, (args, result.output)


def test_missing_session_message_names_what_the_command_takes(tmp_path: Path) -> None:
    db = str(tmp_path / "m.db")
    env = {"MEMCTL_SESSION": ""}
    assert "pass SESSION, --last," in cli(db, "show", env=env).output
    ended = cli(db, "end", env=env)
    assert ended.exit_code == 2 and "--last" not in ended.output
    checkpoint = cli(db, "checkpoint", env=env)
    assert checkpoint.exit_code == 2 and "-s SESSION" in checkpoint.output


def test_empty_database_setting_is_refused(tmp_path: Path) -> None:
    """An empty --db or MEMCTL_DB never falls back to the user's own database."""
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_DATA_HOME": str(home / "data")}
    flag = run_memctl("--db", "", "record", "-s", "x", "hi", env=env)
    assert flag.returncode == 2 and b"--db is empty" in flag.stderr
    variable = run_memctl("record", "-s", "x", "hi", env={**env, "MEMCTL_DB": ""})
    assert variable.returncode == 2 and b"MEMCTL_DB is set but empty" in variable.stderr
    assert not (home / "data").exists()


def test_pipeline_printf_into_record(db_url: str) -> None:
    """`printf ... | memctl record -s S` stores each JSON line and prints one seq a line."""
    lines = [
        {"role": "user", "content": "hi", "id": "p-1"},
        {"role": "assistant", "content": "calling", "tool_call": CALL, "id": "p-2"},
        {"role": "tool", "content": "ok", "tool_call_id": "call_1", "id": "p-3"},
        {"type": "note", "payload": {"k": [1, 2]}, "id": "p-4"},
    ]
    data = "".join(json.dumps(item) + "\n" for item in lines)
    result = shell(f"printf '%s' {shlex.quote(data)} | memctl record -s pipe-1", db_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "2", "3", "4"]
    events = as_json(db_url, "show", "pipe-1", "--json")
    assert [e["id"] for e in events] == ["p-1", "p-2", "p-3", "p-4"]
    assert events[1]["tool_call"] == CALL and events[3]["payload"] == {"k": [1, 2]}


def test_pipeline_replay_is_idempotent(db_url: str) -> None:
    """Piping the same lines with ids twice stores them once and prints the same seqs."""
    data = "".join(
        json.dumps({"role": "user", "content": str(i), "id": f"r-{i}"}) + "\n" for i in range(5)
    )
    command = f"printf '%s' {shlex.quote(data)} | memctl record -s pipe-2"
    first, second = shell(command, db_url), shell(command, db_url)
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout
    assert len(as_json(db_url, "show", "pipe-2", "--json")) == 5


def test_stream_ignores_session_and_seq_keys(db_url: str) -> None:
    """`session` and `seq` in an input line are ignored; `ts` is kept."""
    ts = "2025-01-02T03:04:05.000006Z"
    data = json.dumps({"session": "elsewhere", "seq": 99, "ts": ts, "role": "user", "content": "x"})
    result = run_memctl("--db", db_url, "record", "-s", "pipe-3", input=data + "\n")
    assert result.returncode == 0, result.stderr
    (event,) = as_json(db_url, "show", "pipe-3", "--json")
    assert event["session"] == "pipe-3" and event["seq"] == 1 and event["ts"] == ts
    assert cli(db_url, "show", "elsewhere").exit_code == 3


def test_show_jsonl_feeds_record(db_url: str) -> None:
    """`memctl show --jsonl | memctl record -s COPY` copies a transcript."""
    conversation(db_url, "pipe-src")
    events = as_json(db_url, "show", "pipe-src", "--json")
    # Ids are unique across sessions, so drop them to make a copy.
    result = shell(
        "memctl show pipe-src --jsonl | python3 -c 'import json,sys\n"
        'for l in sys.stdin:\n d=json.loads(l); d.pop("id"); print(json.dumps(d))\''
        " | memctl record -s pipe-copy",
        db_url,
    )
    assert result.returncode == 0, result.stderr
    copied = as_json(db_url, "show", "pipe-copy", "--json")
    strip = ("session", "id")
    assert [{k: v for k, v in e.items() if k not in strip} for e in copied] == [
        {k: v for k, v in e.items() if k not in strip} for e in events
    ]


# -- list ----------------------------------------------------------------------


def test_list_json_newest_activity_first(db_url: str) -> None:
    """list --json prints Session objects, newest activity first."""
    for sid in ("ls-old", "ls-mid", "ls-new"):
        ok(db_url, "record", "-s", sid, f"in {sid}")
    ok(db_url, "record", "-s", "ls-old", "touched last")
    found = as_json(db_url, "list", "--json")
    assert [s["id"] for s in found] == ["ls-old", "ls-new", "ls-mid"]
    assert all(set(s) == SESSION_KEYS for s in found)
    assert found[0]["last_message"]["content"] == "touched last"
    assert found[0]["messages"] == 2


def test_list_limit(db_url: str) -> None:
    """--limit N prints at most N sessions, the newest."""
    for sid in ("lim-a", "lim-b", "lim-c"):
        ok(db_url, "record", "-s", sid, "x")
    assert [s["id"] for s in as_json(db_url, "list", "--json", "--limit", "2")] == [
        "lim-c",
        "lim-b",
    ]


def test_list_status_filter(db_url: str) -> None:
    """--status keeps only sessions with that derived status."""
    ok(db_url, "start", "--id", "st-active")
    ok(db_url, "start", "--id", "st-ended")
    ok(db_url, "end", "st-ended")
    ok(db_url, "start", "--id", "st-abandoned")
    ok(db_url, "end", "st-abandoned", "--abandon")
    ok(db_url, "start", "--id", "st-incomplete", "--owner-pid", str(dead_pid()))
    for status in ("active", "ended", "abandoned", "incomplete"):
        found = as_json(db_url, "list", "--json", "--status", status)
        assert [(s["id"], s["status"]) for s in found] == [(f"st-{status}", status)]


def test_list_since(db_url: str) -> None:
    """--since takes ISO dates and relative ages and filters by last activity."""
    ok(db_url, "record", "-s", "since-1", "x")
    assert [s["id"] for s in as_json(db_url, "list", "--json", "--since", "1h")] == ["since-1"]
    assert [s["id"] for s in as_json(db_url, "list", "--json", "--since", "2020-01-01")] == [
        "since-1"
    ]
    assert as_json(db_url, "list", "--json", "--since", "2999-01-01") == []


def test_list_since_garbage_is_bad_usage(tmp_path: Path) -> None:
    """An unreadable --since is exit 2 saying what WHEN accepts."""
    result = cli(str(tmp_path / "m.db"), "list", "--since", "last tuesday")
    assert result.exit_code == 2 and "2h" in result.stderr


def test_list_jsonl(db_url: str) -> None:
    """list --jsonl prints one Session object a line."""
    ok(db_url, "record", "-s", "jl-1", "a")
    ok(db_url, "record", "-s", "jl-2", "b")
    found = jsonl(ok(db_url, "list", "--jsonl"))
    assert [s["id"] for s in found] == ["jl-2", "jl-1"]
    assert all(set(s) == SESSION_KEYS for s in found)


def test_list_empty_json_is_an_empty_array(tmp_path: Path) -> None:
    """list --json on a new database prints [] and exits 0."""
    assert as_json(str(tmp_path / "m.db"), "list", "--json") == []


def test_list_piped_is_plain_tab_separated(db_url: str) -> None:
    """`memctl list` into a pipe prints one plain tab-separated line per session."""
    ok(db_url, "start", "--id", "plain-1", "--title", "my task")
    ok(db_url, "record", "-s", "plain-1", "last words")
    result = run_memctl("--db", db_url, "list")
    assert result.returncode == 0
    out = result.stdout.decode()
    assert "\x1b" not in out
    (row,) = out.splitlines()
    fields = row.split("\t")
    assert fields[0] == "plain-1" and fields[1] in ("active", "incomplete")
    assert "my task" in fields and "last words" in fields


def test_list_json_into_python(db_url: str) -> None:
    """`memctl list --json | python -c ...` parses as JSON in a real pipeline."""
    ok(db_url, "record", "-s", "py-1", "hello")
    program = "import json,sys; d=json.load(sys.stdin); print(d[0]['id'], d[0]['messages'])"
    result = shell(f"memctl list --json | python3 -c {shlex.quote(program)}", db_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["py-1", "1"]


# -- show ----------------------------------------------------------------------


def test_show_json_events(db_url: str) -> None:
    """show --json prints the session's events with the Event shape, in seq order."""
    conversation(db_url, "sh-1")
    events = as_json(db_url, "show", "sh-1", "--json")
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    assert all(set(e) == EVENT_KEYS and e["session"] == "sh-1" for e in events)
    assert all(e["ts"].endswith("Z") and len(e["ts"]) == 27 for e in events)


def test_show_jsonl(db_url: str) -> None:
    """show --jsonl prints one Event a line."""
    conversation(db_url, "sh-jl")
    assert [e["seq"] for e in jsonl(ok(db_url, "show", "sh-jl", "--jsonl"))] == [1, 2, 3, 4]


def test_show_tail(db_url: str) -> None:
    """--tail N prints only the last N events."""
    for i in range(6):
        ok(db_url, "record", "-s", "sh-tail", str(i))
    events = as_json(db_url, "show", "sh-tail", "--tail", "2", "--json")
    assert [(e["seq"], e["content"]) for e in events] == [(5, "4"), (6, "5")]


def test_show_plain_transcript(db_url: str) -> None:
    """show into a pipe prints a readable transcript with roles and tool calls."""
    conversation(db_url, "sh-plain")
    out = ok(db_url, "show", "sh-plain")
    assert "#1 user" in out and "Refactor utils.py" in out
    assert "#2 assistant -> read_file" in out and "utils.py" in out
    assert "#3 tool" in out and "call_1" in out
    assert "plan_updated" in out


def test_show_unique_prefix(db_url: str) -> None:
    """A unique prefix of at least 4 characters names the session."""
    ok(db_url, "record", "-s", "pfx-alpha-1", "a")
    ok(db_url, "record", "-s", "pfx-beta-1", "b")
    assert [e["content"] for e in as_json(db_url, "show", "pfx-al", "--json")] == ["a"]


def test_show_ambiguous_prefix_lists_candidates(db_url: str) -> None:
    """An ambiguous prefix is exit 2 naming every candidate."""
    ok(db_url, "record", "-s", "amb-alpha", "a")
    ok(db_url, "record", "-s", "amb-beta", "b")
    result = cli(db_url, "show", "amb-")
    assert result.exit_code == 2
    assert "amb-alpha" in result.stderr and "amb-beta" in result.stderr
    assert result.stdout == ""


def test_show_unknown_session_is_not_found(db_url: str) -> None:
    """An unknown session (or a prefix too short to search) is exit 3."""
    ok(db_url, "record", "-s", "known-1", "a")
    assert cli(db_url, "show", "nosuchsession").exit_code == 3
    assert cli(db_url, "show", "kno").exit_code == 3


def test_show_last(db_url: str) -> None:
    """--last picks the session with the most recent activity, not the newest created."""
    ok(db_url, "record", "-s", "last-a", "a")
    ok(db_url, "record", "-s", "last-b", "b")
    assert as_json(db_url, "show", "--last", "--json")[0]["session"] == "last-b"
    ok(db_url, "record", "-s", "last-a", "a2")
    assert as_json(db_url, "show", "--last", "--json")[0]["session"] == "last-a"


def test_show_uses_memctl_session(db_url: str) -> None:
    """MEMCTL_SESSION is the default session of show."""
    ok(db_url, "record", "-s", "sh-env", "from env")
    result = cli(db_url, "show", "--json", env={"MEMCTL_SESSION": "sh-env"})
    assert result.exit_code == 0
    assert json.loads(result.stdout)[0]["content"] == "from env"


def test_show_without_session_is_bad_usage(tmp_path: Path) -> None:
    """show with no SESSION, --last or MEMCTL_SESSION is exit 2."""
    assert cli(str(tmp_path / "m.db"), "show").exit_code == 2


def test_show_does_not_claim(db_url: str) -> None:
    """show is read-only: it neither raises the epoch nor changes the owner."""
    ok(db_url, "start", "--id", "sh-ro", "--owner-pid", "1")
    ok(db_url, "show", "sh-ro")
    assert epoch(db_url, "sh-ro") == 1
    assert session_of(db_url, "sh-ro")["owner"]["pid"] == 1


# -- resume --------------------------------------------------------------------


def test_resume_transcript(db_url: str) -> None:
    """resume prints a header and the messages (not other events) as a transcript."""
    ok(db_url, "start", "--id", "rs-t", "--title", "refactor")
    conversation(db_url, "rs-t")
    result = cli(db_url, "resume", "rs-t")
    assert result.exit_code == 0
    assert "Session rs-t" in result.stdout and "refactor" in result.stdout
    assert "Refactor utils.py" in result.stdout and "def f(): ..." in result.stdout
    assert "plan_updated" not in result.stdout
    assert "resumed rs-t" in result.stderr


def test_resume_json(db_url: str) -> None:
    """resume --format json prints {session, checkpoint, messages}, messages only."""
    conversation(db_url, "rs-json")
    doc = as_json(db_url, "resume", "rs-json", "--format", "json")
    assert set(doc) == {"session", "checkpoint", "messages"}
    assert set(doc["session"]) == SESSION_KEYS and doc["checkpoint"] is None
    assert [m["seq"] for m in doc["messages"]] == [1, 2, 3]
    assert all(set(m) == EVENT_KEYS and m["type"] == "message" for m in doc["messages"])


def test_resume_jsonl(db_url: str) -> None:
    """resume --format jsonl prints one message a line."""
    conversation(db_url, "rs-jl")
    messages = jsonl(ok(db_url, "resume", "rs-jl", "--format", "jsonl"))
    assert [(m["seq"], m["role"]) for m in messages] == [(1, "user"), (2, "assistant"), (3, "tool")]


def test_resume_openai(db_url: str) -> None:
    """resume --format openai prints a chat-completions messages array."""
    conversation(db_url, "rs-oai")
    messages = as_json(db_url, "resume", "rs-oai", "--format", "openai")
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    (call,) = messages[1]["tool_calls"]
    assert call["id"] == "call_1" and call["type"] == "function"
    assert call["function"]["name"] == "read_file"
    assert json.loads(call["function"]["arguments"]) == {"path": "utils.py"}
    assert messages[2]["tool_call_id"] == "call_1" and messages[2]["content"] == "def f(): ..."
    assert set(messages[0]) == {"role", "content"}


def test_resume_claims_and_raises_epoch(db_url: str) -> None:
    """Each resume claims the session and raises its epoch."""
    ok(db_url, "start", "--id", "rs-epoch")
    assert cli(db_url, "resume", "rs-epoch").exit_code == 0
    assert epoch(db_url, "rs-epoch") == 2
    result = cli(db_url, "resume", "rs-epoch")
    assert "epoch 3" in result.stderr and epoch(db_url, "rs-epoch") == 3


def test_resume_peek_does_not_claim(db_url: str) -> None:
    """--peek prints the session even when another process owns it, claiming nothing."""
    ok(db_url, "start", "--id", "rs-peek", "--owner-pid", "1")
    ok(db_url, "record", "-s", "rs-peek", "hello")
    doc = as_json(db_url, "resume", "rs-peek", "--peek", "--format", "json")
    assert [m["content"] for m in doc["messages"]] == ["hello"]
    assert epoch(db_url, "rs-peek") == 1
    assert session_of(db_url, "rs-peek")["owner"]["pid"] == 1


def test_resume_of_live_owned_session_is_a_conflict(db_url: str) -> None:
    """A session owned by another live process is exit 6 without --force, and not claimed."""
    ok(db_url, "start", "--id", "rs-owned", "--owner-pid", "1")
    result = cli(db_url, "resume", "rs-owned")
    assert result.exit_code == 6 and "--force" in result.stderr
    assert result.stdout == ""
    assert epoch(db_url, "rs-owned") == 1


def test_resume_force_takes_over(db_url: str) -> None:
    """--force claims a live-owned session, raising the epoch."""
    ok(db_url, "start", "--id", "rs-force", "--owner-pid", "1")
    assert cli(db_url, "resume", "rs-force", "--force").exit_code == 0
    assert epoch(db_url, "rs-force") == 2
    assert session_of(db_url, "rs-force")["owner"]["pid"] != 1


def test_forced_resume_fences_the_old_writer(db_url: str) -> None:
    """After a forced resume, a writer holding the old epoch gets exit 6 and writes nothing."""
    doc = as_json(db_url, "start", "--id", "rs-fence", "--owner-pid", "1", "--json")
    ok(db_url, "resume", "rs-fence", "--force")
    old = {"MEMCTL_EPOCH": str(doc["epoch"])}
    result = cli(db_url, "record", "-s", "rs-fence", "zombie write", env=old)
    assert result.exit_code == 6
    assert cli(db_url, "checkpoint", "-s", "rs-fence", env=old).exit_code == 6
    assert as_json(db_url, "show", "rs-fence", "--json") == []


def test_resume_incomplete_session(db_url: str) -> None:
    """A session whose owner died is resumed without --force and becomes active."""
    ok(db_url, "start", "--id", "rs-dead", "--owner-pid", str(dead_pid()))
    assert session_of(db_url, "rs-dead")["status"] == "incomplete"
    assert cli(db_url, "resume", "rs-dead").exit_code == 0
    assert session_of(db_url, "rs-dead")["status"] == "active"


def test_resume_since_checkpoint(db_url: str) -> None:
    """--since-checkpoint returns only messages after the latest checkpoint, with its state."""
    ok(db_url, "record", "-s", "rs-cp", "before 1")
    ok(db_url, "record", "-s", "rs-cp", "before 2")
    ok(db_url, "checkpoint", "-s", "rs-cp", "--state", '{"step": 2}')
    ok(db_url, "record", "-s", "rs-cp", "after")
    doc = as_json(db_url, "resume", "rs-cp", "--since-checkpoint", "--format", "json")
    assert [m["content"] for m in doc["messages"]] == ["after"]
    assert doc["checkpoint"]["state"] == {"step": 2} and doc["checkpoint"]["seq"] == 2
    full = as_json(db_url, "resume", "rs-cp", "--format", "json")
    assert len(full["messages"]) == 3


def test_resume_since_checkpoint_keeps_the_call_of_a_result(db_url: str) -> None:
    """A checkpoint between a tool call and its result: the openai list still starts at the call."""
    ok(db_url, "record", "-s", "rs-call", "question")
    ok(
        db_url,
        "record",
        "-s",
        "rs-call",
        "--role",
        "assistant",
        "--tool-call",
        json.dumps(CALL),
        "x",
    )
    ok(db_url, "checkpoint", "-s", "rs-call", "--state", '{"step": 1}')
    ok(db_url, "record", "-s", "rs-call", "--role", "tool", "--tool-call-id", "call_1", "result")
    ok(db_url, "record", "-s", "rs-call", "--role", "assistant", "answer")
    messages = as_json(
        db_url, "resume", "rs-call", "--since-checkpoint", "--format", "openai", "--peek"
    )
    assert [m["role"] for m in messages] == ["assistant", "tool", "assistant"]
    assert messages[0]["tool_calls"][0]["id"] == messages[1]["tool_call_id"] == "call_1"


def test_resume_last(db_url: str) -> None:
    """resume --last resumes the most recently active session."""
    ok(db_url, "record", "-s", "rs-l1", "one")
    ok(db_url, "record", "-s", "rs-l2", "two")
    assert as_json(db_url, "resume", "--last", "--format", "json")["session"]["id"] == "rs-l2"


def test_resume_unknown_session_is_not_found(db_url: str) -> None:
    """resume of an unknown session is exit 3."""
    assert cli(db_url, "resume", "nosuchsession").exit_code == 3


# -- checkpoint ------------------------------------------------------------------


def test_checkpoint_state_json(db_url: str) -> None:
    """checkpoint --state JSON --note prints the seq; resume returns the state."""
    ok(db_url, "record", "-s", "cp-1", "a")
    ok(db_url, "record", "-s", "cp-1", "b")
    assert (
        ok(
            db_url, "checkpoint", "-s", "cp-1", "--state", '{"todo": ["x"]}', "--note", "half"
        ).strip()
        == "2"
    )
    cp = as_json(db_url, "resume", "cp-1", "--format", "json")["checkpoint"]
    assert set(cp) == CHECKPOINT_KEYS
    assert cp["state"] == {"todo": ["x"]} and cp["note"] == "half" and cp["session"] == "cp-1"
    assert session_of(db_url, "cp-1")["checkpoint"]["seq"] == 2


def test_checkpoint_state_from_file(db_url: str, tmp_path: Path) -> None:
    """--state @FILE reads the state from a file."""
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps({"from": "file", "n": [1, 2.5]}))
    ok(db_url, "record", "-s", "cp-file", "a")
    ok(db_url, "checkpoint", "-s", "cp-file", "--state", f"@{state_file}")
    cp = as_json(db_url, "resume", "cp-file", "--peek", "--format", "json")["checkpoint"]
    assert cp["state"] == {"from": "file", "n": [1, 2.5]}


def test_checkpoint_state_from_stdin(db_url: str) -> None:
    """--state - reads the state from stdin."""
    ok(db_url, "record", "-s", "cp-stdin", "a")
    ok(db_url, "checkpoint", "-s", "cp-stdin", "--state", "-", input='["from", "stdin"]')
    cp = as_json(db_url, "resume", "cp-stdin", "--peek", "--format", "json")["checkpoint"]
    assert cp["state"] == ["from", "stdin"]


@pytest.mark.parametrize("state", ["{bad json", '{"x": NaN}', "@/nonexistent/state.json"])
def test_checkpoint_bad_state_writes_nothing(tmp_path: Path, state: str) -> None:
    """A bad --state is exit 2 and writes no checkpoint."""
    db = str(tmp_path / "m.db")
    ok(db, "record", "-s", "cp-bad", "a")
    result = cli(db, "checkpoint", "-s", "cp-bad", "--state", state)
    assert result.exit_code == 2, result.output
    assert session_of(db, "cp-bad")["checkpoint"] is None


def test_checkpoint_empty_state_says_so(tmp_path: Path) -> None:
    """--state - with nothing on stdin is exit 2 saying it was empty, not "not valid JSON"."""
    db = str(tmp_path / "m.db")
    ok(db, "record", "-s", "cp-empty", "a")
    done = run_memctl("--db", db, "checkpoint", "-s", "cp-empty", "--state", "-", input=b"")
    assert done.returncode == 2 and b"--state is empty (stdin held nothing)" in done.stderr
    assert session_of(db, "cp-empty")["checkpoint"] is None


def test_checkpoint_unknown_session_is_not_found(db_url: str) -> None:
    """checkpoint into an unknown session is exit 3."""
    assert cli(db_url, "checkpoint", "-s", "nosuchsession").exit_code == 3


# -- end -----------------------------------------------------------------------


def test_end_marks_session_ended(db_url: str) -> None:
    """end marks the session ended with an ended_at time."""
    ok(db_url, "start", "--id", "end-1")
    result = cli(db_url, "end", "end-1")
    assert result.exit_code == 0 and "ended" in result.stderr
    info = session_of(db_url, "end-1")
    assert info["status"] == "ended" and info["ended_at"] is not None


def test_end_abandon(db_url: str) -> None:
    """end --abandon marks the session abandoned."""
    ok(db_url, "start", "--id", "end-2")
    ok(db_url, "end", "end-2", "--abandon")
    assert session_of(db_url, "end-2")["status"] == "abandoned"


def test_end_uses_memctl_session(db_url: str) -> None:
    """MEMCTL_SESSION is the default session of end."""
    ok(db_url, "start", "--id", "end-env")
    assert cli(db_url, "end", env={"MEMCTL_SESSION": "end-env"}).exit_code == 0
    assert session_of(db_url, "end-env")["status"] == "ended"


def test_end_unknown_session_is_not_found(db_url: str) -> None:
    """end of an unknown session is exit 3."""
    assert cli(db_url, "end", "nosuchsession").exit_code == 3


# -- db, version, global --------------------------------------------------------


def test_db_path_prints_the_file(tmp_path: Path) -> None:
    """db path prints the absolute database path from --db."""
    db = tmp_path / "sub" / "m.db"
    assert ok(str(db), "db", "path").strip() == str(db.resolve())


def test_db_path_defaults_to_memctl_db(tmp_path: Path) -> None:
    """Without --db, MEMCTL_DB chooses the database."""
    chosen = tmp_path / "env" / "chosen.db"
    result = runner.invoke(app, ["db", "path"], env={"MEMCTL_DB": str(chosen)})
    assert result.exit_code == 0 and result.stdout.strip() == str(chosen.resolve())


def test_sqlite_url_is_accepted(tmp_path: Path) -> None:
    """--db sqlite:////abs/path opens that file."""
    db = tmp_path / "url.db"
    ok(f"sqlite:///{db}", "record", "-s", "url-1", "x")
    assert as_json(str(db), "show", "url-1", "--json")[0]["content"] == "x"


def test_db_info_json(db_url: str) -> None:
    """db info --json reports backend, schema version and counts."""
    conversation(db_url, "info-1")
    info = as_json(db_url, "db", "info", "--json")
    assert info["backend"] in ("sqlite", "postgresql", "postgres")
    assert info["sessions"] == 1 and info["events"] == 4
    assert isinstance(info["schema_version"], int) and info["schema_version"] >= 1


def test_db_check_healthy(db_url: str) -> None:
    """db check prints ok and exits 0 on a database memctl wrote."""
    conversation(db_url, "check-1")
    assert ok(db_url, "db", "check").strip() == "ok"


def test_version() -> None:
    """--version prints memctl's version."""
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"memctl {memctl.__version__}"


def test_version_of_installed_entry_point() -> None:
    """The installed `memctl --version` runs and agrees with the package."""
    result = run_memctl("--version")
    assert result.returncode == 0
    assert result.stdout.decode().strip() == f"memctl {memctl.__version__}"


def test_unknown_option_is_usage_error(tmp_path: Path) -> None:
    """An unknown option is exit 2."""
    assert runner.invoke(app, ["--db", str(tmp_path / "m.db"), "list", "--bogus"]).exit_code == 2


def test_unsupported_url_scheme_is_bad_usage() -> None:
    """--db with an unknown scheme is exit 2, naming the accepted forms."""
    result = runner.invoke(app, ["--db", "mysql://x/y", "list"])
    assert result.exit_code == 2 and "postgresql://" in result.stderr


# -- exit codes and tracebacks, through the real entry point ---------------------

USER_ERRORS: list[tuple[list[str], int]] = [
    (["show", "nosuchsession"], 3),
    (["show", "ambi"], 2),
    (["resume", "nosuchsession"], 3),
    (["end", "nosuchsession"], 3),
    (["checkpoint", "-s", "ambi-1", "--state", "{oops"], 2),
    (["checkpoint", "-s", "ambi-1", "--state", "@/nonexistent"], 2),
    (["record", "hello"], 2),
    (["record", "-s", "ambi-1", "--tool-call", "[]", "x"], 2),
    (["record", "-s", "ambi-1", "--payload", "nope", "x"], 2),
    (["record", "-s", "bad\x1bid", "x"], 2),
    (["start", "--id", "ambi-1"], 6),
    (["start", "--meta", "x"], 2),
    (["list", "--since", "whenever"], 2),
    (["list", "--status", "sleeping"], 2),
    (["list", "--limit", "0"], 2),
    (["show", "ambi-1", "--tail", "-1"], 2),
    (["resume", "ambi-1", "--format", "xml"], 2),
    (["no-such-command"], 2),
    (["record", "-s", "ambi-1", "--payload", '{"n": 1' + "0" * 5000 + "}", "x"], 2),
    (["list", "--since", "0001-01-01T00:00:00+14:00"], 2),
    (["list", "--since", "99999999999d"], 2),
    (["show", "ambi-1", "--tail", "99999999999999999999"], 2),
    (["start", "--owner-pid", "99999999999999999999"], 2),
]


@pytest.fixture(scope="module")
def errors_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One database for the user-error cases, none of which may change it."""
    db = str(tmp_path_factory.mktemp("errors") / "m.db")
    for sid in ("ambi-1", "ambi-2"):
        ok(db, "start", "--id", sid)
    return db


@pytest.mark.parametrize(
    ("args", "code"), USER_ERRORS, ids=[" ".join(a)[:60] for a, _ in USER_ERRORS]
)
def test_user_errors_exit_codes_without_traceback(
    errors_db: str, args: list[str], code: int
) -> None:
    """Each user error exits with PRODUCT.md's code and a message, never a traceback."""
    result = run_memctl("--db", errors_db, *args, input=b"")
    err = result.stderr.decode()
    assert result.returncode == code, err
    assert "Traceback" not in err and err.strip()
    assert "unexpected error" not in err
    assert [s["id"] for s in as_json(errors_db, "list", "--json")] == ["ambi-2", "ambi-1"]


def test_postgres_url_without_the_driver_says_what_to_install(tmp_path: Path) -> None:
    """Without psycopg (memctl installed without its postgres extra) a PostgreSQL URL is exit 5."""
    script = (
        "import sys; sys.modules['psycopg'] = None\n"  # as if psycopg were not installed
        "from memctl.cli import main\n"
        "sys.argv = ['memctl', '--db', 'postgresql://u:hunter2@127.0.0.1:1/x', 'list']\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert done.returncode == 5, done.stderr
    assert "pip install 'memctl[postgres]'" in done.stderr
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr


def test_fact_update_keeps_tags_unless_given(db_url: str) -> None:
    """The README's fact example: an update without --tag keeps the tags; --tag replaces them."""
    ok(db_url, "fact", "add", "--key", "billing.retries", "--tag", "billing", "retries 3 times")
    ok(db_url, "fact", "add", "--key", "billing.retries", "retries 5 times")
    listed = as_json(db_url, "fact", "list", "--tag", "billing", "--json")
    assert [(f["key"], f["text"], f["tags"]) for f in listed] == [
        ("billing.retries", "retries 5 times", ["billing"])
    ]
    ok(db_url, "fact", "add", "--key", "billing.retries", "--tag", "ops", "retries 6 times")
    assert as_json(db_url, "fact", "list", "--tag", "billing", "--json") == []
    assert cli(db_url, "fact", "add", "--tag", "", "no empty tags").exit_code == 2


def test_small_usage_errors_are_exit_2_with_a_message(tmp_path: Path) -> None:
    """-h works; a bad --role, MEMCTL_OWNER_PID or MEMCTL_EPOCH and a directory as --db: exit 2."""
    db = str(tmp_path / "m.db")
    assert cli(db, "-h").exit_code == 0
    assert "Usage" in cli(db, "show", "-h").output
    assert cli(db, "search", "hello", "--role", "bogus").exit_code == 2
    for name, value in [
        ("MEMCTL_OWNER_PID", "abc"),
        ("MEMCTL_OWNER_PID", "9" * 20),  # was an OverflowError in SQLite, exit 1
        ("MEMCTL_EPOCH", "9" * 23),
        ("MEMCTL_EPOCH", "0"),
    ]:
        bad = cli(db, "record", "-s", "x", "hi", env={name: value})
        assert bad.exit_code == 2 and name in bad.output, (name, value, bad.output)
    directory = run_memctl("--db", str(tmp_path), "list")
    assert directory.returncode == 2 and b"is a directory" in directory.stderr


def test_db_info_plain_prints_nested_figures_as_lines(tmp_path: Path) -> None:
    db = str(tmp_path / "m.db")
    ok(db, "record", "-s", "info-1", "hello")
    lines = ok(db, "db", "info").splitlines()
    assert any(line.startswith("bytes.db: ") for line in lines)
    assert not any("{" in line for line in lines)


def test_record_dash_refuses_more_than_the_limit_without_reading_it_all(tmp_path: Path) -> None:
    db = str(tmp_path / "m.db")
    env = {"MEMCTL_MAX_EVENT_BYTES": "1000"}
    big = run_memctl("--db", db, "record", "-s", "big", "-", input="x" * 5000, env=env)
    assert big.returncode == 2 and b"larger than the event limit" in big.stderr
    fits = run_memctl("--db", db, "record", "-s", "big", "-", input="x" * 900, env=env)
    assert fits.returncode == 0, fits.stderr


def test_db_copy_to_the_same_database_is_refused(tmp_path: Path) -> None:
    db = str(tmp_path / "m.db")
    ok(db, "record", "-s", "copy-self", "hello")
    result = cli(db, "db", "copy", "--to", str(tmp_path / "." / "m.db"))
    assert result.exit_code == 2 and "being copied" in result.output


def test_fact_keys_and_tags_never_drive_the_terminal(tmp_path: Path) -> None:
    """A fact's key and tags are stored text: escaped in list, show and search output."""
    db = str(tmp_path / "m.db")
    evil = "A\x1b[2J\x1b]0;PWN\x07\x9b31m\u202eRTL\x08"
    with memctl.open(db) as mem:
        mem.add_fact("billing fact", key="k" + evil, tags=[evil])
    for args in (["fact", "list"], ["fact", "show", "k" + evil], ["fact", "search", "billing"]):
        out = ok(db, *args)
        assert not any(char in out for char in "\x1b\x07\x9b\u202e\x08"), (args, out)
        assert "\\x1b" in out


def test_a_damaged_sqlite_file_is_exit_5(tmp_path: Path) -> None:
    """A corrupt page is 'storage unavailable' (5) with SQLite's words, never a crash (1)."""
    db = tmp_path / "m.db"
    for n in range(20):
        ok(str(db), "record", "-s", f"s{n}", f"text {n}")
    with db.open("r+b") as handle:
        handle.seek(3 * 4096)  # the sessions table's root page
        handle.write(b"\xff" * 4096)
    for args in (["list"], ["show", "s1"], ["db", "check"]):
        result = run_memctl("--db", str(db), *args)
        assert result.returncode == 5, (args, result.stderr)
        assert b"malformed" in result.stderr and b"unexpected" not in result.stderr


def test_peek_openai_answers_a_crashed_call_in_the_output_only(db_url: str) -> None:
    """--peek --format openai on an incomplete session closes its open call; nothing is stored."""
    dead = str(dead_pid())
    ok(db_url, "record", "-s", "pk-1", "--owner-pid", dead, "question")
    call = ["--role", "assistant", "--tool-call", json.dumps(CALL), "--owner-pid", dead, "x"]
    ok(db_url, "record", "-s", "pk-1", *call)
    assert session_of(db_url, "pk-1")["status"] == "incomplete"
    messages = as_json(db_url, "resume", "pk-1", "--peek", "--format", "openai")
    assert messages[-1]["role"] == "tool" and messages[-1]["tool_call_id"] == "call_1"
    assert str(messages[-1]["content"]).startswith("[memctl] Interrupted")
    assert len(as_json(db_url, "show", "pk-1", "--json")) == 2
    # A live owner's open call is still running: left open.
    live = str(os.getpid())
    ok(db_url, "record", "-s", "pk-2", "--owner-pid", live, "question")
    ok(db_url, "record", "-s", "pk-2", *call[:-3], "--owner-pid", live, "x")
    assert as_json(db_url, "resume", "pk-2", "--peek", "--format", "openai")[-1]["role"] == (
        "assistant"
    )


@pytest.mark.parametrize(
    "args",
    [["record", "-s", "closed", "hi"], ["start", "--id", "closed"], ["list"], ["resume", "--last"]],
)
def test_closed_stdout_is_refused_before_anything_happens(tmp_path: Path, args: list[str]) -> None:
    """`memctl ... >&-` is exit 2 with a message, and stores or claims nothing."""
    db = str(tmp_path / "m.db")
    ok(db, "record", "-s", "other", "--owner-pid", str(dead_pid()), "before")
    command = " ".join(shlex.quote(a) for a in [MEMCTL, "--db", db, *args]) + " >&-"
    done = subprocess.run(["sh", "-c", command], capture_output=True, check=False)
    assert done.returncode == 2, done.stderr
    assert b"stdout is closed" in done.stderr and b"Traceback" not in done.stderr
    assert [s["id"] for s in as_json(db, "list", "--json")] == ["other"]
    assert session_of(db, "other")["status"] == "incomplete"  # not claimed


def test_closed_stdin_reads_as_no_input(tmp_path: Path) -> None:
    """`memctl record TEXT <&-` records TEXT; commands that ask nothing work."""
    db = str(tmp_path / "m.db")
    command = " ".join(shlex.quote(a) for a in [MEMCTL, "--db", db, "record", "-s", "in", "hi"])
    done = subprocess.run(["sh", "-c", command + " <&-"], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert [e["content"] for e in as_json(db, "show", "in", "--json")] == ["hi"]


def test_a_future_time_does_not_pin_a_session_first(db_url: str) -> None:
    """An event dated in the future counts as activity now, not then."""
    line = json.dumps({"role": "user", "content": "from the future", "ts": "9999-01-01T00:00:00Z"})
    assert run_memctl("--db", db_url, "record", "-s", "ts-future", input=line).returncode == 0
    ok(db_url, "record", "-s", "ts-later", "recorded after it")
    assert as_json(db_url, "list", "--json")[0]["id"] == "ts-later"
    assert as_json(db_url, "resume", "--last", "--peek", "--format", "json")["session"]["id"] == (
        "ts-later"
    )
    # The event keeps the time it was given.
    assert as_json(db_url, "show", "ts-future", "--json")[0]["ts"] == "9999-01-01T00:00:00.000000Z"


def test_raw_stdin_that_is_not_utf8_is_kept_and_said(db_url: str) -> None:
    """`record -` of bytes that are not UTF-8 stores the text with U+FFFD, and says so."""
    done = run_memctl("--db", db_url, "record", "-s", "raw-bin", "--role", "user", "-",
                      input=b"ok \xff\xfe then more")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert b"not valid UTF-8 (from byte 3)" in done.stderr and b"surrogate" not in done.stderr
    assert as_json(db_url, "show", "raw-bin", "--json")[0]["content"] == "ok \ufffd\ufffd then more"


def test_fact_source_must_exist(db_url: str) -> None:
    """fact add --seq needs a session that has that event."""
    ok(db_url, "record", "-s", "fa-src", "one")
    ok(db_url, "record", "-s", "fa-src", "two")
    fact = as_json(db_url, "fact", "add", "-s", "fa-src", "--seq", "2", "from two", "--json")
    assert (fact["session"], fact["seq"]) == ("fa-src", 2)
    missing = cli(db_url, "fact", "add", "-s", "fa-src", "--seq", "3", "from nowhere")
    assert missing.exit_code == 3 and "has no event 3 (it has 2)" in missing.output
    alone = cli(db_url, "fact", "add", "--seq", "1", "no session")
    assert alone.exit_code == 2 and "give the session" in alone.output
    with memctl.open(db_url) as mem:
        with pytest.raises(memctl.SessionNotFound):
            mem.add_fact("x", session_id="fa-nosuch", seq=1)
        # Without a seq, a session not recorded yet is fine (the seed's code does that),
        # but it must be a session id.
        mem.add_fact("y", session_id="fa-later")
        for bad in ("a\x00b", "\x1b[31mred", "x" * 5000):
            with pytest.raises(memctl.BadInput):
                mem.add_fact("z", session_id=bad)
        assert sorted(f.text for f in mem.store.facts()) == ["from two", "y"]


def test_show_around_a_seq(db_url: str) -> None:
    """show --around N -C K prints events N-K..N+K; a seq the session lacks is exit 3."""
    for word in ("a", "b", "c", "d", "e"):
        ok(db_url, "record", "-s", "sh-around", word)
    shown = as_json(db_url, "show", "sh-around", "--around", "3", "-C", "1", "--json")
    assert [e["content"] for e in shown] == ["b", "c", "d"]
    edge = as_json(db_url, "show", "sh-around", "--around", "5", "-C", "2", "--json")
    assert [e["seq"] for e in edge] == [3, 4, 5]
    missing = cli(db_url, "show", "sh-around", "--around", "6")
    assert missing.exit_code == 3 and "has no event 6 (it has 5)" in missing.output


def test_a_message_without_text_is_refused(db_url: str) -> None:
    """Event options with no TEXT (and nothing piped) are exit 2 for a message; "" is allowed."""
    for args in (["--role", "user"], ["--role", "tool", "--tool-call-id", "c1"]):
        result = run_memctl("--db", db_url, "record", "-s", "no-text", *args, input=b"")
        assert result.returncode == 2 and b"needs TEXT" in result.stderr
    assert cli(db_url, "show", "no-text").exit_code == 3
    ok(db_url, "record", "-s", "no-text", "--role", "user", "")  # empty on purpose
    call = json.dumps({"id": "c1", "name": "ls"})
    for args in (["--role", "assistant", "--tool-call", call], ["--type", "heartbeat"]):
        # A call needs no text; an event that is not a message is a marker.
        done = run_memctl("--db", db_url, "record", "-s", "no-text", *args, input=b"")
        assert done.returncode == 0, done.stderr
    assert len(as_json(db_url, "show", "no-text", "--json")) == 3


def test_commands_that_print_nothing_run_with_stdout_closed(tmp_path: Path) -> None:
    """end and run print nothing on stdout, so `>&-` is fine; run's child gets /dev/null."""
    db = str(tmp_path / "m.db")
    ok(db, "record", "-s", "closed-end", "hi")
    base = " ".join(shlex.quote(a) for a in [MEMCTL, "--db", db])
    for command in ("end closed-end", "run -- sh -c 'echo from the child'"):
        done = subprocess.run(
            ["sh", "-c", f"{base} {command} >&-"], capture_output=True, check=False
        )
        assert done.returncode == 0, done.stderr
    assert session_of(db, "closed-end")["status"] == "ended"
    assert [s["status"] for s in as_json(db, "list", "--json")] == ["ended", "ended"]
