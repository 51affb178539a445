"""Keeping PostgreSQL passwords out of everything memctl prints."""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(
    r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]*)(?=@)", re.I
)
_KEYWORD_PASSWORD = re.compile(r"(?P<head>password\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'|\S+)", re.I)


def redact_url(text: str) -> str:
    """Replace any password in a URL or libpq keyword string with ``***``."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + "***", text)
    return _KEYWORD_PASSWORD.sub(lambda m: m.group("head") + "***", text)


def scrub(text: str, secrets: list[str]) -> str:
    """Remove known secrets (and URL passwords) from an error message."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return redact_url(text)
