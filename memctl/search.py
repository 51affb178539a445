"""memctl's one search language, and what gets indexed, independent of any backend.

A query is parsed here into a small AST and translated for each backend
(``to_fts5`` for SQLite, ``to_tsquery`` for PostgreSQL), so the same text means
the same search everywhere and no user text ever reaches a backend's own query
syntax: every word is reduced to tokens made only of letters, digits and marks,
and the translators emit those tokens inside quotes with operators of their
own choosing. The strings they return are bound as parameters, never
formatted into SQL.

The language::

    billing retry        both words (AND is implicit)
    "retry budget"       a phrase: the words next to each other, in order
    retr*                a prefix ("retry", "retries"...); "retry bud"* too
    retry OR backoff     either; OR binds tighter than the implicit AND, so
                         ``billing retry OR backoff`` is billing AND (retry OR backoff)
    (a b) OR c           parentheses group
    -flaky  -"dry run"   exclude (needs at least one word that is not excluded)

Anything else is literal: punctuation separates words exactly as it does in
the indexed text (``utils.py`` is the phrase "utils py", ``user_id`` the
phrase "user id"), ``AND``/``NOT``/``NEAR``/lower-case ``or`` are plain words,
and an unbalanced quote or parenthesis closes at the end of the query.

Tokens follow SQLite FTS5's ``unicode61`` tokenizer as configured by
``FTS5_TOKENIZER`` (the tests compare the two on every code point of planes
0-2): token characters are Unicode letters, numbers, marks, private-use and
unassigned code points; everything else (punctuation, symbols, spaces,
underscore, emoji) separates tokens; tokens are case-folded and the Latin
diacritics are removed (``Résumé`` -> ``resume``). Compatibility forms are
*not* folded (``ﬁ`` and full-width letters stay as they are) because unicode61
does not fold them, and PostgreSQL indexes these same Python tokens. The only
disagreements left are about 2,800 code points assigned or case-paired after
Unicode 6.1, which unicode61 keeps verbatim inside a token.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Union

from .errors import BadInput

MAX_QUERY_CHARS = 1000
MAX_QUERY_TOKENS = 64
MAX_GROUP_DEPTH = 16

# The tokenizer the SQLite index is built with. Marks (M*) are token
# characters so that Indic, Arabic or Hebrew words are not cut at every vowel
# sign; unicode61's default ("L* N* Co") would split them.
# The emoji/text presentation selectors are marks too, but would make a junk
# token after every "⚠️", so they separate instead.
FTS5_TOKENIZER = "unicode61 remove_diacritics 2 categories 'L* N* Co M*' separators '\ufe0e\ufe0f'"

# Private markers around matches in snippets; index_text removes them from
# indexed text so a stored one can never be mistaken for a match.
MARK_START = "\x02"
MARK_END = "\x03"

# The combining marks that unicode61's remove_diacritics drops (measured
# against SQLite 3.40 over every code point). Other marks stay in tokens.
_DROPPED_MARKS = frozenset(
    "\u0300\u0301\u0302\u0303\u0304\u0306\u0307\u0308\u0309\u030a\u030b\u030c"
    "\u030f\u0311\u031b\u0323\u0324\u0325\u0326\u0327\u0328\u032d\u032e\u0330\u0331"
)


# Emoji skin-tone modifiers came after Unicode 6.1; unicode61 treats them as
# token characters, like every code point its tables do not know.
_EMOJI_TONES = frozenset("\U0001f3fb\U0001f3fc\U0001f3fd\U0001f3fe\U0001f3ff")
# The presentation selectors, declared separators in FTS5_TOKENIZER, and the
# two BMP noncharacters, which unicode61 treats as separators.
_SELECTORS = frozenset("\ufe0e\ufe0f\ufffe\uffff")


def _fold(char: str) -> str:
    """What one character contributes to a token: '' (dropped), ' ' (separator) or text."""
    category = unicodedata.category(char)
    if category[0] not in "LNM" and category not in ("Co", "Cn") and char not in _EMOJI_TONES:
        return " "
    if char in _SELECTORS:
        return " "
    if char in _DROPPED_MARKS:
        return ""
    if char in "\u01e0\u01e1":
        return "\u01e1"  # the one letter unicode61 lower-cases but keeps its diacritics on
    # casefold() gives the simple fold unicode61 uses (final sigma -> sigma)
    # except where it expands (ß -> ss), which unicode61 does not do.
    folded = char.casefold()
    if len(folded) != 1:
        folded = char.lower()
    decomposed = unicodedata.normalize("NFD", folded)
    # unicode61 strips diacritics only down to an ASCII base letter (é -> e,
    # ǖ -> u) and leaves Greek tonos and the like in place.
    if (
        len(decomposed) > 1
        and decomposed[0] < "\x80"
        and all(mark in _DROPPED_MARKS for mark in decomposed[1:])
    ):
        return decomposed[0]
    return "".join(c for c in folded if c not in _DROPPED_MARKS)


class _FoldTable(dict[int, str]):
    """A str.translate table filled on first sight of each code point."""

    def __missing__(self, code: int) -> str:
        folded = _fold(chr(code))
        self[code] = folded
        return folded


_FOLD = _FoldTable()

# ASCII text, most of what agents write, folds through a byte table instead:
# str.translate looks each character up in _FOLD, bytes.translate indexes an
# array (tokens of 100,000 agent messages: 215 -> 155 ms). The table is
# _fold's own answer for each ASCII character, one character each.
_ASCII_FOLD = bytes(range(128)).decode("ascii").translate(_FOLD).encode("ascii")
if len(_ASCII_FOLD) != 128:  # the fast path's premise: one character each
    raise RuntimeError("an ASCII character does not fold to exactly one character")
_ASCII_FOLD += bytes(range(128, 256))


def tokens(text: str) -> list[str]:
    """The search tokens of ``text``, as both the index and queries see them."""
    # Separators become spaces and token characters never fold to whitespace,
    # so split() yields exactly the maximal runs of token characters.
    if text.isascii():  # a flag of the str, not a scan
        return text.encode("ascii").translate(_ASCII_FOLD).decode("ascii").split()
    return text.translate(_FOLD).split()


# -- what gets indexed -----------------------------------------------------


def _scalar_strings(value: Any) -> Iterator[str]:
    """String and number values found anywhere inside ``value``; never keys."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, bool) or item is None:
            continue  # true/false/null are structure, not something said
        elif isinstance(item, (int, float)):
            yield repr(item)
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))


def _arguments(arguments: Any) -> Any:
    # OpenAI-style tool calls carry their arguments as a JSON string; index
    # its values rather than its keys and braces.
    if isinstance(arguments, str):
        try:
            decoded = json.loads(arguments)
        except ValueError:
            return arguments
        if isinstance(decoded, (dict, list)):
            return decoded
    return arguments


_MARKERS = {ord(MARK_START): " ", ord(MARK_END): " ", 0: " "}


def index_text(
    content: str | None, tool_call: dict[str, Any] | None, payload: dict[str, Any] | None
) -> str:
    """The text indexed for one event, one piece a line.

    Message content, the tool call's name and every string or number value of
    its arguments, then every string or number value of the payload. JSON
    keys, ids (``tool_call.id``) and booleans/nulls are left out, so searching
    for ``path`` does not find every ``{"path": ...}``. Numbers are indexed as
    their JSON text (``8080``, ``2.5`` is the phrase "2 5").
    """
    # Markers and NUL are separators for the tokenizer anyway; replacing them
    # keeps the tokens the same and the snippet markers unambiguous. Looked
    # for first: three scans cost less than translating every text.
    text = raw_index_text(content, tool_call, payload)
    if MARK_START in text or MARK_END in text or "\x00" in text:
        return text.translate(_MARKERS)
    return text


def raw_index_text(
    content: str | None, tool_call: dict[str, Any] | None, payload: dict[str, Any] | None
) -> str:
    """``index_text`` with any snippet markers left in: the same tokens, for indexing only."""
    if content and not tool_call and not payload:
        return content  # most events: a message
    parts: list[str] = []
    if content:
        parts.append(content)
    if tool_call:
        name = tool_call.get("name")
        if isinstance(name, str):
            parts.append(name)
        parts.extend(_scalar_strings(_arguments(tool_call.get("arguments"))))
    if payload:
        parts.extend(_scalar_strings(payload))
    return "\n".join(parts)


# -- the AST ---------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """One word (one token) or a phrase (several, adjacent and in order)."""

    tokens: tuple[str, ...]
    # The last token is a prefix.
    prefix: bool = False


@dataclass(frozen=True)
class AnyOf:
    """At least one of ``items`` (OR); always two or more."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class AllOf:
    """Every one of ``include`` and none of ``exclude``.

    ``include`` is never empty in a tree that ``parse`` returns.
    """

    include: tuple[Node, ...]
    exclude: tuple[Node, ...] = ()


Node = Union[Term, AnyOf, AllOf]


# -- parsing ---------------------------------------------------------------

# Lexemes: ("word", text, prefix), ("phrase", text, prefix), ("or",), ("(",),
# (")",), ("-",). A "-" only ever directly precedes the item it negates.
_Lexeme = tuple[Any, ...]


def _lex(query: str) -> list[_Lexeme]:
    out: list[_Lexeme] = []
    i, n = 0, len(query)
    while i < n:
        char = query[i]
        if char.isspace():
            i += 1
        elif char == '"':
            end = query.find('"', i + 1)
            end = n if end < 0 else end
            text = query[i + 1 : end]
            i = end + 1
            prefix = i < n and query[i] == "*"
            while i < n and query[i] == "*":
                i += 1
            out.append(("phrase", text, prefix))
        elif char in "()":
            out.append((char,))
            i += 1
        elif char == "-" and i + 1 < n and not query[i + 1].isspace() and query[i + 1] not in "-)":
            out.append(("-",))
            i += 1
        else:
            start = i
            while i < n and not query[i].isspace() and query[i] not in '"()':
                i += 1
            word = query[start:i]
            if word == "OR":
                out.append(("or",))
            else:
                stripped = word.rstrip("*")
                out.append(("word", stripped, stripped != word))
    return out


class _Parser:
    """Recursive descent over lexemes; tolerant of anything a person might type."""

    def __init__(self, lexemes: list[_Lexeme]) -> None:
        self.lexemes = lexemes
        self.pos = 0
        self.depth = 0

    def peek(self, offset: int = 0) -> _Lexeme | None:
        index = self.pos + offset
        return self.lexemes[index] if index < len(self.lexemes) else None

    def starts_item(self, lexeme: _Lexeme | None) -> bool:
        return lexeme is not None and lexeme[0] in ("word", "phrase", "(", "-")

    def parse_all(self, *, inside_group: bool) -> Node | None:
        include: list[Node] = []
        exclude: list[Node] = []
        while True:
            lexeme = self.peek()
            if lexeme is None:
                break
            if lexeme[0] == ")":
                self.pos += 1
                if inside_group:
                    break
                continue  # an unmatched ")" is punctuation
            negated, node = self.parse_any()
            if node is None:
                continue
            if negated and _only_excludes(node):
                raise BadInput(_ONLY_EXCLUDED)
            (exclude if negated else include).append(node)
        return _all_of(include, exclude)

    def parse_any(self) -> tuple[bool, Node | None]:
        items = [self.parse_unary()]
        # OR is an operator only between two items; elsewhere it is the word "or".
        while self.peek() == ("or",) and self.starts_item(self.peek(1)):
            self.pos += 1
            items.append(self.parse_unary())
        if len(items) == 1:
            return items[0]
        if any(node is not None and (negated or _only_excludes(node)) for negated, node in items):
            raise BadInput(
                "cannot combine OR with an excluded term (-word); "
                'exclude outside the OR instead: (a OR b) -c, or search for "-word" in quotes'
            )
        kept = tuple(node for _, node in items if node is not None)
        if not kept:
            return False, None
        return False, (kept[0] if len(kept) == 1 else AnyOf(_flatten_any(kept)))

    def parse_unary(self) -> tuple[bool, Node | None]:
        negated = False
        if self.peek() == ("-",):
            negated = True
            self.pos += 1
        lexeme = self.peek()
        assert lexeme is not None  # "-" is only lexed before a non-space character
        self.pos += 1
        kind = lexeme[0]
        if kind == "(":
            self.depth += 1
            if self.depth > MAX_GROUP_DEPTH:
                raise BadInput(f"query nests parentheses too deeply (at most {MAX_GROUP_DEPTH})")
            node = self.parse_all(inside_group=True)
            self.depth -= 1
            return negated, node
        if kind == "or":
            return negated, Term(("or",))
        if kind == ")":
            return negated, None
        words = tuple(tokens(lexeme[1]))
        return negated, (Term(words, bool(lexeme[2])) if words else None)


def _flatten_any(items: tuple[Node, ...]) -> tuple[Node, ...]:
    flat: list[Node] = []
    for item in items:
        flat.extend(item.items if isinstance(item, AnyOf) else (item,))
    return tuple(flat)


_ONLY_EXCLUDED = (
    "nothing to search for: a query needs at least one word that is not excluded with '-'"
)


def _only_excludes(node: Node) -> bool:
    return isinstance(node, AllOf) and not node.include


def _all_of(include: list[Node], exclude: list[Node]) -> Node | None:
    """An AND list; inside a group it may still lack positive terms (the parent has them)."""
    # A group inside an AND list merges into it: a (b -c) is a b -c.
    flat_include: list[Node] = []
    flat_exclude = list(exclude)
    for node in include:
        if isinstance(node, AllOf):
            flat_include.extend(node.include)
            flat_exclude.extend(node.exclude)
        else:
            flat_include.append(node)
    if not flat_include and not flat_exclude:
        return None
    if not flat_exclude and len(flat_include) == 1:
        return flat_include[0]
    return AllOf(tuple(flat_include), tuple(flat_exclude))


def query_words(node: Node) -> list[str]:
    """Every token of the query, the excluded ones too."""
    if isinstance(node, Term):
        return list(node.tokens)
    items = node.items if isinstance(node, AnyOf) else (*node.include, *node.exclude)
    return [word for item in items for word in query_words(item)]


def parse(query: str) -> Node:
    """Parse ``query``; BadInput when there is nothing to search for or it is too big."""
    normalised = " ".join(query.split())
    if len(normalised) > MAX_QUERY_CHARS:
        raise BadInput(f"query too long ({len(normalised)} characters; at most {MAX_QUERY_CHARS})")
    node = _Parser(_lex(normalised)).parse_all(inside_group=False)
    if node is None:
        raise BadInput("nothing to search for: the query has no letters or digits")
    if _only_excludes(node):
        raise BadInput(_ONLY_EXCLUDED)
    count = len(query_words(node))
    if count > MAX_QUERY_TOKENS:
        raise BadInput(f"query has too many words ({count}; at most {MAX_QUERY_TOKENS})")
    return node


# -- translators -----------------------------------------------------------


def to_fts5(node: Node) -> str:
    """An FTS5 MATCH expression; every token is inside double quotes, so none is an operator."""
    if isinstance(node, Term):
        return f'"{" ".join(node.tokens)}"' + ("*" if node.prefix else "")
    if isinstance(node, AnyOf):
        return "(" + " OR ".join(to_fts5(item) for item in node.items) + ")"
    positive = "(" + " AND ".join(to_fts5(item) for item in node.include) + ")"
    if not node.exclude:
        return positive
    # FTS5's NOT is binary (left NOT right), so all exclusions go on the right.
    return f"({positive} NOT ({' OR '.join(to_fts5(item) for item in node.exclude)}))"


def to_tsquery(node: Node) -> str:
    """A PostgreSQL tsquery literal (bound as ``CAST(%s AS tsquery)``).

    Lexemes are quoted; they hold only letters, digits and marks, so no
    quote, backslash or operator can occur inside one.
    """
    if isinstance(node, Term):
        parts = [f"'{token}'" for token in node.tokens]
        if node.prefix:
            parts[-1] += ":*"
        return parts[0] if len(parts) == 1 else "(" + " <-> ".join(parts) + ")"
    if isinstance(node, AnyOf):
        return "(" + " | ".join(to_tsquery(item) for item in node.items) + ")"
    terms = [to_tsquery(item) for item in node.include]
    terms += [f"!{to_tsquery(item)}" for item in node.exclude]
    return "(" + " & ".join(terms) + ")"


# -- hits and snippets -----------------------------------------------------


def mark_json(snippet: str) -> str:
    """A snippet for JSON: matches between ``[`` and ``]``."""
    return snippet.replace(MARK_START, "[").replace(MARK_END, "]")


def highlight_spans(snippet: str) -> tuple[str, list[tuple[int, int]]]:
    """A snippet as plain text plus the (start, end) offsets of its matches, for a terminal."""
    text: list[str] = []
    spans: list[tuple[int, int]] = []
    length = 0
    start: int | None = None
    for char in snippet:
        if char == MARK_START:
            start = length
        elif char == MARK_END:
            if start is not None and start < length:
                spans.append((start, length))
            start = None
        else:
            text.append(char)
            length += 1
    return "".join(text), spans


@dataclass(frozen=True)
class SearchHit:
    """One matching event: where it is, a snippet with private match markers, its score.

    ``score`` is higher for a better match (the negated bm25 on SQLite).
    """

    session: str
    seq: int
    ts: str
    type: str
    role: str | None
    snippet: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "seq": self.seq,
            "ts": self.ts,
            "type": self.type,
            "role": self.role,
            "snippet": mark_json(self.snippet),
            "score": self.score,
        }

    def highlighted(self) -> tuple[str, list[tuple[int, int]]]:
        return highlight_spans(self.snippet)
