"""Snippets: a short piece of an event's text around its matches, matches marked.

Backend-neutral: made in Python from the event's index text and the parsed
query, by memctl's own tokenizer, so a snippet marks exactly the tokens the
search matched (``client`` inside ``services/billing/client.py``, ``Résumé``
for ``resume``). SQLite has FTS5's ``snippet()``; PostgreSQL's ``ts_headline``
parses text its own way (a path is one token, diacritics stay) and would miss
those, so the PostgreSQL adapter uses this module. It follows ``snippet()``'s
shape: about ``SNIPPET_TOKENS`` tokens, an ellipsis where text was cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from itertools import accumulate, compress, count
from operator import add, methodcaller

from .search import _FOLD as FOLD_TABLE  # the tokenizer's own per-character table
from .search import MARK_END, MARK_START, AllOf, AnyOf, Node, Term, tokens

SNIPPET_TOKENS = 16
ELLIPSIS = "…"


class _ClassTable(dict[int, str]):
    """Each character as 'x' (part of a token, maybe dropped by folding) or ' ' (a separator)."""

    def __missing__(self, code: int) -> str:
        kind = " " if chr(code).translate(FOLD_TABLE) == " " else "x"
        self[code] = kind
        return kind


_CLASSES = _ClassTable()
_PLUS_ONE = (1).__add__


def _spans(text: str) -> tuple[list[tuple[int, int]], list[str]]:
    """The (start, end) offsets of ``text``'s tokens and the tokens, as ``search.tokens`` finds them.

    Runs of token characters are found on a same-length copy of the text
    (one class letter per character), so offsets stay those of the original;
    a tool output of a megabyte is tokenized at C speed.
    """
    if text.isascii():
        # Folding maps each ASCII character to one character, a separator to
        # a space: the folded text is its own class copy, and its pieces the tokens.
        pieces = text.translate(FOLD_TABLE).split(" ")
        lengths = list(map(len, pieces))
        starts = list(accumulate(map(_PLUS_ONE, lengths), initial=0))
        return list(compress(zip(starts, map(add, starts, lengths), strict=False), lengths)), [
            piece for piece in pieces if piece
        ]
    # The runs between separators, with offsets added up in C (itertools)
    # rather than a match object per token.
    lengths = list(map(len, text.translate(_CLASSES).split(" ")))
    # One start more than there are runs: the end of the text.
    starts = list(accumulate(map(_PLUS_ONE, lengths), initial=0))
    runs = list(compress(zip(starts, map(add, starts, lengths), strict=False), lengths))
    words = tokens(text)
    if len(words) == len(runs):
        return runs, words
    # Some run is made only of marks that folding drops, so it is no token.
    kept: list[tuple[int, int]] = []
    words = []
    for start, end in runs:
        folded = text[start:end].translate(FOLD_TABLE)
        if folded:
            kept.append((start, end))
            words.append(folded)
    return kept, words


@lru_cache(maxsize=64)
def _terms(node: Node) -> tuple[Term, ...]:
    """The terms whose matches are marked: everything but the excluded ones.

    Cached: a search makes a snippet for each of its hits with one query.
    """
    if isinstance(node, Term):
        return (node,)
    if isinstance(node, AnyOf):
        return tuple(term for item in node.items for term in _terms(item))
    assert isinstance(node, AllOf)
    return tuple(term for item in node.include for term in _terms(item))


@lru_cache(maxsize=64)
def _word_numbers(node: Node) -> dict[str, int] | None:
    """Each marked word's term number, when every term is one whole word; else None.

    The common query (``billing retry``) then marks a token by one lookup
    instead of a scan per term. A word named twice counts twice when the
    window is chosen, so that query takes the scan too.
    """
    numbers: dict[str, int] = {}
    for number, term in enumerate(_terms(node)):
        if term.prefix or len(term.tokens) != 1 or term.tokens[0] in numbers:
            return None
        numbers[term.tokens[0]] = number
    return numbers


def _matches(words: Sequence[str], term: Term) -> list[tuple[int, int]]:
    """(first, last) token indexes of each place ``term`` matches."""
    *head, last = term.tokens
    size = len(term.tokens)
    lead = head[0] if head else last
    test = lead.__eq__ if head or not term.prefix else methodcaller("startswith", lead)
    starts = list(compress(count(), map(test, words)))
    found = []
    for i in starts:
        end = i + size - 1
        if end >= len(words) or any(words[i + j] != want for j, want in enumerate(head)):
            continue
        word = words[end]
        if word == last or (term.prefix and word.startswith(last)):
            found.append((i, end))
    return found


def _scanned_hits(words: Sequence[str], node: Node) -> list[tuple[int, int, int]]:
    """(first, last, term number) of every match of every term, in token order."""
    return sorted(
        (first, last, number)
        for number, term in enumerate(_terms(node))
        for first, last in _matches(words, term)
    )


def _word_hits(words: Sequence[str], numbers: dict[str, int]) -> list[tuple[int, int, int]]:
    """``_scanned_hits`` when every term is one whole word: a lookup per token."""
    look = numbers.get
    return [(i, i, number) for i, word in enumerate(words) if (number := look(word)) is not None]


def _window(hits: Sequence[tuple[int, int, int]], size: int, width: int) -> int:
    """The first token of the ``width``-token window to show (hits sorted by position).

    The window holding the most distinct terms, then the most matches, wins
    (the earliest of equals), shifted so that its matches sit in the middle.
    """
    best: tuple[int, int] | None = None
    begin = 0
    count: dict[int, int] = {}
    j = 0
    for i, (first, _, _) in enumerate(hits):
        while j < len(hits) and hits[j][1] < first + width:
            count[hits[j][2]] = count.get(hits[j][2], 0) + 1
            j += 1
        score = (len(count), j - i)
        if j > i and (best is None or score > best):
            best = score
            low, high = first, max(hit[1] for hit in hits[i:j])
            begin = max(0, low - (width - (high - low + 1)) // 2)
        number = hits[i][2]
        if i < j:
            count[number] -= 1
            if not count[number]:
                del count[number]
    return max(0, min(begin, size - width))


def snippet(text: str, node: Node, width: int = SNIPPET_TOKENS) -> str:
    """About ``width`` tokens of ``text`` around its matches, matches between the markers.

    Like FTS5's ``snippet()``: an ellipsis shows where the text was cut, and
    text before the first or after the last token is kept when the window
    reaches it.
    """
    spans, words = _spans(text)
    if not spans:
        return text
    numbers = _word_numbers(node)
    hits = _scanned_hits(words, node) if numbers is None else _word_hits(words, numbers)
    begin = _window(hits, len(spans), width) if len(spans) > width else 0
    end = min(begin + width, len(spans)) - 1
    out: list[str] = []
    pos = 0 if begin == 0 else spans[begin][0]
    if begin > 0:
        out.append(ELLIPSIS)
    shown = [(f, last) for f, last, _ in hits if f >= begin and last <= end]
    # Single words neither overlap nor come out of order: nothing to merge.
    for first, last in shown if numbers is not None else _merge(shown):
        out.append(text[pos : spans[first][0]])
        out.append(MARK_START + text[spans[first][0] : spans[last][1]] + MARK_END)
        pos = spans[last][1]
    if end == len(spans) - 1:
        out.append(text[pos:])
    else:
        out.append(text[pos : spans[end][1]])
        out.append(ELLIPSIS)
    return "".join(out)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged
