"""Profiles of memctl's side of a benchmark, printed after the table (``--profile``)."""

from __future__ import annotations

import cProfile
import io
import pstats
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence

TOP = 25


def profile_call(action: Callable[[], object], *, sort: str = "tottime", top: int = TOP) -> str:
    """cProfile ``action()``; the ``top`` functions by ``sort``, paths shortened."""
    profiler = cProfile.Profile()
    profiler.enable()
    action()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats(sort).print_stats(top)
    return _trim(out.getvalue())


def _trim(text: str) -> str:
    # Drop the preamble pstats prints before the table, and site-packages prefixes.
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    body = "\n".join(line.rstrip() for line in lines[start:] if line.strip())
    return re.sub(r"/\S*/(site-packages|lib/python3\.\d+)/", "", body)


def import_times(argv: Sequence[str], env: Mapping[str, str], top: int = 20) -> str:
    """``-X importtime`` of a process: the slowest imports by cumulative time.

    ``argv`` starts with the interpreter; the flag is inserted after it.
    """
    done = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]],
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=True,
    )
    rows: list[tuple[int, int, str]] = []
    for line in done.stderr.decode(errors="replace").splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if match:
            rows.append((int(match.group(2)), int(match.group(1)), match.group(4)))
    total = sum(own for _, own, _ in rows)
    rows.sort(reverse=True)
    lines = [
        f"all imports: {total / 1000:.1f} ms (self times summed)",
        "cumul ms   self ms  module",
    ]
    lines += [f"{cum / 1000:8.1f} {own / 1000:9.1f}  {name}" for cum, own, name in rows[:top]]
    return "\n".join(lines)
