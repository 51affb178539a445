"""The one-statement append against the rules it shortcuts, on both backends.

Both adapters write the common append (a writer the session already belongs
to) as one conditional UPDATE that computes the summary in SQL from
``ledger.batch_effect``. These tests feed random batches of messages, tool
calls, answers and other events through it and compare what the session
summary says with ``ledger.summarise`` applied event by event, the rule the
general path uses. They also check that the shortcut was really taken, so a
change that quietly sends everything down the general path fails here.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memctl import ledger
from memctl.ledger import Summary, summarise
from memctl.models import NewEvent
from memctl.owners import Identity
from memctl.storage import NO_FILTERS, SearchFilters, Store, Writer

CALL_IDS = ["c1", "c2", "c3"]


def _event(kind: str, call: str | None) -> NewEvent:
    if kind == "user":
        return NewEvent(type="message", role="user", content="hello")
    if kind == "escapes":
        # What COPY's text format escapes, what looks like its escapes, and
        # what looks like the placeholders of pg_rows.copy_template.
        text = "tab\there\nnew\rline \\N back\\slash \\. end 100% %d %s %%"
        return NewEvent(type="message", role="user", content=text, payload={"raw": text})
    if kind == "call":
        tool_call: dict[str, Any] = {"name": "grep", "arguments": {"q": "x"}}
        if call is not None:
            tool_call["id"] = call
        return NewEvent(type="message", role="assistant", content=None, tool_call=tool_call)
    if kind == "answer":
        return NewEvent(type="message", role="tool", content="found", tool_call_id=call)
    if kind == "odd-call":
        # An id that is not a string can never be answered.
        odd: dict[str, Any] = {"name": "grep", "id": None}
        return NewEvent(type="message", role="assistant", content="x", tool_call=odd)
    return NewEvent(type="note", payload={"k": kind})


events = st.builds(
    _event,
    st.sampled_from(["user", "escapes", "call", "answer", "odd-call", "note"]),
    st.one_of(st.none(), st.sampled_from(CALL_IDS)),
)
batches = st.lists(st.lists(events, min_size=1, max_size=5), min_size=1, max_size=6)
# Bulk imports: PostgreSQL COPYs batches of pg_fast.COPY_FROM (64) events or more.
bulk = st.lists(st.lists(events, min_size=60, max_size=140), min_size=1, max_size=3)


@pytest.fixture
def general_calls(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts appends that took the general path instead of the one statement."""
    calls: list[int] = []
    if store.backend == "sqlite":
        from memctl.sqlite import SQLiteStore

        original = SQLiteStore._append_general

        def counted_sqlite(self: SQLiteStore, *args: Any, **kwargs: Any) -> list[int]:
            calls.append(1)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(SQLiteStore, "_append_general", counted_sqlite)
    else:
        from memctl import pg_append

        original_pg = pg_append._append_general

        def counted_pg(*args: Any, **kwargs: Any) -> list[int]:
            calls.append(1)
            return original_pg(*args, **kwargs)

        monkeypatch.setattr(pg_append, "_append_general", counted_pg)
    yield calls


def _check(store: Store, session_id: str, writer: Writer, plan: list[list[NewEvent]]) -> None:
    expected = Summary.empty("")
    for batch in plan:
        seqs = store.append(session_id, batch, writer)
        assert seqs == list(range(expected.last_seq + 1, expected.last_seq + 1 + len(batch)))
        for seq, event in zip(seqs, batch, strict=True):
            expected = summarise(expected, event, seq, "")
    info = store.get_session(session_id)
    assert info is not None
    assert info.events == expected.events
    assert info.messages == expected.messages
    assert info.pending_tool_call == expected.pending_tool_call
    last = info.last_message.seq if info.last_message is not None else None
    assert last == expected.last_message_seq
    # The writer stays the owner, under the same epoch, with a live lease.
    assert info.owner is not None and writer.identity.matches(info.owner)
    assert info.status.value == "active"
    if writer.epoch is not None:
        assert info.epoch == writer.epoch


def _needs_general(batch: list[NewEvent]) -> bool:
    """A batch with a call that has no id: its summary needs the call's seq (ledger._with_id)."""
    return any(
        e.role == "assistant" and e.tool_call is not None and not e.tool_call.get("id")
        for e in batch
    )


def _check_epoch_writer(store: Store, general_calls: list[int], plan: list[list[NewEvent]]) -> str:
    """``plan`` written by an agent holding the epoch, by the shortcut where it can; the session."""
    me = Writer(Identity.of(os.getpid()))
    info = store.create_session("s_" + uuid.uuid4().hex, None, {}, me)
    general_calls.clear()
    _check(store, info.id, Writer(me.identity, info.epoch), plan)
    assert len(general_calls) == sum(map(_needs_general, plan))
    return info.id


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(plan=batches)
def test_epoch_writer_summary_matches_ledger(
    store: Store, general_calls: list[int], plan: list[list[NewEvent]]
) -> None:
    """An agent holding the epoch: every batch takes the shortcut, summary as the ledger says."""
    _check_epoch_writer(store, general_calls, plan)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(plan=batches)
def test_owner_without_epoch_summary_matches_ledger(
    store: Store, general_calls: list[int], plan: list[list[NewEvent]]
) -> None:
    """A CLI writer that owns the session: only the creating append takes the general path
    (and a batch with an id-less call)."""
    general_calls.clear()
    _check(store, "s_" + uuid.uuid4().hex, Writer(Identity.of(os.getpid())), plan)
    assert len(general_calls) == 1 + sum(map(_needs_general, plan[1:]))


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
@given(plan=bulk)
def test_bulk_batches_summary_matches_ledger(
    store: Store, general_calls: list[int], plan: list[list[NewEvent]]
) -> None:
    """Large batches (copied in on PostgreSQL) take the shortcut too, summary as the ledger says."""
    session_id = _check_epoch_writer(store, general_calls, plan)
    stored = store.events(session_id)
    assert [event.seq for event in stored] == list(range(1, sum(map(len, plan)) + 1))
    assert [event.content for event in stored] == [e.content for batch in plan for e in batch]
    assert [event.payload for event in stored] == [e.payload for batch in plan for e in batch]


def test_bulk_batch_keeps_every_kind_of_event_exactly(store: Store) -> None:
    """A batch large enough to be copied in, with each kind of event (escapes too, in the
    session id as well), round-trips.

    No call without an id: that batch would take the general path (``_needs_general``).
    """
    kinds = ["user", "escapes", "call", "answer", "note"]
    batch = [_event(kinds[n % len(kinds)], CALL_IDS[n % 3]) for n in range(120)]
    assert not _needs_general(batch)
    me = Writer(Identity.of(os.getpid()))
    # An id with what means something to the COPY template (``%``) and to COPY text (``\``).
    info = store.create_session("s_kinds 100% %d\\b%%é %s", None, {}, me)
    seqs = store.append(info.id, batch, Writer(me.identity, info.epoch))
    assert seqs == list(range(1, 121))
    stored = store.events(info.id)
    assert {event.session for event in stored} == {info.id}
    assert [(e.role, e.content, e.tool_call, e.tool_call_id, e.payload) for e in stored] == [
        (e.role, e.content, e.tool_call, e.tool_call_id, e.payload) for e in batch
    ]
    escapes = [
        seq
        for seq, event in zip(seqs, batch, strict=True)
        if event.payload == {"raw": event.content}
    ]
    hits = store.search("100", SearchFilters(limit=100))
    assert sorted(hit.seq for hit in hits) == escapes  # indexed as well as stored


def test_bulk_batch_escapes_every_text_column(store: Store) -> None:
    """Each stored text column, not only content, survives COPY's escapes in a copied batch."""
    odd = "t\tb\\N\nl\rc 100% %d"
    batch = [
        NewEvent(
            type=f"note {odd}",
            role=odd,
            content=odd,
            tool_call={"name": odd, "id": f"c {n}", "arguments": {"a": odd}},
            tool_call_id=odd,
            payload={"p": odd},
            id=f"e {n} {odd}",
            ts="2026-11-25T00:00:00.000000Z",
        )
        for n in range(100)
    ]
    me = Writer(Identity.of(os.getpid()))
    info = store.create_session("s_escapes", None, {}, me)
    assert store.append(info.id, batch, Writer(me.identity, info.epoch)) == list(range(1, 101))
    fields = ("id", "ts", "type", "role", "content", "tool_call", "tool_call_id", "payload")
    assert [[getattr(e, name) for name in fields] for e in store.events(info.id)] == [
        [getattr(e, name) for name in fields] for e in batch
    ]


def test_postgres_copied_batch_with_a_taken_id_stores_nothing(pg_schema_url: str) -> None:
    """A COPY that hits a taken id rolls back the claim too; the caller goes the general way."""
    from memctl import pg_fast
    from memctl.ledger import batch_effect
    from memctl.pg_rows import copy_template, event_row
    from memctl.postgres import PostgresStore

    store = PostgresStore(pg_schema_url)
    try:
        me = Writer(Identity.of(os.getpid()))
        info = store.create_session("s_copy", None, {}, me)
        writer = Writer(me.identity, info.epoch)
        store.append(info.id, [NewEvent(type="message", role="user", content="first")], writer)
        taken = store.events(info.id)[0].id
        batch = [NewEvent(type="message", role="user", content=str(n)) for n in range(100)]
        stamps = [(f"e_new_{n}", "2026-11-25T00:00:00.000000Z") for n in range(100)]
        stamps[70] = (taken, stamps[70][1])  # not announced as chosen: only COPY finds it
        rows = [event_row(e, i, ts) for e, (i, ts) in zip(batch, stamps, strict=True)]
        with psycopg_connect(pg_schema_url) as conn:
            effect = batch_effect(batch, stamps)
            assert effect is not None
            data = copy_template(info.id, rows)
            first = pg_fast.try_append(
                conn, info.id, rows, data, effect, writer, [], lock_timeout="5s"
            )
            # The same connection (and its kept cursor) takes the next batch after the error.
            fresh = [(f"e_fresh_{n}", ts) for n, (_, ts) in enumerate(stamps)]
            again = [event_row(e, i, ts) for e, (i, ts) in zip(batch, fresh, strict=True)]
            one = batch_effect(batch[:1], fresh[:1])
            assert one is not None
            small = pg_fast.try_append(
                conn, info.id, again[:1], None, one, writer, [], lock_timeout="5s"
            )
        assert first is None and small == 2
        after = store.get_session(info.id)
        assert after is not None and after.events == 2
        # The claim was undone with the copy: the next batch got seq 2.
        assert [e.id for e in store.events(info.id)] == [taken, "e_fresh_0"]
    finally:
        store.close()


def psycopg_connect(url: str) -> Any:
    import psycopg
    from psycopg.rows import dict_row

    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


def test_ended_session_reopens(store: Store) -> None:
    """Writing into an ended session with the current epoch reopens it."""
    me = Writer(Identity.of(os.getpid()))
    info = store.create_session("s_reopen", None, {}, me)
    writer = Writer(me.identity, info.epoch)
    store.append(info.id, [NewEvent(type="message", role="user", content="a")], writer)
    store.end_session(info.id, "ended", writer)
    later = [NewEvent(type="message", role="user", content="b")]
    assert store.append(info.id, later, writer) == [2]
    reopened = store.get_session(info.id)
    assert reopened is not None and reopened.ended_at is None
    assert reopened.status.value == "active"


def test_answer_in_a_later_append_clears_the_pending_call(
    store: Store, general_calls: list[int]
) -> None:
    """A tool call recorded in one append is answered by the next one, both by the shortcut."""
    me = Writer(Identity.of(os.getpid()))
    info = store.create_session("s_answer", None, {}, me)
    writer = Writer(me.identity, info.epoch)
    general_calls.clear()
    call = {"id": "c1", "name": "grep", "arguments": {"q": "x"}}
    store.append(info.id, [NewEvent(type="message", role="assistant", tool_call=call)], writer)
    pending = store.get_session(info.id)
    assert pending is not None and pending.pending_tool_call == call
    store.append(info.id, [NewEvent(type="message", role="tool", tool_call_id="c2")], writer)
    still = store.get_session(info.id)
    assert still is not None and still.pending_tool_call == call  # another call's answer
    store.append(info.id, [NewEvent(type="message", role="tool", tool_call_id="c1")], writer)
    answered = store.get_session(info.id)
    assert answered is not None and answered.pending_tool_call is None
    assert answered.last_message is not None and answered.last_message.seq == 3
    assert general_calls == []


def test_stale_epoch_is_fenced_not_shortcut(store: Store) -> None:
    """A writer with an old epoch matches nothing in the shortcut and is fenced out."""
    from memctl.errors import FencedOut

    me = Writer(Identity.of(os.getpid()))
    info = store.create_session("s_fence", None, {}, me)
    taken = store.claim(info.id, me, force=True)
    assert taken.epoch == info.epoch + 1
    with pytest.raises(FencedOut):
        store.append(
            info.id,
            [NewEvent(type="message", role="user", content="late")],
            Writer(me.identity, info.epoch),
        )
    assert ledger.eligible(Writer(me.identity, info.epoch))
    assert store.events(info.id) == []  # nothing of the fenced write was stored


def test_one_event_and_a_batch_store_the_same_values(store: Store) -> None:
    """A lone event (bound value by value on PostgreSQL) is stored as one inside a batch is."""
    text = "tab\there\nnew \\N \u00e9 'quoted' \"double\" billing"
    odd = NewEvent(
        type="message",
        role="assistant",
        content=text,
        tool_call={"id": "c9", "name": "grep", "arguments": {"q": text, "n": [1, 2.5, None]}},
        payload={"raw": text, "nested": {"ok": True}},
    )
    plain = NewEvent(type="note", payload={"k": "v"})
    me = Writer(Identity.of(os.getpid()))
    alone = store.create_session("s_" + uuid.uuid4().hex, None, {}, me)
    batched = store.create_session("s_" + uuid.uuid4().hex, None, {}, me)
    assert store.append(alone.id, [odd], Writer(me.identity, alone.epoch)) == [1]
    assert store.append(batched.id, [odd, plain], Writer(me.identity, batched.epoch)) == [1, 2]

    def stored(session_id: str) -> tuple[Any, ...]:
        event = store.events(session_id)[0]
        return (
            event.type,
            event.role,
            event.content,
            event.tool_call,
            event.tool_call_id,
            event.payload,
        )

    assert stored(alone.id) == stored(batched.id)
    assert stored(alone.id)[2] == text
    hits = {(hit.session, hit.seq) for hit in store.search("billing", NO_FILTERS)}
    assert {(alone.id, 1), (batched.id, 1)} <= hits
