"""A batch of events as one ``jsonb`` parameter, for the inserts of ``pg_append``.

A batch travels as a single JSON array of rows, each row an array of text
values in ``COLUMNS`` order, and the insert unpacks it with
``jsonb_array_elements(...) WITH ORDINALITY``. One parameter keeps an append
to one round trip whatever the batch size, and the encoding is
``json.dumps`` (C) on the way out and the server's JSON parser on the way
in: psycopg's text-format arrays, the obvious alternative, escape every
element in Python, which cost about 40 µs an event here, more than the
whole budget of a 30,000 events/s import.

The JSON columns (``tool_call``, ``payload``) travel as strings holding the
text ``ledger.dumps`` made, and are cast to ``json`` on insert, so the stored
text is exactly that, as on SQLite. ``search`` is the tsvector literal of
memctl's own tokens (``pg_search.event_vector``), cast with ``::tsvector``, so
a query finds the same events on both backends.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from .ledger import dumps
from .models import NewEvent
from .pg_search import event_vector

_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

# The stored columns of an event, in the order of a row's values.
COLUMNS = ("id", "ts", "type", "role", "content", "tool_call", "tool_call_id", "payload", "search")
Row = list[str | None]


def event_row(event: NewEvent, event_id: str, ts: str) -> Row:
    """An event's values in ``COLUMNS`` order."""
    return [
        event_id,
        ts,
        event.type,
        event.role,
        event.content,
        dumps(event.tool_call),
        event.tool_call_id,
        dumps(event.payload),
        event_vector(event.content, event.tool_call, event.payload),
    ]


def encode(values: Sequence[Row] | Sequence[str]) -> str:
    """Rows (or a list of ids) as the text of one ``jsonb`` parameter."""
    return _COMPACT.encode(values)
