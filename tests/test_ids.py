"""Ids: the format, time order and randomness that sessions and events rely on."""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest

from memctl.ids import new_id, new_ids, normalise_ts

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID = re.compile(rf"e_[{CROCKFORD}]{{26}}")


def _millis(identifier: str) -> int:
    """The time an id carries: its first 10 digits, base 32."""
    value = 0
    for digit in identifier.split("_", 1)[1][:10]:
        value = value * 32 + CROCKFORD.index(digit)
    return value


def test_ids_carry_the_time_and_a_random_tail() -> None:
    before = int(time.time() * 1000)
    ids = new_ids("e", 2_000)
    after = int(time.time() * 1000)
    assert all(ID.fullmatch(identifier) for identifier in ids)
    assert len(set(ids)) == len(ids)
    assert all(before <= _millis(identifier) <= after for identifier in ids)
    # Every digit turns up in the random part, each about as often as the others.
    counts = Counter("".join(identifier[-16:] for identifier in ids))
    assert set(counts) == set(CROCKFORD)
    expected = 16 * len(ids) / 32
    assert all(0.8 * expected < count < 1.2 * expected for count in counts.values())


def test_later_ids_sort_after_earlier_ones() -> None:
    first = new_id("e")
    time.sleep(0.002)
    second = new_ids("e", 3)
    assert all(first < identifier for identifier in second)
    assert new_id("s").startswith("s_")
    assert new_ids("e", 0) == []


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000000Z"),
        ("0999-12-31T23:59:59.5+00:00", "0999-12-31T23:59:59.500000Z"),
        ("2026-03-01T01:00:00+01:00", "2026-03-01T00:00:00.000000Z"),
    ],
)
def test_times_keep_four_digit_years(given: str, stored: str) -> None:
    """Every year prints with four digits, so stored times sort as text and parse back."""
    assert normalise_ts(given) == stored
    assert normalise_ts(stored) == stored
