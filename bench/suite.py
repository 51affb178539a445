"""The benchmarks, in the order ``make bench`` runs them.

To add one (PostgreSQL append vs raw psycopg, JSONL import, search over a
million events...), write a module with a ``run(config) -> Outcome`` that
measures memctl and its reference in the same run, and list its
``BENCHMARK`` here.
"""

from __future__ import annotations

from . import (
    cli_record,
    pg_append,
    pg_import,
    pg_resume,
    record_latency,
    search_pg,
    search_sqlite,
    sqlite_append,
    sqlite_resume,
)
from .registry import Benchmark

BENCHMARKS: list[Benchmark] = [
    sqlite_append.BENCHMARK,
    cli_record.BENCHMARK,
    record_latency.BENCHMARK,
    sqlite_resume.BENCHMARK,
    search_sqlite.BENCHMARK,
    pg_append.BENCHMARK,
    pg_import.BENCHMARK,
    pg_resume.BENCHMARK,
    search_pg.BENCHMARK,
]


def select(names: list[str]) -> list[Benchmark]:
    """The benchmarks named (exactly, or by a prefix such as ``sqlite``), in suite order."""
    if not names:
        return list(BENCHMARKS)
    chosen = [b for b in BENCHMARKS if any(b.name == n or b.name.startswith(n) for n in names)]
    unknown = [n for n in names if not any(b.name.startswith(n) for b in BENCHMARKS)]
    if unknown:
        known = ", ".join(b.name for b in BENCHMARKS)
        raise ValueError(f"unknown benchmark {', '.join(unknown)} (known: {known})")
    return chosen
