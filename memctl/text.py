"""Making stored text safe to print, and compact plain-text forms of records.

Stored content is untrusted: an agent may have recorded a tool's raw output,
escape sequences and all. Nothing memctl prints for a person may let that
text move the cursor, retitle the window, hide lines or reorder them (bidi
overrides), so every control character is shown as a visible escape instead.
This module has no Rich import, so piped output stays cheap.
"""

from __future__ import annotations

import json
import re
from typing import Any

# C0 except tab and newline, DEL, C1, bidi marks/embeddings/overrides/isolates,
# line/paragraph separators and the zero-width marks used to spoof text.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_UNSAFE_WITH_NEWLINES = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]"
)
# Characters that json.dumps(ensure_ascii=False) leaves raw but that a
# terminal may still act on; escaping them keeps the JSON valid and inert.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\n":
        return "\\n"
    if char == "\t":
        return "\\t"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def sanitize(text: str | None, *, keep_newlines: bool = True) -> str:
    """Replace control characters with visible escapes such as ``\\x1b``."""
    if not text:
        return ""
    pattern = _UNSAFE if keep_newlines else _UNSAFE_WITH_NEWLINES
    return pattern.sub(_escape, text)


def counted(count: int, noun: str) -> str:
    """``1 message``, ``3 messages``: a count with its noun (regular plurals only)."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def one_line(text: str | None, width: int = 80) -> str:
    """A sanitised single-line preview, cut to ``width`` characters."""
    flat = sanitize(" ".join((text or "").split()), keep_newlines=False)
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def dumps(value: Any, *, indent: int | None = None) -> str:
    """JSON for stdout: UTF-8 kept readable, terminal-active characters escaped."""
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def tool_call_label(tool_call: dict[str, Any]) -> str:
    """``read_file({"path": "utils.py"})``: a tool call as one readable line."""
    arguments = tool_call.get("arguments")
    shown = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return one_line(f"{tool_call.get('name', '?')}({shown if arguments is not None else ''})", 200)
