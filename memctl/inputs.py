"""Turning untrusted input into a ``NewEvent``, or a clear ``BadInput``.

Rules (documented in the README under "Bad input"):

* Unknown keys, wrong types, NaN/Infinity, nesting deeper than ``MAX_DEPTH`` and
  events larger than the size limit are refused with exit 2.
* NUL characters and lone UTF-16 surrogates are *normalised* to U+FFFD, on every
  backend alike: PostgreSQL cannot store either, and refusing a tool's output
  because it held one stray byte would lose the rest of it. The caller is told
  how many characters were replaced.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any

from .errors import BadInput
from .ids import normalise_ts
from .ledger import compact_json
from .models import ROLES, JsonObject, NewEvent

MAX_DEPTH = 64
DEFAULT_MAX_EVENT_BYTES = 1024 * 1024
MAX_ID_LENGTH = 200
MAX_TYPE_LENGTH = 100

EVENT_KEYS = frozenset(
    {
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
)
REPLACEMENT = "\ufffd"


def max_event_bytes() -> int:
    """The size limit for one event, from ``MEMCTL_MAX_EVENT_BYTES`` or 1 MiB."""
    raw = os.environ.get("MEMCTL_MAX_EVENT_BYTES")
    if not raw:
        return DEFAULT_MAX_EVENT_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise BadInput(f"MEMCTL_MAX_EVENT_BYTES must be a number of bytes, not {raw!r}") from None
    if value <= 0:
        raise BadInput("MEMCTL_MAX_EVENT_BYTES must be positive")
    return value


@dataclass
class Cleaned:
    """Counts what normalisation changed, so the caller can say so."""

    replaced: int = 0


def clean_text(text: str, cleaned: Cleaned) -> str:
    """Replace NUL and lone surrogates with U+FFFD."""
    if "\x00" in text:
        cleaned.replaced += text.count("\x00")
        text = text.replace("\x00", REPLACEMENT)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        fixed = []
        for char in text:
            if "\ud800" <= char <= "\udfff":
                cleaned.replaced += 1
                fixed.append(REPLACEMENT)
            else:
                fixed.append(char)
        text = "".join(fixed)
    return text


def _clean_json(value: Any, cleaned: Cleaned, depth: int, where: str) -> Any:
    """Validate and normalise a JSON value: depth, finite numbers, clean strings."""
    if depth > MAX_DEPTH:
        raise BadInput(f"{where} is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        return clean_text(value, cleaned)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadInput(f"{where} contains NaN or Infinity, which JSON does not allow")
        return value
    if isinstance(value, dict):
        return {
            clean_text(str(key), cleaned): _clean_json(item, cleaned, depth + 1, where)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_clean_json(item, cleaned, depth + 1, where) for item in value]
    raise BadInput(f"{where} holds a {type(value).__name__}, which is not JSON")


def clean_value(value: Any, what: str) -> Any:
    """Validate and normalise any JSON value (agent state, for one)."""
    return _clean_json(value, Cleaned(), 0, what)


def _optional_str(data: JsonObject, key: str, cleaned: Cleaned | None) -> str | None:
    """``data[key]``: absent, null or a string; cleaned unless ``cleaned`` is None (plain input)."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadInput(f"{key!r} must be a string, not {_json_type(value)}")
    return value if cleaned is None else clean_text(value, cleaned)


def _optional_object(data: JsonObject, key: str, cleaned: Cleaned | None) -> JsonObject | None:
    """``data[key]``: absent, null or an object; walked and cleaned unless input is plain."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadInput(f"{key!r} must be a JSON object, not {_json_type(value)}")
    if cleaned is None:
        return value
    result: JsonObject = _clean_json(value, cleaned, 1, key)
    return result


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else type(value).__name__


def event_from_mapping(
    data: Any, cleaned: Cleaned | None = None, *, plain: bool = False, chat_rules: bool = True
) -> NewEvent:
    """Validate one event given as a mapping (a JSON line, or library arguments).

    ``chat_rules=False`` lets a message break the chat API's tool rules (a
    tool result naming no call): the seed's listings save those, and the
    openai output copes with them.

    ``plain`` says the values are known to need no cleaning (``_is_plain``):
    no NUL or lone surrogate in any string, no nesting past ``MAX_DEPTH``, no
    non-finite number; the checks of keys, types and sizes still run.
    """
    if not isinstance(data, dict):
        raise BadInput(f"an event must be a JSON object, not {_json_type(data)}")
    # None from here on means: take the values as they are.
    if plain:
        cleaned = None
    elif cleaned is None:
        cleaned = Cleaned()
    unknown = sorted(set(data) - EVENT_KEYS)
    if unknown:
        raise BadInput(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"
            f" (allowed: {', '.join(sorted(EVENT_KEYS))})"
        )
    role = _optional_str(data, "role", cleaned)
    if role is not None and role not in ROLES:
        raise BadInput(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    event_type = _optional_str(data, "type", cleaned)
    if event_type is None:
        if role is None:
            raise BadInput("an event needs a 'role' (for a message) or a 'type'")
        event_type = "message"
    if not event_type or len(event_type) > MAX_TYPE_LENGTH:
        raise BadInput(f"type must be 1 to {MAX_TYPE_LENGTH} characters")
    if event_type == "message" and role is None:
        raise BadInput("a message needs a 'role'")
    tool_call = _optional_object(data, "tool_call", cleaned)
    if tool_call is not None:
        name = tool_call.get("name")
        if not isinstance(name, str) or not name:
            raise BadInput("'tool_call' needs a string 'name'")
        call_id = tool_call.get("id")
        if call_id is not None and not isinstance(call_id, str):
            raise BadInput("'tool_call.id' must be a string")
    tool_call_id = _optional_str(data, "tool_call_id", cleaned)
    if event_type == "message" and chat_rules:
        # What a chat API accepts back (resume --format openai): calls ride on
        # assistant messages, and a tool message names the call it answers.
        if tool_call is not None and role != "assistant":
            raise BadInput(f"'tool_call' belongs on an assistant message, not a {role} message")
        if role == "tool" and not tool_call_id:
            raise BadInput("a tool message needs the 'tool_call_id' of the call it answers")
        if tool_call_id is not None and role != "tool":
            raise BadInput(f"'tool_call_id' belongs on a tool message, not a {role} message")
    event_id = _optional_str(data, "id", cleaned)
    if event_id is not None and not 0 < len(event_id) <= MAX_ID_LENGTH:
        raise BadInput(f"'id' must be 1 to {MAX_ID_LENGTH} characters")
    ts = _optional_str(data, "ts", cleaned)
    if ts is not None:
        try:
            ts = normalise_ts(ts)
        except (OverflowError, ValueError):
            # A valid ISO time whose UTC form falls outside years 1-9999.
            raise BadInput(f"'ts' is out of range: {ts!r}") from None
    return NewEvent(
        type=event_type,
        role=role,
        content=_optional_str(data, "content", cleaned),
        tool_call=tool_call,
        tool_call_id=tool_call_id,
        payload=_optional_object(data, "payload", cleaned),
        id=event_id,
        ts=ts,
    )


def _refuse_constant(name: str) -> Any:
    raise BadInput(f"{name} is not valid JSON")


class _NotFinite(Exception):
    """A number literal too large for a float (1e999 would read as infinity)."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite
    return value


# One decoder for every line: json.loads with an option builds a new one per call.
# It refuses non-finite numbers as it reads them, so a plain line (_is_plain)
# needs no walk over its values afterwards.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def _is_plain(line: bytes) -> bool:
    """Whether a line that parsed (strictly, from UTF-8) needs no cleaning of its values.

    Valid UTF-8 holds no lone surrogate, and strict JSON allows no raw control
    character in a string, so a NUL or a surrogate can only come from a
    ``\\u`` escape; nesting cannot go deeper than the line has brackets.
    """
    return b"\\u" not in line and line.count(b"{") + line.count(b"[") <= MAX_DEPTH


def parse_json(text: str | bytes, what: str = "input") -> Any:
    """Parse JSON strictly: no NaN/Infinity, invalid UTF-8 and deep nesting refused."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInput(f"{what} is not valid UTF-8 (byte {exc.start})") from None
    try:
        return _decode(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{what} is not valid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise BadInput(f"{what} is nested deeper than {MAX_DEPTH} levels") from None
    except _NotFinite:
        raise BadInput(f"{what} contains NaN or Infinity, which JSON does not allow") from None
    except ValueError:
        # Python refuses integer literals longer than sys.get_int_max_str_digits().
        raise BadInput(f"{what} holds a number with too many digits") from None


def _decode(text: str) -> Any:
    """``_DECODER.decode(text)``, without its two whitespace matches when there is none.

    A JSON line seldom has whitespace around its value, and the matches were
    a third of the decoding time (100,000 agent messages: 144 -> 91 ms).
    """
    try:
        value, end = _DECODER.raw_decode(text)
    except json.JSONDecodeError:
        return _DECODER.decode(text)  # whitespace first, or not JSON: decode says which
    if end != len(text) and text[end:].strip(_JSON_SPACE):
        return _DECODER.decode(text)  # raises "Extra data" where it starts
    return value


# What JSON counts as whitespace (not Python's str.strip() default).
_JSON_SPACE = " \t\n\r"


def event_from_line(line: bytes | str, limit: int, cleaned: Cleaned | None = None) -> NewEvent:
    """Validate one JSON line of ``record``'s input."""
    if len(line) > limit:
        raise BadInput(f"event is larger than the limit of {limit} bytes (MEMCTL_MAX_EVENT_BYTES)")
    data = parse_json(line, "line")
    plain = isinstance(line, bytes) and _is_plain(line)
    return event_from_mapping(data, cleaned, plain=plain)


def check_size(event: NewEvent, limit: int) -> None:
    """Refuse an event whose stored form would exceed ``limit`` bytes."""
    if (
        event.tool_call is None
        and event.payload is None
        and 4 * (len(event.content or "") + len(event.tool_call_id or "")) <= limit
    ):
        return  # at most 4 bytes a character: small enough without encoding it
    size = sum(len((text or "").encode("utf-8")) for text in (event.content, event.tool_call_id))
    for value in (event.tool_call, event.payload):
        if value is not None:
            size += len(compact_json(value).encode("utf-8"))
    if size > limit:
        raise BadInput(
            f"event is larger than the limit of {limit} bytes (set MEMCTL_MAX_EVENT_BYTES to change it)"
        )


def parse_json_object_option(text: str, option: str) -> JsonObject:
    """Parse a ``--tool-call`` / ``--payload`` style option into a JSON object."""
    value = parse_json(text, option)
    if not isinstance(value, dict):
        raise BadInput(f"{option} must be a JSON object, not {_json_type(value)}")
    return value
