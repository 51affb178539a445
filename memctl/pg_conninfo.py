"""PostgreSQL URLs: memctl's own options, and keeping the password out of sight.

No psycopg import here: this is plain string work, done before (and after) a
connection attempt, so it must cope with URLs that libpq would reject.

memctl reads two query parameters itself and removes them before libpq sees
the URL (libpq refuses parameters it does not know):

``pool=N``
    keep a ``psycopg_pool`` pool of up to N connections (``pool=true``: 4)
    instead of one connection; for long-lived, multi-threaded library users.
``prepare_threshold=N``
    let psycopg prepare a statement after N unprepared uses (default 1: from
    its second use, so a one-shot command never pays for preparing), or
    ``off``. A prepared append costs the server about half as much as one
    planned afresh. Transaction-pooling proxies (pgbouncer before 1.21, or
    without ``max_prepared_statements``) cannot route prepared statements:
    ``pg_connect`` notices the error they cause and turns preparing off, and
    ``prepare_threshold=off`` avoids the one failed attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from .errors import BadInput
from .redact import redact_url, scrub

DEFAULT_POOL_SIZE = 4
DEFAULT_PREPARE_THRESHOLD = 1
_OWN_PARAMS = ("pool", "prepare_threshold")


@dataclass(frozen=True)
class PgTarget:
    """A PostgreSQL URL split into what libpq gets and what memctl keeps."""

    conninfo: str
    pool_size: int | None
    prepare_threshold: int | None
    secrets: tuple[str, ...]
    safe: str


def parse_target(url: str) -> PgTarget:
    """Strip memctl's own parameters; remember the password only to scrub it."""
    secrets = password_candidates(url)
    safe = redact(url, secrets)
    conninfo, own = _split_own_params(url)
    pool_size = _pool_size(own.get("pool"), safe)
    threshold = _prepare_threshold(own.get("prepare_threshold"), safe)
    return PgTarget(conninfo, pool_size, threshold, secrets, safe)


def password_candidates(url: str) -> tuple[str, ...]:
    """Every string that may be the URL's password, raw and percent-decoded.

    Found by plain string slicing, not a URL parser, so that a URL malformed
    elsewhere (the very case where libpq quotes it back) still yields its
    password. Over-matching only scrubs a little too much.
    """
    found: set[str] = set()
    _, sep, rest = url.partition("://")
    if sep:
        for at in {rest.find("@"), rest.rfind("@")}:
            if at <= 0:
                continue
            user_info = rest[:at]
            if ":" in user_info:
                found.add(user_info.split(":", 1)[1])
    _, _, query = url.partition("?")
    for item in query.split("&"):
        key, eq, value = item.partition("=")
        if eq and key.strip().lower() == "password":
            found.add(value)
    for value in list(found):
        found.add(unquote(value))
    return tuple(sorted((value for value in found if value), key=len, reverse=True))


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every known secret and any URL password replaced by ``***``."""
    return redact_url(scrub(text, list(secrets)))


def one_line(message: str, secrets: tuple[str, ...]) -> str:
    """A driver error as one scrubbed line (libpq adds hints on indented lines)."""
    return " ".join(redact(message, secrets).split()) or "connection failed"


# SQLSTATE invalid_schema_name: CREATE TABLE with no schema of the
# search_path in existence ("no schema has been selected to create in").
_NO_SCHEMA = "3F000"


def migration_failure(error: Exception, secrets: tuple[str, ...]) -> str:
    """Why a migration failed, in one line a person can act on, with no SQL quoted."""
    diag = getattr(error, "diag", None)
    if getattr(diag, "sqlstate", None) == _NO_SCHEMA:
        return (
            "no schema named in the search_path exists: create it (CREATE SCHEMA name) "
            "or fix -csearch_path in the URL's options"
        )
    # The server's own message without the statement it quotes ("LINE 1: ...").
    primary = getattr(diag, "message_primary", None)
    return one_line(primary if isinstance(primary, str) and primary else str(error), secrets)


def _split_own_params(url: str) -> tuple[str, dict[str, str]]:
    base, sep, query = url.partition("?")
    if not sep:
        return url, {}
    kept: list[str] = []
    own: dict[str, str] = {}
    for item in query.split("&"):
        key = item.partition("=")[0]
        if key in _OWN_PARAMS:
            own[key] = item.partition("=")[2]
        elif item:
            kept.append(item)
    return (base + "?" + "&".join(kept) if kept else base), own


def _pool_size(raw: str | None, where: str) -> int | None:
    if raw is None or raw.lower() in ("", "0", "false", "no", "off"):
        return None
    if raw.lower() in ("1", "true", "yes", "on"):
        return DEFAULT_POOL_SIZE if raw.lower() != "1" else 1
    return _int_param(raw, "pool", where)


def _prepare_threshold(raw: str | None, where: str) -> int | None:
    """psycopg's ``prepare_threshold``: memctl's default when absent, None for off."""
    if raw is None:
        return DEFAULT_PREPARE_THRESHOLD
    if raw.lower() in ("", "none", "off", "false", "no"):
        return None
    return _int_param(raw, "prepare_threshold", where)


def _int_param(raw: str | None, name: str, where: str) -> int | None:
    if raw is None or raw.lower() in ("", "none", "off"):
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise BadInput(f"{name} must be a whole number in {where}, not {raw!r}")
    return value
