"""Bad input through the real `memctl record` reading stdin: reported, skipped, nothing lost."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import memctl
from memctl.cli import app
from memctl.errors import BadInput
from memctl.inputs import DEFAULT_MAX_EVENT_BYTES, event_from_line, parse_json
from memctl.ledger import compact_json
from memctl.stream import STORED_GROWTH
from tests.conftest import MEMCTL, run_memctl

REPLACEMENT = "\ufffd"


def line(**fields: Any) -> bytes:
    return json.dumps(fields).encode() + b"\n"


def stored(db: str, session_id: str) -> list[dict[str, Any]]:
    """The session's events in their JSON shape, read through another connection."""
    with memctl.open(db) as mem:
        return [event.to_dict() for event in mem.events(session_id)]


def record_text(db: str, session_id: str, text: str) -> None:
    """Store one message in-process (setup, where no separate process is needed)."""
    result = CliRunner().invoke(app, ["--db", db, "record", "-s", session_id, text])
    assert result.exit_code == 0, result.output


def contents(db: str, session_id: str) -> list[str | None]:
    return [event["content"] for event in stored(db, session_id)]


def deep(levels: int) -> str:
    """A payload object nested ``levels`` objects deep."""
    return '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)


# Each bad line, and a fragment of what stderr must say about it.
BAD_LINES: dict[str, tuple[bytes, str]] = {
    "malformed_json": (b'{"role": "user", "content": "unterminated\n', "not valid JSON"),
    "not_an_object": (b'["role", "user"]\n', "JSON object"),
    "unknown_key": (b'{"role": "user", "content": "x", "colour": "red"}\n', "unknown key"),
    "wrong_type_content": (b'{"role": "user", "content": 42}\n', "must be a string"),
    "wrong_type_payload": (b'{"type": "t", "payload": [1, 2]}\n', "must be a JSON object"),
    "bad_role": (b'{"role": "robot", "content": "x"}\n', "role"),
    "no_role_or_type": (b'{"content": "x"}\n', "role"),
    "invalid_utf8": (b'{"role": "user", "content": "caf\xe9"}\n', "UTF-8"),
    "utf8_encoded_surrogate": (b'{"role": "user", "content": "\xed\xa0\x80"}\n', "UTF-8"),
    "nan": (b'{"type": "t", "payload": {"x": NaN}}\n', "NaN"),
    "infinity": (b'{"type": "t", "payload": {"x": -Infinity}}\n', "Infinity"),
    "too_deep_payload": (
        b'{"type": "t", "payload": ' + deep(70).encode() + b"}\n",
        "nested deeper than 64",
    ),
    "too_deep_for_the_parser": (
        b'{"type": "t", "payload": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
        "nested deeper than 64",
    ),
    "bad_timestamp": (b'{"role": "user", "content": "x", "ts": "yesterday"}\n', "ISO 8601"),
    "timestamp_out_of_range": (
        b'{"role": "user", "content": "x", "ts": "0001-01-01T00:00:00+14:00"}\n',
        "out of range",
    ),
    "integer_too_long": (
        b'{"type": "t", "payload": {"n": 1' + b"0" * 5000 + b"}}\n",
        "too many digits",
    ),
    "number_overflows_to_infinity": (b'{"type": "t", "payload": {"n": 1e999}}\n', "Infinity"),
    "two_values": (b'{"role": "user", "content": "x"} {"a": 1}\n', "Extra data at column 34"),
    "non_json_space_after": (b'{"role": "user", "content": "x"}\xc2\xa0\n', "Extra data"),
}


@pytest.mark.parametrize(
    "text", ['{"a": 1}', ' {"a": 1}', '{"a": 1} ', '\t{"a": 1}\r', '\n {"a": 1}\n\t ']
)
def test_json_whitespace_around_a_value_is_fine(text: str) -> None:
    """parse_json's shortcut for a bare value reads the same as json.loads around whitespace."""
    assert parse_json(text) == parse_json(text.encode()) == json.loads(text)


@pytest.mark.parametrize("text", ['{"a": 1}x', '{"a": 1} 2', '{"a": 1}\x0b', "{", " ", ""])
def test_json_errors_say_what_json_loads_says(text: str) -> None:
    """The shortcut's errors are the full decoder's: same message, same column."""
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    with pytest.raises(BadInput) as ours:
        parse_json(text)
    assert (
        str(ours.value)
        == f"input is not valid JSON: {theirs.value.msg} at column {theirs.value.colno}"
    )


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_line_is_reported_and_good_lines_kept(tmp_path: Path, case: str) -> None:
    """A bad line is reported by number; lines before and after it, and older data, survive."""
    db = str(tmp_path / "in.db")
    sid = f"bad-{case}"
    record_text(db, sid, "stored earlier")
    before = stored(db, sid)
    bad, message = BAD_LINES[case]
    data = line(role="user", content="good before") + bad + line(role="user", content="good after")
    result = run_memctl("--db", db, "record", "-s", sid, input=data)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert "Traceback" not in err
    assert "line 2: " in err and message in err
    assert "line 1:" not in err and "line 3:" not in err
    events = stored(db, sid)
    assert events[0] == before[0]
    assert [e["content"] for e in events] == ["stored earlier", "good before", "good after"]
    assert [e["seq"] for e in events] == [1, 2, 3]


def test_every_bad_line_is_reported_by_number(tmp_path: Path) -> None:
    """Several bad lines in one stream are each reported with their own line number."""
    db = str(tmp_path / "in.db")
    data = b"".join(
        [
            line(role="user", content="1"),
            b"{oops\n",
            line(role="user", content="3"),
            b'{"role": "user", "content": "4", "extra": true}\n',
            b"\n",  # a blank line is skipped silently but still counted
            b'{"type": "t", "payload": {"x": NaN}}\n',
            line(role="user", content="7"),
        ]
    )
    result = run_memctl("--db", db, "record", "-s", "many-bad", input=data)
    err = result.stderr.decode()
    assert result.returncode == 2
    reported = [int(n) for n in re.findall(r"^memctl: line (\d+): ", err, re.MULTILINE)]
    assert reported == [2, 4, 6]
    assert contents(db, "many-bad") == ["1", "3", "7"]


def test_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    """The final line counts even when the input does not end with a newline."""
    db = str(tmp_path / "in.db")
    data = line(role="user", content="a") + line(role="user", content="b").rstrip(b"\n")
    result = run_memctl("--db", db, "record", "-s", "no-eol", input=data)
    assert result.returncode == 0, result.stderr
    assert contents(db, "no-eol") == ["a", "b"]


def test_byte_order_mark_on_first_line_is_ignored(tmp_path: Path) -> None:
    """A UTF-8 byte order mark before the first line (Windows tools) is not an error."""
    db = str(tmp_path / "in.db")
    data = b"\xef\xbb\xbf" + line(role="user", content="a") + line(role="user", content="b")
    result = run_memctl("--db", db, "record", "-s", "bom-1", input=data)
    assert result.returncode == 0, result.stderr
    assert contents(db, "bom-1") == ["a", "b"]


def test_nul_is_replaced_and_reported(tmp_path: Path) -> None:
    """NUL (\\u0000) is stored as U+FFFD, and stderr says how many were replaced."""
    db = str(tmp_path / "in.db")
    data = b'{"role": "user", "content": "a\\u0000b\\u0000c"}\n'
    result = run_memctl("--db", db, "record", "-s", "nul-1", input=data)
    assert result.returncode == 0, result.stderr
    assert "replaced 2" in result.stderr.decode()
    assert contents(db, "nul-1") == [f"a{REPLACEMENT}b{REPLACEMENT}c"]


def test_lone_surrogates_are_replaced_and_reported(tmp_path: Path) -> None:
    """Lone surrogate escapes become U+FFFD in content and payload, and stderr says so."""
    db = str(tmp_path / "in.db")
    data = (
        b'{"role": "user", "content": "x\\ud800y\\udfffz"}\n'
        b'{"type": "t", "payload": {"k\\udc00": "v\\ud834"}}\n'
    )
    result = run_memctl("--db", db, "record", "-s", "sur-1", input=data)
    assert result.returncode == 0, result.stderr
    assert "replaced 4" in result.stderr.decode()
    events = stored(db, "sur-1")
    assert events[0]["content"] == f"x{REPLACEMENT}y{REPLACEMENT}z"
    assert events[1]["payload"] == {f"k{REPLACEMENT}": f"v{REPLACEMENT}"}


def test_surrogate_pairs_are_not_replaced(tmp_path: Path) -> None:
    """A valid surrogate pair escape is one character (an emoji), kept as is."""
    db = str(tmp_path / "in.db")
    data = b'{"role": "user", "content": "smile \\ud83d\\ude42"}\n'
    result = run_memctl("--db", db, "record", "-s", "pair-1", input=data)
    assert result.returncode == 0 and result.stderr == b""
    assert contents(db, "pair-1") == ["smile \U0001f642"]


def test_nul_in_text_from_stdin_is_replaced(tmp_path: Path) -> None:
    """`record -` with raw NUL and invalid UTF-8 bytes stores U+FFFD and says so."""
    db = str(tmp_path / "in.db")
    result = run_memctl("--db", db, "record", "-s", "raw-1", "-", input=b"a\x00b\xffc")
    assert result.returncode == 0, result.stderr
    assert "not valid UTF-8 (from byte 3)" in result.stderr.decode()
    assert "replaced 1 NUL" in result.stderr.decode()
    assert contents(db, "raw-1") == [f"a{REPLACEMENT}b{REPLACEMENT}c"]


def test_nesting_within_the_limit_is_stored(tmp_path: Path) -> None:
    """A payload nested a reasonable depth is accepted and round-trips."""
    db = str(tmp_path / "in.db")
    payload = json.loads(deep(32))
    result = run_memctl(
        "--db", db, "record", "-s", "deep-ok", input=line(type="t", payload=payload)
    )
    assert result.returncode == 0, result.stderr
    assert stored(db, "deep-ok")[0]["payload"] == payload


def test_event_over_one_mib_is_refused(tmp_path: Path) -> None:
    """By default an event over 1 MiB is refused; one just under is stored."""
    db = str(tmp_path / "in.db")
    small = "s" * (DEFAULT_MAX_EVENT_BYTES - 1000)
    big = "b" * (DEFAULT_MAX_EVENT_BYTES + 1000)
    data = line(role="user", content=small) + line(role="user", content=big) + line(role="user")
    result = run_memctl("--db", db, "record", "-s", "mib-1", input=data)
    assert result.returncode == 2
    assert "line 2: " in result.stderr.decode()
    assert [len(c or "") for c in contents(db, "mib-1")] == [len(small), 0]


def test_size_limit_is_configurable(tmp_path: Path) -> None:
    """MEMCTL_MAX_EVENT_BYTES lowers the limit for streamed and single events."""
    db = str(tmp_path / "in.db")
    env = {"MEMCTL_MAX_EVENT_BYTES": "1000"}
    data = line(role="user", content="x" * 500) + line(role="user", content="y" * 2000)
    result = run_memctl("--db", db, "record", "-s", "lim-1", input=data, env=env)
    assert result.returncode == 2 and "line 2: " in result.stderr.decode()
    single = run_memctl("--db", db, "record", "-s", "lim-1", "z" * 2000, env=env)
    assert single.returncode == 2
    assert contents(db, "lim-1") == ["x" * 500]


def test_payload_counts_towards_the_size_limit(tmp_path: Path) -> None:
    """A small content with a big payload is still over the limit."""
    db = str(tmp_path / "in.db")
    env = {"MEMCTL_MAX_EVENT_BYTES": "1000"}
    result = run_memctl(
        "--db", db, "record", "-s", "lim-2", "--type", "t", "--payload",
        json.dumps({"blob": "p" * 2000}), "small text", env=env,
    )  # fmt: skip
    assert result.returncode == 2
    with memctl.open(db) as mem:
        assert mem.sessions() == []


def test_tool_call_id_counts_towards_the_size_limit(tmp_path: Path) -> None:
    """A huge tool_call_id cannot slip an oversized event past the limit."""
    db = str(tmp_path / "in.db")
    env = {"MEMCTL_MAX_EVENT_BYTES": "1000"}
    data = line(role="tool", content="ok", tool_call_id="c" * 900) + line(
        role="tool", content="ok", tool_call_id="c" * 2000
    )
    result = run_memctl("--db", db, "record", "-s", "lim-4", input=data, env=env)
    assert result.returncode == 2 and "line 2: " in result.stderr.decode()
    assert [len(e["tool_call_id"]) for e in stored(db, "lim-4")] == [900]


@pytest.mark.parametrize("number", ["1e15", "9e15", "-1e15", "1E9", "1e-4", "1e0", "0.5e16"])
def test_a_stored_event_grows_less_than_the_growth_bound(number: str) -> None:
    """Numbers are the only JSON that stores longer; even packed they stay under STORED_GROWTH."""
    text = '{"type": "t", "payload": {"n": [' + ",".join([number] * 100) + "]}}"
    event = event_from_line(text.encode(), DEFAULT_MAX_EVENT_BYTES)
    assert event.payload is not None
    assert len(compact_json(event.payload).encode()) <= 4.5 * len(text) < STORED_GROWTH * len(text)


def test_numbers_that_grow_count_towards_the_size_limit(tmp_path: Path) -> None:
    """A line under the limit whose numbers store over it is refused."""
    db = str(tmp_path / "in.db")
    env = {"MEMCTL_MAX_EVENT_BYTES": "1000"}
    grows = b'{"type": "t", "payload": {"n": [' + b",".join([b"1e15"] * 100) + b"]}}\n"
    assert len(grows) < 1000
    data = line(type="t", payload={"n": [1] * 100}) + grows
    result = run_memctl("--db", db, "record", "-s", "lim-5", input=data, env=env)
    assert result.returncode == 2 and "line 2: " in result.stderr.decode()
    assert [e["payload"] for e in stored(db, "lim-5")] == [{"n": [1] * 100}]


def test_invalid_size_limit_is_bad_usage(tmp_path: Path) -> None:
    """A MEMCTL_MAX_EVENT_BYTES that is not a positive number is exit 2."""
    db = str(tmp_path / "in.db")
    for value in ("lots", "0", "-5"):
        result = run_memctl(
            "--db", db, "record", "-s", "lim-3", "x", env={"MEMCTL_MAX_EVENT_BYTES": value}
        )
        assert result.returncode == 2, value
        assert "MEMCTL_MAX_EVENT_BYTES" in result.stderr.decode()


def peak_rss_kib(args: list[str], data: bytes) -> tuple[int, subprocess.CompletedProcess[bytes]]:
    """Run memctl under a small Python parent and return the child's peak RSS in KiB."""
    probe = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:], stdin=sys.stdin)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, MEMCTL, *args],
        input=data,
        capture_output=True,
        timeout=120,
        check=False,
    )
    rss, code = result.stdout.split()[-2:]
    return int(rss), subprocess.CompletedProcess(args, int(code), result.stdout, result.stderr)


def test_huge_line_is_skipped_without_holding_it(tmp_path: Path) -> None:
    """A 32 MB line is reported and skipped as it streams past, never held in memory whole."""
    db = str(tmp_path / "in.db")
    args = ["--db", db, "record", "-s", "huge-1"]
    record_text(db, "huge-1", "creates the db")
    baseline, _ = peak_rss_kib(args, line(role="user", content="small"))
    huge = b'{"role": "user", "content": "' + b"h" * (32 * 1024 * 1024) + b'"}\n'
    data = line(role="user", content="before") + huge + line(role="user", content="after")
    peak, result = peak_rss_kib(args, data)
    assert result.returncode == 2
    assert "line 2: " in result.stderr.decode()
    assert contents(db, "huge-1") == ["creates the db", "small", "before", "after"]
    # Holding the line would cost at least 32 MiB more than a small run.
    assert peak - baseline < 12 * 1024, (baseline, peak)


def test_streamed_line_is_committed_while_stream_is_open(db_url: str) -> None:
    """A line is stored as soon as it arrives, before the writer closes its input."""
    sid = "open-stream-1"
    proc = subprocess.Popen(
        [MEMCTL, "--db", db_url, "record", "-s", sid],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    seen: list[str | None] = []
    try:
        proc.stdin.write(line(role="user", content="first, stream still open"))
        proc.stdin.flush()
        with memctl.open(db_url) as reader:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and proc.poll() is None:
                seen = [e.content for e in reader.store.events(sid)]
                if seen:
                    break
                time.sleep(0.02)
        still_open = proc.poll() is None
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert still_open, proc.stderr.read() if proc.stderr else b""
    assert seen == ["first, stream still open"]
    assert proc.returncode == 0


def test_each_line_is_acknowledged_before_the_next_arrives(db_url: str) -> None:
    """A writer that waits for each seq gets it: from the second batch on, seqs are
    acknowledged by the storing thread while the reader waits for input."""
    proc = subprocess.Popen(
        [MEMCTL, "--db", db_url, "record", "-s", "ack-1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    acks = []
    try:
        for number in range(1, 6):
            proc.stdin.write(line(role="user", content=f"line {number}"))
            proc.stdin.flush()
            acks.append(proc.stdout.readline().strip())  # blocks until acknowledged
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert acks == [b"1", b"2", b"3", b"4", b"5"]
    assert proc.returncode == 0
    assert contents(db_url, "ack-1") == [f"line {n}" for n in range(1, 6)]


def test_bad_lines_in_later_batches_keep_every_other_line(db_url: str) -> None:
    """A bulk import of several batches with a malformed line and an id taken by
    another session deep inside: both reported by line number, the rest stored
    in order and acknowledged in order."""
    taken = run_memctl("--db", db_url, "record", "-s", "other-1", "--id", "taken-id", "x")
    assert taken.returncode == 0, taken.stderr
    total, malformed, clash = 3000, 2500, 2700  # several batches of at most 1000
    data = b"".join(
        b"{not json\n"
        if number == malformed
        else line(role="user", content=f"m{number}", id="taken-id")
        if number == clash
        else line(role="user", content=f"m{number}")
        for number in range(1, total + 1)
    )
    result = run_memctl("--db", db_url, "record", "-s", "bulk-1", input=data)
    assert result.returncode == 2
    errors = result.stderr.decode()
    assert f"line {malformed}: " in errors and f"line {clash}: " in errors
    assert "already used in session other-1" in errors
    kept = [f"m{n}" for n in range(1, total + 1) if n not in (malformed, clash)]
    assert contents(db_url, "bulk-1") == kept
    assert result.stdout.decode().split() == [str(seq) for seq in range(1, len(kept) + 1)]
