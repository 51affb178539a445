"""Timing helpers: alternate two contenders, time whole processes, summarise."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence

# A contender runs once and returns the seconds its measured part took, so
# that set-up and tear-down stay outside the measurement.
Contender = Callable[[], float]


def alternate(first: Contender, second: Contender, rounds: int) -> tuple[list[float], list[float]]:
    """Run both contenders ``rounds`` times each, swapping who goes first every round.

    Alternating puts both under the same machine noise; swapping the order
    cancels any advantage of going first (a warm cache) or second.
    """
    a: list[float] = []
    b: list[float] = []
    for index in range(rounds):
        if index % 2 == 0:
            a.append(first())
            b.append(second())
        else:
            b.append(second())
            a.append(first())
    return a, b


def timed(action: Callable[[], object]) -> float:
    """Seconds taken by ``action()``."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float], scale: float = 1.0, fmt: str = "{:,.1f}") -> str:
    """``min-max`` of ``values`` times ``scale``, for the notes under the table."""
    return f"{fmt.format(min(values) * scale)}-{fmt.format(max(values) * scale)}"


def paired_ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Per-round ratios a/b: how much the verdict moves with the noise."""
    return [x / y for x, y in zip(a, b, strict=True) if y]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a measured process: no inherited memctl settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMCTL_")}
    env.update(extra)
    return env


class ProcessFailed(RuntimeError):
    """A measured process exited non-zero."""


def run_process(argv: Sequence[str], env: Mapping[str, str]) -> float:
    """Wall-clock seconds from spawning ``argv`` to its exit; output discarded.

    Both contenders of a process benchmark pay the same fork/exec cost here,
    so the ratio compares what each does once started.
    """
    start = time.perf_counter()
    done = subprocess.run(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise ProcessFailed(
            f"{' '.join(argv[:4])} ... exited {done.returncode}: "
            f"{done.stderr.decode(errors='replace').strip()[-500:]}"
        )
    return elapsed
