"""``memctl db copy``: move sessions and facts to another database.

The path for a team that outgrows one machine (SQLite to PostgreSQL), and
back. Sessions keep their ids, seqs, timestamps and checkpoints; facts keep
their ids and history. Safe to re-run: what the target already has is
skipped. At the end the target's counts are checked against the source.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .errors import MemctlError
from .storage import Store

CHUNK = 1000


class CopyMismatch(MemctlError):
    """The copy's counts do not match the source."""


@dataclass
class CopyReport:
    """What a copy did."""

    sessions: int = 0
    events: int = 0
    events_added: int = 0
    facts: int = 0
    facts_added: int = 0
    # Forgotten facts: only their history (actions and times, no text) goes across.
    forgotten: int = 0
    problems: list[str] = field(default_factory=list)


def copy_database(
    source: Store,
    target: Store,
    session_ids: Sequence[str] | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> CopyReport:
    """Copy ``session_ids`` (default: every session, and every fact) from source to target."""
    report = CopyReport()
    infos = [source.get_session(sid) for sid in session_ids] if session_ids else source.sessions()
    sessions = [info for info in infos if info is not None]
    total = sum(info.events for info in sessions)
    done = 0
    for info in sessions:
        events = source.events(info.id)
        checkpoints = source.checkpoints(info.id)
        for start in range(0, max(len(events), 1), CHUNK):
            chunk = events[start : start + CHUNK]
            last = start + CHUNK >= len(events)
            # Checkpoints go with the last chunk, so each lands after its seq.
            report.events_added += target.import_session(info, chunk, checkpoints if last else [])
            done += len(chunk)
            if progress:
                progress(done, total)
        report.sessions += 1
        report.events += len(events)
        copied = target.get_session(info.id)
        if copied is None or copied.events != len(events):
            report.problems.append(
                f"session {info.id}: source has {len(events)} events, "
                f"target {copied.events if copied else 0}"
            )
    if not session_ids:
        for fact_id in source.fact_ids():
            fact = source.get_fact(fact_id)
            added = target.import_fact(fact, source.fact_history(fact_id))
            if fact is None:
                report.forgotten += 1
            else:
                report.facts += 1
                if added:
                    report.facts_added += 1
    if report.problems:
        raise CopyMismatch("; ".join(report.problems))
    return report
