"""Search: the query language, the tokenizer, the translators and the SQLite index.

The tokenizer tests compare memctl's Python tokenizer with FTS5's own on the
same text, because the PostgreSQL side indexes Python's tokens while SQLite
indexes FTS5's: they must agree for a query to mean the same on both. The
corpus tests run ``tests/search_corpus.py`` against a real SQLite file.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memctl.errors import BadInput
from memctl.models import NewEvent
from memctl.owners import Identity
from memctl.search import (
    FTS5_TOKENIZER,
    MARK_END,
    MARK_START,
    AllOf,
    AnyOf,
    Node,
    SearchHit,
    Term,
    highlight_spans,
    index_text,
    mark_json,
    parse,
    raw_index_text,
    to_fts5,
    to_tsquery,
    tokens,
)
from memctl.sqlite import SQLiteStore
from memctl.sqlite_search import MIGRATION, backfill, check, rebuild, search
from memctl.storage import SearchFilters, Writer
from tests.search_corpus import CASES, HOSTILE, RECENT, Case, Hit, corpus

# -- helpers ---------------------------------------------------------------


def make_ready(store: SQLiteStore) -> None:
    """Add the search index if the store does not have it yet, and index what is missing.

    Once the store migrates and indexes by itself, this only finds nothing to do.
    """
    with store._write() as conn:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events_fts'"
        ).fetchone()
        if exists is None:
            for statement in MIGRATION[1]:
                conn.execute(statement)
        backfill(conn)


def record_corpus(store: SQLiteStore) -> None:
    writer = Writer(Identity.of(os.getpid()))
    for session, events in corpus().items():
        store.append(session, events, writer)
    make_ready(store)


@pytest.fixture(scope="module")
def corpus_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path_factory.mktemp("search") / "memctl.db")
    record_corpus(store)
    yield store
    store.close()


def fts_table() -> sqlite3.Connection:
    """An in-memory FTS5 table with memctl's tokenizer, and a view of its tokens."""
    conn = sqlite3.connect(":memory:")
    conn.execute(MIGRATION[1][0])
    conn.execute("CREATE VIRTUAL TABLE vocab USING fts5vocab(events_fts, 'instance')")
    return conn


@pytest.fixture(scope="module")
def fts() -> Iterator[sqlite3.Connection]:
    conn = fts_table()
    yield conn
    conn.close()


def fts5_tokens(conn: sqlite3.Connection, text: str) -> list[str]:
    conn.execute("DELETE FROM events_fts")
    conn.execute("INSERT INTO events_fts (rowid, body) VALUES (1, ?)", (text,))
    # A word made only of removed diacritics is an empty token to FTS5 (it
    # holds a position but can never be searched for); memctl has no token.
    return [row[0] for row in conn.execute("SELECT term FROM vocab ORDER BY offset") if row[0]]


def matches(conn: sqlite3.Connection, expression: str) -> set[int]:
    rows = conn.execute("SELECT rowid FROM events_fts WHERE events_fts MATCH ?", (expression,))
    return {row[0] for row in rows}


def hit_set(hits: list[SearchHit]) -> set[Hit]:
    return {(hit.session, hit.seq) for hit in hits}


# -- tokenizer -------------------------------------------------------------

TRICKY = [
    "Hello, World! hello_world foo-bar utils.py a/b\\c",
    "Résumé naïve café Ünïcödé ÀÉÎÕÜ ǖ ṏ ệ",
    "e\u0301t\u00e9 decomposed e\u0301",
    "İstanbul ISTANBUL ß ẞ straße \u03c2 \u03c3 \u03a3",
    "\ufb01le \uff21\uff22\uff23 x² Ⅻ ½ ① \U0001d400\U0001d401",
    "हिन्दी नमस्ते العَرَبِيَّة שָׁלוֹם ไทย",
    "日本語のテキスト 中文 한국어",
    "emoji 🔥🚀 👍🏻 ❤️ a\u200db a\u00adb",
    "tabs\tand\nnewlines\r\nand\x00nul \x02\x03 markers",
    "numbers 3.14 1e-5 0x1F 1,000,000 -42",
    "\u202eoverride\u202c \ue000private\ue001",
]


@pytest.mark.parametrize("text", TRICKY)
def test_tokens_agree_with_fts5(fts: sqlite3.Connection, text: str) -> None:
    """memctl's tokenizer splits and folds tricky text exactly as FTS5 does."""
    assert tokens(text) == fts5_tokens(fts, text)


def test_tokens_agree_with_fts5_on_every_code_point() -> None:
    """Character by character (planes 0-2), memctl's tokenizer is FTS5's.

    The only differences allowed are characters unicode61's Unicode 6.1 tables
    do not know, which it keeps verbatim inside a token.
    """
    fts = fts_table()
    codes = [code for code in range(0x30000) if not 0xD800 <= code <= 0xDFFF]
    fts.executemany(
        "INSERT INTO events_fts (rowid, body) VALUES (?, ?)",
        ((code, f"a{chr(code)}b") for code in codes),
    )
    found: dict[int, list[tuple[int, str]]] = {}
    for term, doc, offset in fts.execute("SELECT term, doc, offset FROM vocab"):
        if term:
            found.setdefault(doc, []).append((offset, term))
    unknown_to_fts5 = 0
    for code in codes:
        theirs = [term for _, term in sorted(found.get(code, []))]
        ours = tokens(f"a{chr(code)}b")
        if ours != theirs:
            assert theirs == [f"a{chr(code)}b"], hex(code)
            unknown_to_fts5 += 1
    fts.close()
    # About 2,800 code points assigned after Unicode 6.1 (of 194,560).
    assert unknown_to_fts5 < 3_000


def _chars(*ranges: tuple[int, int]) -> list[str]:
    return [chr(code) for low, high in ranges for code in range(low, high + 1)]


# Scripts and punctuation that Unicode 6.1 already had in full.
_OLD_CHARS = [
    *_chars(
        (0x20, 0x7E),
        (0xA0, 0x24F),
        (0x300, 0x36F),
        (0x391, 0x3C9),
        (0x400, 0x4FF),
        (0x5B0, 0x5BD),
        (0x5D0, 0x5EA),
        (0x621, 0x652),
        (0x905, 0x94D),
        (0xE01, 0xE3A),
        (0x1E00, 0x1EFF),
        (0x2010, 0x2027),
        (0x3041, 0x3096),
        (0x4E00, 0x4E20),
        (0x1F600, 0x1F610),
    ),
    *["\x00", "\t", "\n", "\u200d", "\ufe0f", "\U0001f3fb"],
]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(alphabet=st.sampled_from(_OLD_CHARS), max_size=40))
def test_tokens_agree_with_fts5_on_generated_text(fts: sqlite3.Connection, text: str) -> None:
    """Mixed scripts, marks and punctuation tokenize the same in both."""
    assert tokens(text) == fts5_tokens(fts, text)


def test_tokens_fold_case_and_diacritics() -> None:
    """Tokens are lower-case without Latin diacritics; punctuation separates."""
    assert tokens("Résumé_v2.PDF") == ["resume", "v2", "pdf"]
    assert tokens("İSTANBUL") == ["istanbul"]
    assert tokens("%_\\:^*\"'()") == []


# -- what gets indexed ------------------------------------------------------


def test_index_text_keeps_values_not_keys() -> None:
    """Names and string/number values are indexed; keys, ids and booleans are not."""
    text = index_text(
        "hello",
        {"id": "call_9", "name": "read_file", "arguments": {"path": "a.py", "n": [3, True, None]}},
        {"steps": {"deep": ["down"]}, "ok": False},
    )
    assert text.split("\n") == ["hello", "read_file", "a.py", "3", "down"]


def test_index_text_decodes_string_arguments() -> None:
    """OpenAI-style arguments (a JSON string) are indexed by value."""
    text = index_text(None, {"name": "f", "arguments": '{"path": "x.py"}'}, None)
    assert "path" not in tokens(text)
    assert tokens(text) == ["f", "x", "py"]
    assert tokens(index_text(None, {"name": "f", "arguments": "not json"}, None)) == [
        "f",
        "not",
        "json",
    ]


def test_index_text_strips_markers() -> None:
    """Stored text cannot fake a snippet marker."""
    text = index_text(f"a{MARK_START}b{MARK_END}c\x00", None, None)
    assert MARK_START not in text and MARK_END not in text and "\x00" not in text


# -- parser ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("billing", Term(("billing",))),
        ("billing retry", AllOf((Term(("billing",)), Term(("retry",))))),
        ('"Retry budget"', Term(("retry", "budget"))),
        ("retr*", Term(("retr",), prefix=True)),
        ('"retry bud"*', Term(("retry", "bud"), prefix=True)),
        ("utils.py", Term(("utils", "py"))),
        ("a OR b", AnyOf((Term(("a",)), Term(("b",))))),
        ("a OR b OR c", AnyOf((Term(("a",)), Term(("b",)), Term(("c",))))),
        ("x a OR b", AllOf((Term(("x",)), AnyOf((Term(("a",)), Term(("b",))))))),
        ("(a b) OR c", AnyOf((AllOf((Term(("a",)), Term(("b",)))), Term(("c",))))),
        ("a -b", AllOf((Term(("a",)),), (Term(("b",)),))),
        ('a -"b c"', AllOf((Term(("a",)),), (Term(("b", "c")),))),
        ("a (b -c)", AllOf((Term(("a",)), Term(("b",))), (Term(("c",)),))),
        ("a or b", AllOf((Term(("a",)), Term(("or",)), Term(("b",))))),
        ("OR", Term(("or",))),
        ("a OR", AllOf((Term(("a",)), Term(("or",))))),
        ("well-known", Term(("well", "known"))),
        ("a - b", AllOf((Term(("a",)), Term(("b",))))),
        ("--a", Term(("a",))),
        ('"unclosed phrase', Term(("unclosed", "phrase"))),
        ("(a b", AllOf((Term(("a",)), Term(("b",))))),
        ("a) b", AllOf((Term(("a",)), Term(("b",))))),
        ("a % b", AllOf((Term(("a",)), Term(("b",))))),
        ("a OR %", Term(("a",))),
        ("NOT a AND NEAR", AllOf((Term(("not",)), Term(("a",)), Term(("and",)), Term(("near",))))),
    ],
)
def test_parse(query: str, expected: Node) -> None:
    """The query language parses to the expected AST."""
    assert parse(query) == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "nothing to search for"),
        ("   ", "nothing to search for"),
        ("%_*", "nothing to search for"),
        ("-a", "not excluded"),
        ("-a -b", "not excluded"),
        ("a (-b)", None),
        ("-(a b)", "not excluded"),
        ("a OR -b", "OR"),
        ("x" * 1001, "too long"),
        ("a " * 65, "too many words"),
        ('"' + "a " * 65 + '"', "too many words"),
        ("(" * 17 + "a", "too deeply"),
    ],
)
def test_parse_rejects(query: str, message: str | None) -> None:
    """Queries that cannot mean anything get BadInput with a reason."""
    if message is None:
        parse(query)  # a group of only exclusions merges into its parent
        return
    with pytest.raises(BadInput, match=message):
        parse(query)


def test_parse_limit_is_after_normalising_whitespace() -> None:
    """Whitespace runs count as one character towards the length cap."""
    parse("a" + " " * 5000 + "b")


# -- translators ------------------------------------------------------------


def test_to_fts5_quotes_every_token() -> None:
    """Every token is quoted; NOT sits on the right of a positive expression."""
    assert to_fts5(parse('near AND "x y"* -not')) == ('(("near" AND "and" AND "x y"*) NOT ("not"))')


def test_to_tsquery_shapes() -> None:
    """Phrases use <->, prefixes :*, exclusions !."""
    assert to_tsquery(parse('"a b"* c OR d -e')) == "(('a' <-> 'b':*) & ('c' | 'd') & !'e')"


_SPECIALS = st.sampled_from(
    [
        '"',
        "*",
        "-",
        "(",
        ")",
        " ",
        " OR ",
        "OR",
        "AND",
        "NOT",
        "NEAR",
        ":",
        "^",
        "+",
        "%",
        "_",
        "\\",
        "'",
        "{",
        "}",
        ",",
        "/",
        "&",
        "|",
        "!",
        "<->",
        ":*",
        "\x00",
        "a",
        "b",
        "é",
        "日",
        "x1",
    ]
)
QUERIES = st.one_of(st.text(max_size=60), st.lists(_SPECIALS, max_size=25).map("".join))


@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(QUERIES)
def test_no_query_makes_an_fts5_error(fts: sqlite3.Connection, query: str) -> None:
    """Whatever the text, the FTS5 expression runs (or the query is BadInput)."""
    try:
        expression = to_fts5(parse(query))
    except BadInput:
        return
    fts.execute("SELECT count(*) FROM events_fts WHERE events_fts MATCH ?", (expression,))


_LEXEME = re.compile(r"'([^']*)'")


@settings(max_examples=500, deadline=None)
@given(QUERIES)
def test_tsquery_holds_only_tokens_and_operators(query: str) -> None:
    """A tsquery is quoted query tokens joined by tsquery operators, nothing else."""
    try:
        node = parse(query)
    except BadInput:
        return
    text = to_tsquery(node)
    lexemes = _LEXEME.findall(text)
    allowed = set(tokens(query)) | {"or"}
    assert lexemes and all(lexeme in allowed and lexeme for lexeme in lexemes)
    assert set(_LEXEME.sub("", text)) <= set("()&|!<->:* ")


# A tiny language over a tiny vocabulary, so that random queries hit.
_VOCAB = ["ab", "abc", "b", "cd", "c"]
_DOCS = st.lists(
    st.lists(st.sampled_from(_VOCAB), min_size=1, max_size=6).map(" ".join),
    min_size=1,
    max_size=8,
)
_ITEM = st.one_of(
    st.sampled_from(_VOCAB),
    st.sampled_from(_VOCAB).map(lambda w: w + "*"),
    st.lists(st.sampled_from(_VOCAB), min_size=2, max_size=3).map(
        lambda ws: '"' + " ".join(ws) + '"'
    ),
)
_QUERY = st.lists(
    st.one_of(_ITEM, _ITEM.map(lambda i: "-" + i), st.tuples(_ITEM, _ITEM).map(" OR ".join)),
    min_size=1,
    max_size=4,
).map(" ".join)


def evaluate(node: Node, words: list[str]) -> bool:
    """The meaning of an AST over a document's tokens, written independently of any backend."""
    if isinstance(node, Term):
        size = len(node.tokens)
        for start in range(len(words) - size + 1):
            window = words[start : start + size]
            if window[:-1] == list(node.tokens[:-1]) and (
                window[-1].startswith(node.tokens[-1])
                if node.prefix
                else window[-1] == node.tokens[-1]
            ):
                return True
        return False
    if isinstance(node, AnyOf):
        return any(evaluate(item, words) for item in node.items)
    return all(evaluate(item, words) for item in node.include) and not any(
        evaluate(item, words) for item in node.exclude
    )


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(_DOCS, _QUERY)
def test_fts5_finds_what_the_query_means(
    fts: sqlite3.Connection, docs: list[str], query: str
) -> None:
    """FTS5 returns exactly the documents the AST's reference meaning selects."""
    try:
        node = parse(query)
    except BadInput:
        return
    fts.execute("DELETE FROM events_fts")
    fts.executemany(
        "INSERT INTO events_fts (rowid, body) VALUES (?, ?)",
        list(enumerate(docs, start=1)),
    )
    expected = {i for i, doc in enumerate(docs, start=1) if evaluate(node, tokens(doc))}
    assert matches(fts, to_fts5(node)) == expected


# -- snippets --------------------------------------------------------------


def test_mark_json_and_spans() -> None:
    """Markers become [ ] for JSON and spans for a terminal; literal brackets stay."""
    snippet = f"a [x] {MARK_START}billing{MARK_END} and {MARK_START}retry{MARK_END}"
    assert mark_json(snippet) == "a [x] [billing] and [retry]"
    text, spans = highlight_spans(snippet)
    assert text == "a [x] billing and retry"
    assert [text[start:end] for start, end in spans] == ["billing", "retry"]


def test_hit_to_dict_shape() -> None:
    """A hit's JSON has exactly PRODUCT.md's keys."""
    hit = SearchHit("s1", 3, "2026-01-01T00:00:00.000000Z", "message", "user", "x", 1.5)
    assert set(hit.to_dict()) == {"session", "seq", "ts", "type", "role", "snippet", "score"}


# -- the SQLite index --------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.query!r}{c.filters or ''}")
def test_corpus_query(corpus_store: SQLiteStore, case: Case) -> None:
    """Each query of the shared table finds exactly its expected events."""
    hits = search(corpus_store._conn, case.query, SearchFilters(**case.filters))
    assert hit_set(hits) == set(case.hits), case.why


@pytest.mark.parametrize(("query", "limit", "expected"), RECENT)
def test_corpus_recent_order(
    corpus_store: SQLiteStore, query: str, limit: int, expected: list[Hit]
) -> None:
    """order='recent' returns the newest matches first."""
    hits = search(corpus_store._conn, query, SearchFilters(order="recent", limit=limit))
    assert [(hit.session, hit.seq) for hit in hits] == expected


def test_rank_order_and_limit(corpus_store: SQLiteStore) -> None:
    """Ranked hits come best first, and the limit keeps the best ones."""
    hits = search(corpus_store._conn, "retry OR backoff")
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)
    # B1 and B4 hold both words, so they outrank every event holding one.
    assert hit_set(hits[:2]) == {("s_billing", 1), ("s_billing", 4)}
    assert hit_set(
        search(corpus_store._conn, "retry OR backoff", SearchFilters(limit=2))
    ) == hit_set(hits[:2])


def test_snippet_marks_matches(corpus_store: SQLiteStore) -> None:
    """Snippets mark matched words, including inside tool arguments."""
    (hit,) = search(corpus_store._conn, "client")
    assert (
        hit.to_dict()["snippet"]
        == "Reading the code first.\nread_file\nservices/billing/[client].py"
    )
    (hit,) = search(corpus_store._conn, "brackets")
    assert "[[brackets]]" in hit.to_dict()["snippet"]


@pytest.mark.parametrize("query", HOSTILE, ids=lambda q: repr(q)[:30])
def test_hostile_query_is_literal_or_bad_input(corpus_store: SQLiteStore, query: str) -> None:
    """Query syntax of either backend never causes an SQL error."""
    try:
        hits = search(corpus_store._conn, query)
    except BadInput as error:
        assert str(error)
    else:
        assert isinstance(hits, list)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"order": "best"}, "order"), ({"limit": 0}, "limit"), ({"limit": 10**6}, "limit")],
)
def test_bad_options(corpus_store: SQLiteStore, options: dict[str, Any], message: str) -> None:
    with pytest.raises(BadInput, match=message):
        search(corpus_store._conn, "billing", SearchFilters(**options))


def test_session_filter_with_interleaved_sessions(tmp_path: Path) -> None:
    """Sessions recorded turn about (pk ranges overlap) are still filtered exactly."""
    store = SQLiteStore(tmp_path / "memctl.db")
    writer = Writer(Identity.of(os.getpid()))
    for turn in range(6):
        for session in ("s_a", "s_b", "s_c"):
            store.append(session, [NewEvent("message", "user", f"shared word {turn}")], writer)
    make_ready(store)
    for order in ("rank", "recent"):
        hits = search(store._conn, "shared", SearchFilters(session="s_b", order=order))
        assert hit_set(hits) == {("s_b", seq) for seq in range(1, 7)}
    store.close()


def test_backfill_indexes_existing_events(tmp_path: Path) -> None:
    """Events recorded before the index existed are found after backfill, with progress."""
    store = SQLiteStore(tmp_path / "memctl.db")
    writer = Writer(Identity.of(os.getpid()))
    for session, events in corpus().items():
        store.append(session, events, writer)
    seen: list[tuple[int, int]] = []
    with store._write() as conn:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'events_fts'").fetchone() is None:
            for statement in MIGRATION[1]:
                conn.execute(statement)
        conn.execute("DELETE FROM events_fts")  # as if these predated the index
        assert backfill(conn, lambda done, total: seen.append((done, total))) == 18
        assert backfill(conn) == 0
    assert seen[0] == (0, 18) and seen[-1] == (18, 18)
    assert hit_set(search(store._conn, "gateway")) == {("s_billing", 3)}
    assert check(store._conn) == []
    store.close()


def test_check_finds_and_rebuild_fixes(tmp_path: Path) -> None:
    """check() reports missing, orphan and stale index rows; rebuild() repairs them."""
    store = SQLiteStore(tmp_path / "memctl.db")
    record_corpus(store)
    conn = store._conn
    assert check(conn) == []
    with store._write():
        conn.execute("DELETE FROM events_fts WHERE rowid = 1")
        conn.execute("INSERT INTO events_fts (rowid, body) VALUES (999, 'ghost')")
        conn.execute("UPDATE events_fts SET body = 'changed' WHERE rowid = 2")
    problems = check(conn)
    assert len(problems) == 3
    assert all("rebuild" in problem for problem in problems)
    assert "1 events are not in the search index (pk 1)" in problems[0]
    assert "(pk 999)" in problems[1]
    assert "(pk 2)" in problems[2]
    with store._write():
        rebuild(conn)
    assert check(conn) == []
    store.close()


def test_check_without_index(tmp_path: Path) -> None:
    """A database without the index is reported, not a crash."""
    conn = sqlite3.connect(tmp_path / "plain.db")
    conn.execute("CREATE TABLE events (pk INTEGER PRIMARY KEY)")
    assert check(conn) == [check(conn)[0]] and "missing" in check(conn)[0]
    conn.close()


def test_tokenizer_constant_matches_migration() -> None:
    """The migration builds the index with the tokenizer the Python side mimics."""
    assert FTS5_TOKENIZER in MIGRATION[1][0]
    assert MIGRATION[0] == "0003_search"


@settings(max_examples=200, deadline=None)
@given(
    content=st.one_of(st.none(), st.text(alphabet=st.sampled_from("ab é\x02\x03\x00_.-"))),
    argument=st.text(alphabet=st.sampled_from("cd\x02\x03 ")),
    note=st.one_of(st.none(), st.text(max_size=5)),
)
def test_raw_index_text_has_the_same_tokens(
    content: str | None, argument: str, note: str | None
) -> None:
    """What the PostgreSQL vector is cut from tokenizes exactly like the snippet text."""
    tool_call = {"name": "run", "arguments": {"a": argument}} if argument else None
    payload = {"note": note} if note is not None else None
    assert tokens(raw_index_text(content, tool_call, payload)) == tokens(
        index_text(content, tool_call, payload)
    )


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from("ab é\u0301\u0300_.-\t\n\u00bd²日\ufe0f")))
def test_snippet_token_offsets_are_the_token_runs(text: str) -> None:
    """The offsets snippets mark by are the runs of token characters, one per token."""
    from memctl import search as search_module
    from memctl import snippets

    runs, words = snippets._spans(text)
    expected = [
        (match.start(), match.end())
        for match in re.finditer("x+", text.translate(snippets._CLASSES))
        if text[match.start() : match.end()].translate(search_module._FOLD)
    ]
    assert runs == expected
    assert words == tokens(text)
    assert all(
        text[start:end].translate(search_module._FOLD) == word
        for (start, end), word in zip(runs, words, strict=True)
    )


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.characters(max_codepoint=127)))
def test_ascii_snippet_offsets_are_the_token_runs(text: str) -> None:
    """ASCII text takes a shorter way to its token offsets; they are the same runs."""
    from memctl import snippets

    runs, words = snippets._spans(text)
    assert runs == [(m.start(), m.end()) for m in re.finditer("[A-Za-z0-9]+", text)]
    assert words == tokens(text)


@settings(max_examples=300, deadline=None)
@given(
    words=st.lists(st.sampled_from(["a", "b", "c", "ab", "é"]), max_size=30),
    query=st.lists(st.sampled_from(["a", "b", "ab", "é", "zz"]), min_size=1, max_size=3),
    any_of=st.booleans(),
)
def test_whole_word_hits_are_the_scanned_hits(
    words: list[str], query: list[str], any_of: bool
) -> None:
    """The per-token lookup for whole-word queries finds what the scan per term finds."""
    from memctl import snippets

    text = (" OR " if any_of else " ").join(query)
    node = parse(text)
    numbers = snippets._word_numbers(node)
    if len(set(query)) < len(query):
        assert numbers is None  # a repeated word counts twice: the scan's job
        return
    assert numbers is not None
    assert snippets._word_hits(words, numbers) == snippets._scanned_hits(words, node)
