"""The types every benchmark shares: what it is given and what it reports."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class Config:
    """How this run was asked to behave, and where things are."""

    quick: bool
    profile: bool
    # A private scratch directory for this run, removed afterwards.
    workdir: Path
    # Where expensive datasets are cached between runs (outside the repo).
    cache_dir: Path
    python: Path = field(default_factory=lambda: Path(sys.executable))

    @property
    def memctl(self) -> Path:
        """The installed console script beside the running interpreter."""
        return self.python.with_name("memctl")

    def pick(self, full: int, quick: int) -> int:
        return quick if self.quick else full


@dataclass(frozen=True)
class Figure:
    """A measured median, with the unit it is shown in."""

    value: float
    unit: str  # "ev/s", "ms"

    def show(self) -> str:
        if self.unit == "ms":
            return f"{self.value:,.1f} ms" if self.value < 1000 else f"{self.value:,.0f} ms"
        return f"{self.value:,.0f} {self.unit}"


@dataclass(frozen=True)
class Target:
    """A bound on either the ratio memctl/reference or memctl's own figure."""

    op: Literal[">=", "<="]
    value: float
    on: Literal["ratio", "memctl"] = "ratio"

    def met(self, row: Row) -> bool:
        subject = row.ratio if self.on == "ratio" else row.memctl.value
        if subject is None:
            return False
        return subject >= self.value if self.op == ">=" else subject <= self.value

    def show(self, row: Row) -> str:
        unit = "x" if self.on == "ratio" else f" {row.memctl.unit}"
        return f"{self.op} {self.value:g}{unit}"


@dataclass(frozen=True)
class Row:
    """One line of the report: memctl against its reference, judged by a target.

    A row without a target is informational (shown as ``info``).
    """

    bench: str
    what: str
    memctl: Figure
    reference: Figure | None
    target: Target | None = None
    # How the figures were obtained and how much they varied; printed under the table.
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """memctl's figure over the reference's (higher is better for ev/s, lower for ms)."""
        if self.reference is None or self.reference.value == 0:
            return None
        return self.memctl.value / self.reference.value

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "info"
        return "PASS" if self.target.met(self) else "MISS"


@dataclass
class Outcome:
    """What a benchmark hands back: rows for the table, profiles to print after it."""

    rows: list[Row] = field(default_factory=list)
    profiles: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Benchmark:
    """An entry of the suite. ``run`` measures memctl and its reference together."""

    name: str
    summary: str
    run: Callable[[Config], Outcome]
