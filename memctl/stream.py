"""Reading JSON lines from a pipe in small, prompt batches.

``record`` promises that a line is durable within 100 ms of arriving. Lines
that arrive together are committed together (one transaction, so bulk imports
are fast); a lone line is committed as soon as no more input is waiting. A
line longer than the size limit is skipped as it streams past, never held in
memory whole.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import BadInput
from .inputs import Cleaned, check_size, event_from_line, max_event_bytes
from .models import NewEvent

if TYPE_CHECKING:
    from .core import Memory
    from .storage import Writer

# How long a batch may wait for more lines once it has one. Well under the
# 100 ms durability promise, long enough to gather a burst.
MAX_BATCH_WAIT = 0.02
MAX_BATCH_LINES = 1000
READ_SIZE = 1 << 16
UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Line:
    """One input line: its 1-based number, and its bytes (None if it was too long)."""

    number: int
    data: bytes | None


def read_batches(fd: int, limit: int) -> Iterator[list[Line]]:
    """Yield batches of complete lines from ``fd`` until end of input."""
    buffer = bytearray()
    skipping = False  # inside a line that is already over the limit
    number = 0
    batch: list[Line] = []
    batch_started = 0.0
    eof = False
    while not eof:
        if batch:
            waited = time.monotonic() - batch_started
            if waited >= MAX_BATCH_WAIT or len(batch) >= MAX_BATCH_LINES:
                yield batch
                batch = []
                continue
            ready, _, _ = select.select([fd], [], [], 0)
            if not ready:
                yield batch
                batch = []
                continue
        chunk = os.read(fd, READ_SIZE)
        if not chunk:
            eof = True
            if buffer or skipping:
                chunk = b"\n"  # a last line without a newline still counts
            else:
                break
        start = 0
        while True:
            newline = chunk.find(b"\n", start)
            piece = chunk[start:] if newline < 0 else chunk[start:newline]
            if not skipping:
                buffer += piece
                if len(buffer) > limit:
                    skipping = True
                    buffer.clear()
            if newline < 0:
                break
            number += 1
            if skipping:
                batch.append(Line(number, None))
            elif buffer.strip():
                batch.append(Line(number, bytes(buffer)))
            buffer.clear()
            skipping = False
            if len(batch) == 1:
                batch_started = time.monotonic()
            start = newline + 1
    if batch:
        yield batch


@dataclass
class StreamOutcome:
    """What a streamed ``record`` did: how many stored, which lines were bad."""

    stored: int = 0
    replaced: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


def record_stream(
    memory: Memory,
    session_id: str,
    writer: Writer,
    fd: int,
    on_stored: Callable[[list[int]], None],
) -> StreamOutcome:
    """Validate and store JSON lines from ``fd``, committing batch by batch.

    ``on_stored`` receives the seqs of each committed batch, in input order:
    once it is called, those events are durable.
    """
    limit = max_event_bytes()
    outcome = StreamOutcome()
    cleaned = Cleaned()
    for batch in read_batches(fd, limit):
        good: list[tuple[int, NewEvent]] = []
        for line in batch:
            if line.data is None:
                outcome.errors.append((line.number, f"larger than the limit of {limit} bytes"))
                continue
            data = line.data
            if line.number == 1 and data.startswith(UTF8_BOM):
                data = data[len(UTF8_BOM) :]  # written by some Windows tools; not content
            try:
                event = event_from_line(data, limit, cleaned)
                check_size(event, limit)
            except BadInput as error:
                outcome.errors.append((line.number, str(error)))
                continue
            good.append((line.number, event))
        if not good:
            continue
        try:
            seqs = memory.store.append(session_id, [event for _, event in good], writer)
        except BadInput:
            # The store refused one event of the batch (an id already used in
            # another session); the batch rolled back, so store one by one to
            # keep every other line.
            seqs = []
            for number, event in good:
                try:
                    seqs.extend(memory.store.append(session_id, [event], writer))
                except BadInput as error:
                    outcome.errors.append((number, str(error)))
        on_stored(seqs)
        outcome.stored += len(seqs)
    outcome.replaced = cleaned.replaced
    outcome.errors.sort()
    return outcome
