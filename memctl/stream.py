"""Reading JSON lines from a pipe in small, prompt batches.

``record`` promises that a line is durable within 100 ms of arriving. Lines
that arrive together are committed together (one transaction, so bulk imports
are fast); a lone line is committed as soon as no more input is waiting. A
line longer than the size limit is skipped as it streams past, never held in
memory whole. While one batch is being stored the next is read, validated
and prepared (``_Committer``).
"""

from __future__ import annotations

import os
import queue
import select
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from .errors import BadInput
from .inputs import Cleaned, check_size, event_from_line, max_event_bytes
from .models import NewEvent

if TYPE_CHECKING:
    from .core import Memory
    from .storage import Writer

# How long a batch may wait for more lines once it has one. Well under the
# 100 ms durability promise, long enough to gather a burst.
MAX_BATCH_WAIT = 0.02
# How much of a burst goes in one transaction. Larger is faster (100,000
# lines into PostgreSQL: 3.07 s in batches of 1,000, 2.70 s of 4,000), but
# while memctl is behind a burst a line waits for the batches ahead of it:
# with 4,000 the median line took 100 ms from the pipe to its printed seq
# and most took longer than the 100 ms record promises; with 1,000, 50 ms.
# The byte limit keeps the batches in memory (three at most: one being
# read, one waiting, one being stored) small whatever the lines' size.
MAX_BATCH_LINES = 1000
MAX_BATCH_BYTES = 8 << 20
# A first batch this large is stored on a thread of its own (_Committer):
# storing 4,000 lines inline kept the reader idle for 100 to 170 ms.
THREAD_FROM = 64
READ_SIZE = 1 << 16
UTF8_BOM = b"\xef\xbb\xbf"
# An event's stored form (check_size's bytes) is at most this many times its
# JSON line, so a line that short needs no check (it cost a second encoding of
# every tool call). Strings store no longer than their JSON (an escape is never
# shorter than what it stands for) and compact JSON drops whitespace; only a
# number grows, at most 4.5 times: 1e15 is stored as 1000000000000000.0.
STORED_GROWTH = 5


class Line(NamedTuple):
    """One input line: its 1-based number, and its bytes (None if it was too long)."""

    number: int
    data: bytes | None


def read_batches(fd: int, limit: int) -> Iterator[list[Line]]:
    """Yield batches of complete lines from ``fd`` until end of input."""
    partial = bytearray()  # the start of a line whose newline has not arrived
    skipping = False  # inside a line that is already over the limit
    number = 0
    batch: list[Line] = []
    batch_started = 0.0
    size = 0  # the batch's bytes
    while True:
        if batch:
            waited = time.monotonic() - batch_started
            if waited >= MAX_BATCH_WAIT or len(batch) >= MAX_BATCH_LINES:
                yield batch
                batch, size = [], 0
                continue
            ready, _, _ = select.select([fd], [], [], 0)
            if not ready:
                yield batch
                batch, size = [], 0
                continue
        chunk = os.read(fd, READ_SIZE)
        if not chunk:
            break
        if len(batch) == 0:
            batch_started = time.monotonic()
        # One split per chunk: every piece but the last is a whole line (the
        # first one continued from earlier chunks), the last is unfinished.
        pieces = chunk.split(b"\n")
        if len(pieces) == 1:  # no newline: the line goes on
            if not skipping:
                partial += chunk
                if len(partial) > limit:
                    skipping = True
                    partial.clear()
            continue
        last = pieces.pop()
        if partial:
            pieces[0] = bytes(partial + pieces[0])
            partial.clear()
        for piece in pieces:
            number += 1
            if skipping or len(piece) > limit:
                batch.append(Line(number, None))
                skipping = False
            elif piece and not piece.isspace():
                batch.append(Line(number, piece))
                size += len(piece)
            if len(batch) >= MAX_BATCH_LINES or size >= MAX_BATCH_BYTES:  # a burst
                yield batch
                batch, size = [], 0
                batch_started = time.monotonic()
        if len(last) > limit:
            skipping = True
        else:
            partial += last
    if skipping:
        batch.append(Line(number + 1, None))
    elif partial and not partial.isspace():
        batch.append(Line(number + 1, bytes(partial)))  # a last line without a newline
    if batch:
        yield batch


def is_full(batch: list[Line]) -> bool:
    """Whether ``read_batches`` cut ``batch`` at a size limit rather than at a pause."""
    if len(batch) >= MAX_BATCH_LINES:
        return True
    return sum(len(line.data) for line in batch if line.data is not None) >= MAX_BATCH_BYTES


@dataclass
class StreamOutcome:
    """What a streamed ``record`` did: how many stored, which lines were bad."""

    stored: int = 0
    replaced: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


Numbered = list[tuple[int, NewEvent]]


def _validate(batch: list[Line], limit: int, cleaned: Cleaned, outcome: StreamOutcome) -> Numbered:
    """The batch's good events with their line numbers; bad lines go to ``outcome``."""
    good: Numbered = []
    for line in batch:
        if line.data is None:
            outcome.errors.append((line.number, f"larger than the limit of {limit} bytes"))
            continue
        data = line.data
        if line.number == 1 and data.startswith(UTF8_BOM):
            data = data[len(UTF8_BOM) :]  # written by some Windows tools; not content
        try:
            event = event_from_line(data, limit, cleaned)
            if len(data) * STORED_GROWTH > limit:
                check_size(event, limit)
        except BadInput as error:
            outcome.errors.append((line.number, str(error)))
            continue
        good.append((line.number, event))
    return good


class _Committer:
    """Stores prepared batches in input order, on a thread of its own from the second.

    The reader's thread validates batch k+1 and prepares it
    (``Store.prepare_append``: ids, rows, JSON) while this thread waits for
    the database to store batch k; psycopg and sqlite3 release the GIL while
    they wait, so the two overlap. A small first batch, the interactive case,
    is stored on the reader's thread and starts no thread; a large one (a
    bulk import) goes to the thread at once, so the second is prepared while
    it is stored. At most one batch
    waits behind the one being stored, so memory stays bounded.
    Acknowledgements go out from the storing thread as each batch commits,
    in input order, even while the reader is blocked waiting for input.
    """

    def __init__(self, commit: Callable[[Numbered, Callable[[], list[int]]], None]) -> None:
        self._commit = commit
        self._queue: queue.Queue[tuple[Numbered, Callable[[], list[int]]] | None]
        self._queue = queue.Queue(maxsize=1)
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._started = False
        self._behind = False  # a full batch had to wait for the one before it

    def submit(self, good: Numbered, store: Callable[[], list[int]], *, full: bool = False) -> None:
        """Store ``good`` with ``store``, after every batch submitted before it.

        ``full`` says the batch was cut at its size limit, not at a pause in
        the input: the mark of a bulk import rather than an agent's lines.
        """
        if self._failure is not None:
            raise self._failure
        if not self._started:
            self._started = True
            if len(good) < THREAD_FROM:
                self._commit(good, store)
                return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="memctl-record", daemon=True)
            self._thread.start()
        if full and not self._behind and self._queue.full():
            # A bulk input whose storage is the bottleneck: let storage have
            # the CPU. A batch cut by a pause is an agent's, and a storage
            # stall it meets once must not slow its stream for good.
            self._behind = True
            _lower_priority()
        self._queue.put((good, store))

    def finish(self) -> None:
        """Wait until every submitted batch is stored; re-raise a storing error."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._failure is not None:
                continue  # nothing after a failed batch is stored
            try:
                self._commit(*item)
            except BaseException as exc:  # handed to the reader's thread
                self._failure = exc


# How much lower the reader's thread runs once storage is behind it.
READER_NICENESS = 10


def _lower_priority() -> None:
    """Lower the scheduling priority of the calling thread (Linux), for a bulk import.

    Once a full batch waits for the one before it, reading is ahead of
    storing, and the two compete for the CPU with the database server (when it
    runs on this machine) for nothing: storing sets the pace. With the
    reader's thread at a lower priority the server and the storing thread get
    the CPU when they need it. 100,000 lines into PostgreSQL on 2 vCPUs,
    alternating runs: 3.23 s -> 3.15 s (lowered on any wait), 4.22 s -> 3.88 s
    (on a full batch's wait, a later day, medians of 6). Linux alone: its nice
    value is a thread's own, where elsewhere it would be the whole process's
    (or, by thread id, another process's). Lines at an agent's pace come in
    batches cut by pauses, full only if 1,000 lines or 8 MiB come within
    MAX_BATCH_WAIT, so an interactive stream keeps its priority even when
    storage stalls. A process cannot raise its priority again, so it stays
    lowered for the rest of this command.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        me = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, me, os.getpriority(os.PRIO_PROCESS, me) + READER_NICENESS)
    except OSError:
        pass  # not allowed here: no matter, only slower


def record_stream(
    memory: Memory,
    session_id: str,
    writer: Writer,
    fd: int,
    on_stored: Callable[[list[int]], None],
) -> StreamOutcome:
    """Validate and store JSON lines from ``fd``, committing batch by batch.

    ``on_stored`` receives the seqs of each committed batch, in input order:
    once it is called, those events are durable. It may be called on a
    thread other than the caller's.
    """
    limit = max_event_bytes()
    outcome = StreamOutcome()
    cleaned = Cleaned()
    lock = threading.Lock()  # outcome is shared with the storing thread

    def commit(good: Numbered, store: Callable[[], list[int]]) -> None:
        try:
            seqs = store()
        except BadInput:
            # The store refused one event of the batch (an id already used in
            # another session); the batch rolled back, so store one by one to
            # keep every other line.
            seqs = []
            for number, event in good:
                try:
                    seqs.extend(memory.store.append(session_id, [event], writer))
                except BadInput as error:
                    with lock:
                        outcome.errors.append((number, str(error)))
        on_stored(seqs)
        with lock:
            outcome.stored += len(seqs)

    committer = _Committer(commit)
    try:
        for batch in read_batches(fd, limit):
            with lock:
                good = _validate(batch, limit, cleaned, outcome)
            if good:
                events = [event for _, event in good]
                prepared = memory.store.prepare_append(session_id, events, writer)
                committer.submit(good, prepared, full=is_full(batch))
    finally:
        committer.finish()
    outcome.replaced = cleaned.replaced
    outcome.errors.sort()
    return outcome
