"""``record``'s line reader: every line numbered and kept, however the input is chunked."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memctl import stream
from memctl.errors import BadInput
from memctl.inputs import Cleaned, event_from_line, event_from_mapping


def expected(data: bytes, limit: int) -> list[tuple[int, bytes | None]]:
    """Numbered non-blank lines; one over ``limit`` bytes as None; a last line may lack its newline."""
    pieces = data.split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()  # data ended with a newline (or was empty)
    return [
        (number, None if len(piece) > limit else piece)
        for number, piece in enumerate(pieces, 1)
        if len(piece) > limit or piece.strip()
    ]


def read_all(path: Path, limit: int) -> list[tuple[int, bytes | None]]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return [
            (line.number, line.data) for batch in stream.read_batches(fd, limit) for line in batch
        ]
    finally:
        os.close(fd)


line = st.one_of(
    st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")),
    st.sampled_from([b"", b" ", b"\t\r", b"{}"]),
)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(line, max_size=40),
    end_newline=st.booleans(),
    read_size=st.integers(1, 40),
    limit=st.integers(1, 25),
)
def test_lines_survive_any_chunking(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[bytes],
    end_newline: bool,
    read_size: int,
    limit: int,
) -> None:
    """Reads of any size give the same numbered lines, long ones as None, blank ones skipped."""
    data = b"\n".join(lines) + (b"\n" if end_newline and lines else b"")
    path = tmp_path_factory.mktemp("stream") / "input.jsonl"
    path.write_bytes(data)
    saved = stream.READ_SIZE
    stream.READ_SIZE = read_size
    try:
        assert read_all(path, limit) == expected(data, limit)
    finally:
        stream.READ_SIZE = saved


def _batches_of(path: Path, data: bytes, count: int) -> list[list[stream.Line]]:
    """The batches read_batches makes of ``data`` (``count`` lines), checked to be in order."""
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        batches = list(stream.read_batches(fd, 1 << 20))
    finally:
        os.close(fd)
    assert [line.number for batch in batches for line in batch] == list(range(1, count + 1))
    return batches


def test_batches_stop_at_the_line_limit_between_reads(tmp_path: Path) -> None:
    """A burst of input is cut into batches of at most MAX_BATCH_LINES, in order."""
    count = 3 * stream.MAX_BATCH_LINES + 7
    data = b"".join(b'{"n": %d}\n' % n for n in range(count))
    batches = _batches_of(tmp_path / "input.jsonl", data, count)
    assert len(batches) > 1
    assert all(len(batch) <= stream.MAX_BATCH_LINES for batch in batches)


def test_batches_stop_at_the_byte_limit(tmp_path: Path) -> None:
    """Large lines are cut into batches of about MAX_BATCH_BYTES, so memory stays bounded."""
    text = b'{"content": "' + b"x" * 99_970 + b'"}\n'
    count = 3 * stream.MAX_BATCH_BYTES // len(text) + 5
    batches = _batches_of(tmp_path / "input.jsonl", text * count, count)
    assert len(batches) >= 3
    # A batch closes on the line that reaches the limit.
    assert all(
        sum(len(line.data or b"") for line in batch) < stream.MAX_BATCH_BYTES + len(text)
        for batch in batches
    )


json_text = st.text(alphabet=st.characters(codec=None, blacklist_categories=()), max_size=12)
json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_text, inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    content=json_text,
    arguments=st.dictionaries(json_text, json_value, max_size=4),
    payload=st.none() | st.dictionaries(json_text, json_value, max_size=4),
    ascii_only=st.booleans(),
)
def test_a_line_validates_as_its_mapping_does(
    content: str, arguments: dict[str, object], payload: dict[str, object] | None, ascii_only: bool
) -> None:
    """Lines that skip the walk over their values (no \\u escape) give what the walk gives."""
    event = {
        "role": "assistant",
        "content": content,
        "tool_call": {"id": "c1", "name": "run", "arguments": arguments},
        "payload": payload,
    }
    text = json.dumps(event, ensure_ascii=ascii_only)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        data = text.encode("utf-8", "surrogatepass")  # a lone surrogate, raw: invalid UTF-8
    from_mapping = from_line = None
    with contextlib.suppress(BadInput):
        from_mapping = event_from_mapping(json.loads(text), Cleaned())
    with contextlib.suppress(BadInput):
        from_line = event_from_line(data, 1 << 20, Cleaned())
    if b"\xed" in data and from_line is None:
        return  # invalid UTF-8 is refused as a line, before any mapping
    assert from_line == from_mapping


def _priority_after(work: Callable[[], None]) -> tuple[int, int]:
    """The nice value of a fresh thread before and after it runs ``work``.

    A thread of its own: a lowered priority cannot be raised again, and the
    test process's threads keep theirs.
    """
    seen: list[int] = []

    def run() -> None:
        me = threading.get_native_id()
        seen.append(os.getpriority(os.PRIO_PROCESS, me))
        work()
        seen.append(os.getpriority(os.PRIO_PROCESS, me))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return seen[0], seen[1]


linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="a thread's own nice value is Linux's"
)
# Run under ``nice -n 19`` a thread has no lower priority to go to, and these
# tests could not tell a lowered priority from a kept one.
can_lower = pytest.mark.skipif(
    os.getpriority(os.PRIO_PROCESS, 0) >= 19, reason="already at the lowest priority"
)


def _release_when(ready: Callable[[], bool], release: threading.Event, settle: float) -> None:
    """Set ``release`` ``settle`` s after ``ready()`` holds (or after 10 s), from a thread."""

    def watch() -> None:
        deadline = time.monotonic() + 10
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(settle)
        release.set()

    threading.Thread(target=watch, daemon=True).start()


def _stalled_stream(batch_size: int, *, full: bool) -> tuple[int, int]:
    """Priorities around four batches submitted while storage stalls on the second.

    The first batch is stored on the reading thread if it is small; the
    second stalls the storing thread, the third waits in the queue, and the
    fourth finds the queue full.
    """
    release = threading.Event()
    calls: list[int] = []

    def stalling_commit(good: stream.Numbered, store: Callable[[], list[int]]) -> None:
        calls.append(len(good))
        if len(calls) == 2:
            release.wait(10)

    def submit_four() -> None:
        me = threading.get_native_id()
        before = os.getpriority(os.PRIO_PROCESS, me)
        committer = stream._Committer(stalling_commit)
        batch: stream.Numbered = [
            (n, event_from_mapping({"role": "user"})) for n in range(batch_size)
        ]
        committer.submit(batch, list, full=full)
        committer.submit(batch, list, full=full)  # stored on the thread, which stalls
        if full:
            # Let storage go once this thread has given way (the assertion
            # below fails if it never does: the watcher gives up after 10 s).
            _release_when(lambda: os.getpriority(os.PRIO_PROCESS, me) != before, release, 0)
        else:
            # Let storage go well after the fourth submit has found the queue full.
            _release_when(committer._queue.full, release, 0.3)
        committer.submit(batch, list, full=full)  # waits in the queue
        committer.submit(batch, list, full=full)  # finds the queue full
        committer.finish()

    return _priority_after(submit_four)


@linux_only
@can_lower
def test_a_reader_ahead_of_storage_gives_way() -> None:
    """Once a full batch waits for the one before it, the reading thread's priority is lowered."""
    before, after = _stalled_stream(stream.MAX_BATCH_LINES, full=True)
    assert after == min(19, before + stream.READER_NICENESS)


@linux_only
@can_lower
def test_an_agents_stream_keeps_its_priority_through_a_storage_stall() -> None:
    """Batches cut by pauses that wait once for a stalled store keep the priority."""
    before, after = _stalled_stream(1, full=False)
    assert after == before


@linux_only
@can_lower
def test_full_batches_storage_keeps_up_with_keep_the_priority() -> None:
    """Full batches that each find the queue empty (storage not behind) keep the priority."""
    stored = threading.Event()

    def quick_commit(good: stream.Numbered, store: Callable[[], list[int]]) -> None:
        stored.set()

    def submit_when_stored() -> None:
        committer = stream._Committer(quick_commit)
        batch: stream.Numbered = [
            (n, event_from_mapping({"role": "user"})) for n in range(stream.MAX_BATCH_LINES)
        ]
        for _ in range(4):
            stored.clear()
            committer.submit(batch, list, full=True)
            assert stored.wait(10)  # taken off the queue and stored before the next
        committer.finish()

    before, after = _priority_after(submit_when_stored)
    assert after == before


def test_record_stream_marks_full_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``record_stream`` tells the committer which batches were cut at the size limit."""
    import memctl

    seen: list[tuple[int, bool]] = []
    submit = stream._Committer.submit

    def noting(
        self: stream._Committer,
        good: stream.Numbered,
        store: Callable[[], list[int]],
        *,
        full: bool = False,
    ) -> None:
        seen.append((len(good), full))
        submit(self, good, store, full=full)

    monkeypatch.setattr(stream._Committer, "submit", noting)
    count = 2 * stream.MAX_BATCH_LINES + 5
    source = tmp_path / "input.jsonl"
    source.write_bytes(
        b"".join(b'{"role": "user", "content": "line %d"}\n' % n for n in range(count))
    )
    with memctl.open(str(tmp_path / "memory.db")) as mem:
        session = mem.start()
        fd = os.open(source, os.O_RDONLY)
        try:
            outcome = stream.record_stream(mem, session.id, session.writer, fd, lambda seqs: None)
        finally:
            os.close(fd)
            session.stop()
    assert outcome.stored == count
    # A file is always ready to read: every batch but the last is cut at the limit.
    assert seen == [(stream.MAX_BATCH_LINES, True)] * 2 + [(5, False)]


def test_a_batch_is_full_at_either_size_limit() -> None:
    """``is_full`` tells a batch cut at 1,000 lines or 8 MiB from one cut by a pause."""
    line = stream.Line(1, b"{}")
    assert stream.is_full([line] * stream.MAX_BATCH_LINES)
    assert not stream.is_full([line] * (stream.MAX_BATCH_LINES - 1))
    big = stream.Line(1, b"x" * (stream.MAX_BATCH_BYTES // 2))
    assert stream.is_full([big, big])
    assert not stream.is_full([big, stream.Line(2, None)])  # an over-long line holds no bytes
