"""`resume --format openai` and `WorkingMemory.to_openai()` give arrays a chat API accepts.

The rules checked (`assert_chat_valid`) are the chat-completions API's: an
assistant message with a tool call is followed at once by the tool message
answering it, and a tool message answers the call just before it. Records
that would break them are refused at the door (exit 2); older data and
results recorded late are put right in the output.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

import memctl
from memctl.models import Event, NewEvent
from memctl.owners import Identity
from memctl.storage import Writer
from memctl.working import WorkingMemory
from tests.conftest import run_memctl
from tests.test_cli import as_json, cli, dead_pid, ok, session_of


def assert_chat_valid(messages: list[dict[str, Any]], *, open_call_at_end: bool = False) -> None:
    """Fail unless ``messages`` keeps the API's tool-call rules."""
    waiting: list[str] = []  # ids of the calls the next messages must answer
    for index, message in enumerate(messages):
        assert message["role"] in ("system", "user", "assistant", "tool"), message
        if message["role"] == "tool":
            assert message["tool_call_id"] in waiting, (index, message, waiting)
            waiting.remove(message["tool_call_id"])
            continue
        assert not waiting, f"message {index} comes before the answer to {waiting}"
        if message["role"] == "assistant":
            waiting = [call["id"] for call in message.get("tool_calls", [])]
            assert all(isinstance(i, str) and i for i in waiting), message
        else:
            assert "tool_calls" not in message, message
    assert open_call_at_end or not waiting, f"unanswered at the end: {waiting}"


def event(seq: int, role: str, content: str, **fields: Any) -> Event:
    return Event(
        session="s",
        seq=seq,
        id=f"e{seq}",
        ts="2026-01-01T00:00:00.000000Z",
        type="message",
        role=role,
        content=content,
        tool_call=fields.get("tool_call"),
        tool_call_id=fields.get("tool_call_id"),
        payload=None,
    )


def test_a_late_result_moves_up_to_its_call() -> None:
    """A result recorded after other messages is placed right after its call."""
    events = [
        event(1, "user", "read it"),
        event(2, "assistant", "", tool_call={"id": "c1", "name": "read_file"}),
        event(3, "user", "still there?"),
        event(4, "user", "hello?"),
        event(5, "tool", "def f(): ...", tool_call_id="c1"),
    ]
    messages = WorkingMemory.from_events(events).to_openai()
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "user", "user"]
    assert messages[2]["content"] == "def f(): ..."
    assert_chat_valid(messages)


def test_a_result_whose_call_is_missing_becomes_a_user_message() -> None:
    """An orphaned or repeated result is kept, as a user message that says what it is."""
    events = [
        event(1, "tool", "from before the window", tool_call_id="c0"),
        event(2, "assistant", "", tool_call={"id": "c1", "name": "ls"}),
        event(3, "tool", "a b", tool_call_id="c1"),
        event(4, "tool", "a b again", tool_call_id="c1"),
    ]
    messages = WorkingMemory.from_events(events).to_openai()
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "user"]
    assert "'c0'" in messages[0]["content"] and "from before the window" in messages[0]["content"]
    assert "a b again" in messages[3]["content"]
    assert_chat_valid(messages)


def test_a_call_without_an_id_is_named_by_its_seq() -> None:
    """An id-less call is call_<seq>, and a result naming that id answers it."""
    events = [
        event(7, "assistant", "", tool_call={"name": "ls"}),
        event(8, "tool", "a b", tool_call_id="call_7"),
    ]
    messages = WorkingMemory.from_events(events).to_openai()
    assert messages[0]["tool_calls"][0]["id"] == "call_7"
    assert_chat_valid(messages)


def test_a_call_on_a_user_message_from_older_data_is_not_sent_as_one() -> None:
    """Only assistant messages carry tool_calls in the output."""
    events = [event(1, "user", "hi", tool_call={"id": "c1", "name": "ls"})]
    messages = WorkingMemory.from_events(events).to_openai()
    assert "tool_calls" not in messages[0]
    assert_chat_valid(messages)


CALL_NO_ID = {"name": "run_tests", "arguments": {"path": "tests/"}}


def test_claim_answers_every_open_call_next_to_it(db_url: str) -> None:
    """A claim answers an id-less call and an earlier unanswered one, each right after its call."""
    dead = str(dead_pid())
    sid = "oa-claim"

    def record(*args: str) -> None:
        ok(db_url, "record", "-s", sid, "--owner-pid", dead, *args)

    record("question")
    record("--role", "assistant", "--tool-call", json.dumps({"id": "c1", "name": "ls"}), "x")
    record("--role", "user", "while it ran")
    record("--role", "assistant", "--tool-call", json.dumps({"id": "c2", "name": "ls"}), "y")
    record("--role", "tool", "--tool-call-id", "c2", "done")  # the last call is answered
    record("--role", "assistant", "--tool-call", json.dumps(CALL_NO_ID), "z")
    record("--role", "user", "one")
    record("--role", "user", "two")
    assert session_of(db_url, sid)["status"] == "incomplete"
    messages = as_json(db_url, "resume", sid, "--format", "openai")
    assert_chat_valid(messages)
    roles = " ".join(m["role"] for m in messages)
    assert roles == "user assistant tool user assistant tool assistant tool user user"
    assert messages[2]["tool_call_id"] == "c1"
    assert messages[7]["tool_call_id"] == messages[6]["tool_calls"][0]["id"] == "call_6"
    assert str(messages[7]["content"]).startswith("[memctl] Interrupted")
    # Stored, at the end of the log, once: a second claim adds nothing.
    assert len(as_json(db_url, "show", sid, "--json")) == 10
    as_json(db_url, "resume", sid, "--force", "--format", "openai")
    assert len(as_json(db_url, "show", sid, "--json")) == 10


def test_peek_puts_the_output_only_answer_after_its_call(db_url: str) -> None:
    """--peek on an incomplete session answers the open call in place, storing nothing."""
    dead = str(dead_pid())
    sid = "oa-peek"
    ok(db_url, "record", "-s", sid, "--owner-pid", dead, "--role", "assistant",
       "--tool-call", json.dumps({"id": "c1", "name": "ls"}), "x")  # fmt: skip
    ok(db_url, "record", "-s", sid, "--owner-pid", dead, "after")
    messages = as_json(db_url, "resume", sid, "--peek", "--format", "openai")
    assert [m["role"] for m in messages] == ["assistant", "tool", "user"]
    assert_chat_valid(messages)
    assert len(as_json(db_url, "show", sid, "--json")) == 2


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--role", "tool", "result"], "tool_call_id"),
        (["--role", "user", "--tool-call", '{"id": "c", "name": "ls"}', "x"], "assistant"),
        (["--role", "user", "--tool-call-id", "c1", "x"], "tool message"),
        (["--role", "system", "--tool-call-id", "c1", "x"], "tool message"),
    ],
)
def test_record_refuses_what_a_chat_api_would(db_url: str, args: list[str], complaint: str) -> None:
    """A tool message without its call id, or a call or call id on the wrong role, is exit 2."""
    result = cli(db_url, "record", "-s", "oa-bad", *args)
    assert result.exit_code == 2, result.output
    assert complaint in result.output
    assert cli(db_url, "show", "oa-bad").exit_code == 3  # nothing stored, no session made


def test_json_lines_with_such_events_are_reported_by_number(db_url: str) -> None:
    """In a stream, the bad lines are reported and the good ones kept."""
    lines = [
        {"role": "user", "content": "ok"},
        {"role": "tool", "content": "no id"},
        {"role": "user", "content": "x", "tool_call": {"name": "ls"}},
        {"role": "assistant", "content": "ok", "tool_call": {"id": "c", "name": "ls"}},
        {"role": "tool", "content": "fine", "tool_call_id": "c"},
        {"type": "note", "content": "not a message", "tool_call_id": "anything"},
    ]
    data = "".join(json.dumps(x) + "\n" for x in lines)
    result = run_memctl("--db", db_url, "record", "-s", "oa-lines", input=data)
    assert result.returncode == 2
    assert b"line 2:" in result.stderr and b"line 3:" in result.stderr
    assert len(as_json(db_url, "show", "oa-lines", "--json")) == 4


def test_library_refuses_the_same(db_url: str) -> None:
    """Session.add_message checks as record does."""
    with memctl.open(db_url) as mem:
        session = mem.start()
        with pytest.raises(memctl.BadInput, match="tool_call_id"):
            session.add_message("tool", "result")
        with pytest.raises(memctl.BadInput, match="assistant"):
            session.add_message("user", "hi", tool_call={"id": "c", "name": "ls"})
        assert mem.events(session.id) == []


def test_answering_an_id_less_call_by_its_seq_clears_it(db_url: str) -> None:
    """The summary shows an id-less call as call_<seq>; a result naming that id answers it."""
    ok(db_url, "record", "-s", "oa-pend", "go")
    ok(db_url, "record", "-s", "oa-pend", "--role", "assistant", "--tool-call",
       json.dumps(CALL_NO_ID), "running")  # fmt: skip
    assert session_of(db_url, "oa-pend")["pending_tool_call"] == {**CALL_NO_ID, "id": "call_2"}
    ok(db_url, "record", "-s", "oa-pend", "--role", "tool", "--tool-call-id", "call_2", "3 passed")
    assert session_of(db_url, "oa-pend")["pending_tool_call"] is None
    # The same within one streamed batch, and in the stored events the call keeps no id.
    lines = [
        {"role": "assistant", "content": "again", "tool_call": CALL_NO_ID},
        {"role": "tool", "content": "ok", "tool_call_id": "call_4"},
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines)
    assert run_memctl("--db", db_url, "record", "-s", "oa-pend", input=data).returncode == 0
    assert session_of(db_url, "oa-pend")["pending_tool_call"] is None
    assert "id" not in as_json(db_url, "show", "oa-pend", "--json")[3]["tool_call"]


def test_a_call_further_back_than_the_claim_looks_is_answered_in_the_output(
    db_url: str,
) -> None:
    """A call followed by 600 messages: the claim stores no answer, the openai array has one."""
    dead = dead_pid()
    sid = "oa-far"
    with memctl.open(db_url) as mem:
        store = mem.store
        writer = Writer(Identity.of(dead))
        call = {"id": "c1", "name": "ls"}
        store.append(sid, [NewEvent(type="message", role="assistant", tool_call=call)], writer)
        store.append(
            sid,
            [NewEvent(type="message", role="user", content=f"m{n}") for n in range(600)],
            writer,
        )
    messages = as_json(db_url, "resume", sid, "--format", "openai")
    assert_chat_valid(messages)
    assert [m["role"] for m in messages[:3]] == ["assistant", "tool", "user"]


def test_a_call_id_used_again_gets_its_own_answer(db_url: str) -> None:
    """After one claim answered call c1, a later open c1 is answered again on the next claim."""
    dead = str(dead_pid())
    sid = "oa-again"
    call = json.dumps({"id": "c1", "name": "ls"})
    ok(db_url, "record", "-s", sid, "--owner-pid", dead, "--role", "assistant",
       "--tool-call", call, "x")  # fmt: skip
    as_json(db_url, "resume", sid, "--format", "openai")  # answers the first c1
    ok(db_url, "record", "-s", sid, "--owner-pid", dead, "--role", "assistant",
       "--tool-call", call, "y")  # fmt: skip
    ok(db_url, "record", "-s", sid, "--owner-pid", dead, "after")
    messages = as_json(db_url, "resume", sid, "--force", "--format", "openai")
    assert_chat_valid(messages)
    assert [m["role"] for m in messages] == ["assistant", "tool", "assistant", "tool", "user"]
    assert len(as_json(db_url, "show", sid, "--json")) == 5  # both answers stored


def test_a_stale_call_in_a_live_session_is_closed_in_the_output(db_url: str) -> None:
    """In a live session only a call in the newest message is left open."""
    live = str(os.getpid())
    sid = "oa-live"
    ok(db_url, "record", "-s", sid, "--owner-pid", live, "--role", "assistant",
       "--tool-call", json.dumps({"id": "c1", "name": "ls"}), "x")  # fmt: skip
    ok(db_url, "record", "-s", sid, "--owner-pid", live, "next question")
    messages = as_json(db_url, "resume", sid, "--peek", "--format", "openai")
    assert_chat_valid(messages)
    assert len(as_json(db_url, "show", sid, "--json")) == 2  # nothing stored by a peek


def test_an_ended_sessions_last_call_is_closed_in_the_output(db_url: str) -> None:
    """Only a live session's newest call may be running: an ended one's is answered."""
    ok(db_url, "record", "-s", "oa-ended", "--role", "assistant",
       "--tool-call", json.dumps({"id": "c1", "name": "ls"}), "x")  # fmt: skip
    ok(db_url, "end", "oa-ended")
    assert_chat_valid(as_json(db_url, "resume", "oa-ended", "--peek", "--format", "openai"))


def test_an_unanswered_call_whose_id_is_used_again_is_answered(db_url: str) -> None:
    """c1, a user message, c1 again (both open, owner dead): both get an answer, in place."""
    dead = str(dead_pid())
    call = json.dumps({"id": "c1", "name": "ls"})
    for args in (["--role", "assistant", "--tool-call", call, "x"], ["between"],
                 ["--role", "assistant", "--tool-call", call, "y"]):  # fmt: skip
        ok(db_url, "record", "-s", "oa-reuse", "--owner-pid", dead, *args)
    peeked = as_json(db_url, "resume", "oa-reuse", "--peek", "--format", "openai")
    assert_chat_valid(peeked)
    claimed = as_json(db_url, "resume", "oa-reuse", "--format", "openai")
    assert_chat_valid(claimed)
    assert [m["role"] for m in claimed] == ["assistant", "tool", "user", "assistant", "tool"]


def test_a_live_sessions_running_call_keeps_its_id_to_itself(db_url: str) -> None:
    """c1 left open, then c1 again as the newest message of a live session: the old one is
    answered where it was left, the newest stays open."""
    live = str(os.getpid())
    call = json.dumps({"id": "c1", "name": "ls"})
    for args in (["--role", "assistant", "--tool-call", call, "x"], ["between"],
                 ["--role", "assistant", "--tool-call", call, "y"]):  # fmt: skip
        ok(db_url, "record", "-s", "oa-run", "--owner-pid", live, *args)
    messages = as_json(db_url, "resume", "oa-run", "--peek", "--format", "openai")
    assert [m["role"] for m in messages] == ["assistant", "tool", "user", "assistant"]
    assert_chat_valid(messages, open_call_at_end=True)
