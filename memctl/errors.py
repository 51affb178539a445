"""Errors that memctl raises on purpose, each carrying its exit code.

The command line has one error boundary (``cli.main``) that prints ``str(error)``
and exits with ``error.exit_code``; the library raises the same classes, so a
Python caller can catch ``memctl.MemctlError`` or any subclass.
"""

from __future__ import annotations


class MemctlError(Exception):
    """Unexpected memctl error."""

    exit_code = 1

    def __init__(self, message: str | None = None) -> None:
        # The class docstring is the default message, so ``raise SessionNotFound()``
        # still says something useful.
        super().__init__(message or (self.__doc__ or "memctl error").strip())


class BadInput(MemctlError):
    """Invalid input."""

    exit_code = 2


class NotFound(MemctlError):
    """Not found."""

    exit_code = 3


class SessionNotFound(NotFound):
    """No such session."""


class AmbiguousSession(BadInput):
    """That session prefix matches more than one session."""


class NothingToRecover(MemctlError):
    """No incomplete sessions to recover."""

    exit_code = 4


class StorageUnavailable(MemctlError):
    """The database is unavailable."""

    exit_code = 5


class SchemaTooNew(StorageUnavailable):
    """The database was written by a newer memctl; upgrade memctl to use it."""


class MemoryClosed(MemctlError):
    """This Memory was closed; open the database again with memctl.open()."""


class Conflict(MemctlError):
    """Conflict with another process."""

    exit_code = 6


def session_exists(session_id: str) -> Conflict:
    """What every adapter raises when asked to create a session that exists."""
    return Conflict(
        f"session {session_id} already exists; continue it with 'memctl resume {session_id}' "
        f"(or 'memctl run --resume {session_id} -- CMD')"
    )


class SessionOwned(Conflict):
    """The session is owned by a live process."""


class FencedOut(Conflict):
    """Another process has claimed this session; this writer was fenced out."""


EXIT_OK = 0
