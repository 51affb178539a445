"""The report: one table of ratios against targets, then notes and profiles."""

from __future__ import annotations

import json
import platform
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .registry import Row

HEADERS = ("benchmark", "what", "memctl", "reference", "ratio", "target", "result")


def cells(row: Row) -> tuple[str, ...]:
    ratio = row.ratio
    return (
        row.bench,
        row.what,
        row.memctl.show(),
        row.reference.show() if row.reference else "-",
        f"{ratio:.2f}x" if ratio is not None else "-",
        row.target.show(row) if row.target else "-",
        row.verdict,
    )


def table(rows: Sequence[Row], crashed: Sequence[str], out: TextIO) -> None:
    body = [cells(row) for row in rows] + [
        (name, "crashed (traceback above)", "-", "-", "-", "-", "CRASH") for name in crashed
    ]
    widths = [max(len(line[i]) for line in [HEADERS, *body]) for i in range(len(HEADERS))]
    # Figures and ratios read best right-aligned; names and words left.
    right = {2, 3, 4}

    def fmt(line: Sequence[str]) -> str:
        return "  ".join(
            value.rjust(width) if i in right else value.ljust(width)
            for i, (value, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()

    out.write(fmt(HEADERS) + "\n")
    out.write("  ".join("-" * width for width in widths) + "\n")
    for line in body:
        out.write(fmt(line) + "\n")
    out.write("\nratio = memctl / reference (medians): for ev/s higher is better, for ms lower.\n")
    notes = [(row.bench, row.note) for row in rows if row.note]
    if notes:
        out.write("\nnotes:\n")
        for bench, note in notes:
            out.write(f"  {bench}: {note}\n")


def environment() -> str:
    return (
        f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
        f"{platform.system()} {platform.machine()}"
    )


def write_json(path: Path, rows: Sequence[Row], crashed: Sequence[str]) -> None:
    """The same figures for tools (the README's table, trend tracking)."""
    data: dict[str, Any] = {
        "environment": environment(),
        "argv": sys.argv[1:],
        "rows": [
            {
                "bench": row.bench,
                "what": row.what,
                "memctl": {"value": row.memctl.value, "unit": row.memctl.unit},
                "reference": (
                    {"value": row.reference.value, "unit": row.reference.unit}
                    if row.reference
                    else None
                ),
                "ratio": row.ratio,
                "target": row.target.show(row) if row.target else None,
                "result": row.verdict,
                "note": row.note,
            }
            for row in rows
        ],
        "crashed": list(crashed),
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
