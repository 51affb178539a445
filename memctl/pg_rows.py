"""A batch of events as the inserts of ``pg_append`` take it: one jsonb array, or COPY lines.

A small batch travels as a single JSON array of rows (``encode``), each row
an array of text values in ``COLUMNS`` order, and the insert unpacks it with
``jsonb_array_elements(...) WITH ORDINALITY``: one parameter keeps an append
to one round trip whatever its size, and the encoding is ``json.dumps`` (C)
on the way out. psycopg's text-format arrays, the obvious alternative,
escape every element in Python, which cost about 40 µs an event here.

A large batch (a bulk import) is copied in (``pg_fast``). Its ``COPY`` data
is made whole when the batch is prepared, on the reader's thread, as a
template (``copy_template``) with a ``%d`` where each row's seq goes: the
seqs are fixed only by the claim, on the storing thread, which then fills
them in with one ``%`` and sends the result in one write. Made there line by
line, the data kept the server waiting about 2 ms a batch of 1,000.

The JSON columns (``tool_call``, ``payload``) travel as strings holding the
text ``ledger.dumps`` made, and are cast to ``json`` on insert, so the stored
text is exactly that, as on SQLite. ``search`` is the tsvector literal of
memctl's own tokens (``pg_search.event_vector``), cast with ``::tsvector``, so
a query finds the same events on both backends.
"""

from __future__ import annotations

from collections.abc import Sequence

from .ledger import compact_json, dumps
from .models import NewEvent
from .pg_search import event_vector

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


def copy_line(row: Row) -> str:
    """A row's values as the tab-separated fields of a ``COPY ... FROM STDIN`` text line."""
    return "\t".join([_copy_field(value) for value in row])


def _event_line(row: Row) -> str:
    """``copy_line`` of an event's row (``COLUMNS`` order), its search vector left as it is.

    A vector is quoted tokens, digits, colons and commas (``pg_search.vector_text``):
    nothing COPY would read as special, and the longest value to scan after the
    content. Skipping its scans took 100,000 rows from 185 to 140 ms.
    """
    event_id, ts, event_type, role, content, tool_call, tool_call_id, payload, search = row
    return "\t".join(
        (
            _copy_field(event_id),
            _copy_field(ts),
            _copy_field(event_type),
            _copy_field(role),
            _copy_field(content),
            _copy_field(tool_call),
            _copy_field(tool_call_id),
            _copy_field(payload),
            "\\N" if search is None else search,
        )
    )


def _copy_field(value: str | None) -> str:
    if value is None:
        return "\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return (
            value.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return value  # the common case: four scans, no copy


def copy_template(session_id: str, rows: Sequence[Row]) -> bytes:
    """The ``COPY`` data of ``rows`` in ``session_id``, each seq a ``%d`` placeholder.

    ``template % tuple(seqs)`` gives the data; every other ``%`` is doubled.
    A line holds no raw newline (``copy_line`` escapes them), so the prefix
    goes in front of each line with one ``replace``.
    """
    prefix = copy_line([session_id]).replace("%", "%%") + "\t%d\t"
    body = "\n".join([_event_line(row) for row in rows])
    if "%" in body:
        body = body.replace("%", "%%")
    return (prefix + body.replace("\n", "\n" + prefix) + "\n").encode("utf-8")


def encode(values: Sequence[Row] | Sequence[str]) -> str:
    """Rows (or a list of ids) as the text of one ``jsonb`` parameter."""
    return compact_json(values)
