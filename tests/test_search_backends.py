"""Search through the ``Store`` protocol, on SQLite and PostgreSQL alike.

The corpus of ``tests/search_corpus.py`` is recorded through the shared
``store`` fixture, so every query of its table must find exactly the same
events on both backends; hostile queries give hits or ``BadInput`` and
nothing else; facts are searchable and forgetting one removes it from search.
The PostgreSQL-only tests at the end cover the tsvector column: the
migration's backfill, ``check`` and ``rebuild_search``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import psycopg
import pytest

import memctl
from memctl import pg_schema, pg_search
from memctl.core import MAX_KEY_LENGTH
from memctl.errors import BadInput
from memctl.models import NewEvent
from memctl.owners import Identity
from memctl.pg_search import MAX_POSITION, event_vector, vector_text
from memctl.postgres import PostgresStore
from memctl.search import index_text, tokens
from memctl.storage import SearchFilters, Store, Writer
from tests.search_corpus import CASES, HOSTILE, RECENT, Hit, corpus

B, D, M = "s_billing", "s_deploy", "s_misc"


def me() -> Writer:
    return Writer(Identity.of(os.getpid()))


def record_corpus(store: Store) -> None:
    for session, events in corpus().items():
        store.append(session, events, me())


def hits(store: Store, query: str, **filters: Any) -> list[Hit]:
    return [(hit.session, hit.seq) for hit in store.search(query, SearchFilters(**filters))]


def use_schema(conn: psycopg.Connection[Any], url: str) -> None:
    schema = url.rsplit("%3D", 1)[1]
    conn.execute("SELECT set_config('search_path', %s, false)", (schema,))


# -- the corpus, on both backends ------------------------------------------------


def test_every_case_finds_exactly_its_events(store: Store) -> None:
    """Each query of the shared table finds exactly its expected events."""
    record_corpus(store)
    wrong = []
    for case in CASES:
        found = set(hits(store, case.query, **case.filters))
        if found != set(case.hits):
            wrong.append((case.query, case.filters, case.why, sorted(found), sorted(case.hits)))
    assert wrong == []


@pytest.mark.parametrize(("query", "limit", "expected"), RECENT)
def test_recent_order_is_newest_first(
    store: Store, query: str, limit: int, expected: list[Hit]
) -> None:
    """order='recent' returns the newest matches first, the limit applied after ordering."""
    record_corpus(store)
    assert hits(store, query, order="recent", limit=limit) == expected


def test_rank_order_and_limit(store: Store) -> None:
    """Ranked hits come best first (higher score), and the limit keeps the best ones."""
    record_corpus(store)
    found = store.search("retry OR backoff", SearchFilters())
    scores = [hit.score for hit in found]
    assert scores == sorted(scores, reverse=True)
    # B1 and B4 hold both words, so they outrank every event holding one.
    best = {(hit.session, hit.seq) for hit in found[:2]}
    assert best == {(B, 1), (B, 4)}
    assert set(hits(store, "retry OR backoff", limit=2)) == best


def test_snippets_mark_what_matched(store: Store) -> None:
    """Snippets mark the matched words, in tool arguments and across diacritics too."""
    record_corpus(store)

    def snippet(query: str) -> str:
        (hit,) = store.search(query, SearchFilters())
        return str(hit.to_dict()["snippet"])

    assert snippet("client") == "Reading the code first.\nread_file\nservices/billing/[client].py"
    assert "[Résumé]" in snippet("resume")
    assert "[[brackets]]" in snippet("brackets")
    assert "[retry budget]" in snippet('"retry budget"')


def test_long_text_snippet_is_cut_around_the_match(store: Store) -> None:
    """A long event gives a short snippet around its match, with ellipses where it was cut."""
    words = " ".join(f"w{i}" for i in range(200))
    store.append("s_long", [NewEvent("message", "user", f"{words} needle {words}")], me())
    (hit,) = store.search("needle", SearchFilters())
    snippet = str(hit.to_dict()["snippet"])
    assert "[needle]" in snippet
    assert snippet.startswith("…") and snippet.endswith("…")
    assert len(snippet.split()) <= 17


@pytest.mark.parametrize("query", HOSTILE, ids=lambda q: repr(q)[:30])
def test_hostile_query_is_literal_or_bad_input(store: Store, query: str) -> None:
    """Query syntax of either backend never causes a database error."""
    store.append("s1", [NewEvent("message", "user", "billing retry % _ \\ ' : ^ NEAR")], me())
    try:
        found = store.search(query, SearchFilters())
    except BadInput as error:
        assert str(error)
    else:
        assert isinstance(found, list)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"order": "best"}, "order"), ({"limit": 0}, "limit"), ({"limit": 10**6}, "limit")],
)
def test_bad_options_are_bad_input(store: Store, options: dict[str, Any], message: str) -> None:
    with pytest.raises(BadInput, match=message):
        store.search("billing", SearchFilters(**options))


def test_index_is_checked_and_rebuilt(store: Store) -> None:
    """A healthy index passes check; rebuilding it indexes every event again."""
    record_corpus(store)
    assert store.check() == []
    assert store.rebuild_search() == 18
    assert store.check() == []
    assert set(hits(store, "gateway")) == {(B, 3)}


# -- facts --------------------------------------------------------------------------


def test_forget_removes_fact_from_search(store: Store) -> None:
    """A forgotten fact is found by no search, and its history keeps no text."""
    store.put_fact("the billing gateway retries 3 times", key="billing.retries", tags=["billing"])
    store.put_fact("staging deploys need approval", tags=["deploy"])
    assert [f.key for f in store.search_facts("gateway")] == ["billing.retries"]
    forgotten = store.forget_fact("billing.retries")
    assert forgotten is not None and forgotten.text.startswith("the billing gateway")
    assert store.search_facts("gateway") == []
    assert store.search_facts("retr*") == []
    assert store.get_fact("billing.retries") is None
    assert store.facts(tag="billing") == []
    history = store.fact_history("billing.retries")
    assert [(c.action, c.text, c.tags) for c in history] == [
        ("ADD", None, []),
        ("DELETE", None, []),
    ]
    assert [f.text for f in store.search_facts("approval")] == ["staging deploys need approval"]
    assert store.forget_fact("billing.retries") is None


def test_fact_search_follows_updates(store: Store) -> None:
    """Updating a fact by key re-indexes it: the old text is not found, the new one is."""
    first, action = store.put_fact("retries 3 times", key="k", tags=["a", "b"])
    assert action == "ADD"
    second, action = store.put_fact("backs off exponentially", key="k", tags=["b"])
    assert action == "UPDATE" and second.id == first.id
    assert store.search_facts("retries") == []
    assert [f.id for f in store.search_facts("exponential*")] == [first.id]
    assert [f.id for f in store.facts(tag="b")] == [first.id]
    assert store.facts(tag="a") == []
    assert [c.action for c in store.fact_history(first.id)] == ["ADD", "UPDATE"]


@pytest.mark.parametrize("query", ["'", "-x", "\x00", "a:b & !"])
def test_fact_search_bad_query_is_bad_input_or_nothing(store: Store, query: str) -> None:
    store.put_fact("something", key="k")
    try:
        assert store.search_facts(query) == []
    except BadInput as error:
        assert str(error)


# -- PostgreSQL: the tsvector column ------------------------------------------------


def test_postgres_index_holds_memctl_tokens(pg_schema_url: str) -> None:
    """The stored vectors hold exactly memctl's tokens for every corpus event."""
    store = PostgresStore(pg_schema_url)
    try:
        record_corpus(store)
        with psycopg.connect(pg_schema_url) as conn:
            rows = conn.execute(
                "SELECT tsvector_to_array(search), content, tool_call::text, payload::text"
                " FROM events"
            ).fetchall()
        for lexemes, content, tool_call, payload in rows:
            text = index_text(
                content,
                json.loads(tool_call) if tool_call else None,
                json.loads(payload) if payload else None,
            )
            assert sorted(lexemes) == sorted(set(tokens(text)))
    finally:
        store.close()


def test_migration_backfills_existing_events(pg_schema_url: str) -> None:
    """Events recorded before the search migration are indexed when it is applied."""
    with psycopg.connect(pg_schema_url, autocommit=True) as conn:
        # A database at schema version 2, as an older memctl left it.
        with conn.transaction():
            conn.execute(
                "CREATE TABLE memctl_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT clock_timestamp())"
            )
            for version, (name, steps) in enumerate(pg_schema.MIGRATIONS[:2], start=1):
                for step in steps:
                    assert isinstance(step, str)
                    conn.execute(step)
                conn.execute(
                    "INSERT INTO memctl_migrations (version, name) VALUES (%s, %s)",
                    (version, name),
                )
            for seq in range(1, 2501):
                conn.execute(
                    "INSERT INTO events (session, seq, id, ts, type, role, content, payload)"
                    " VALUES ('old', %s, %s, '2026-01-01T00:00:00.000000Z', 'message', 'user',"
                    " %s, %s::json)",
                    (seq, f"e{seq}", f"old message {seq}", '{"note": "Café"}'),
                )
            conn.execute(
                "INSERT INTO sessions (id, created_at, last_activity_at, last_seq, events,"
                " messages, last_message_seq) VALUES ('old', '2026-01-01T00:00:00.000000Z',"
                " '2026-01-01T00:00:00.000000Z', 2500, 2500, 2500, 2500)"
            )
        seen: list[tuple[int, int]] = []
        assert pg_schema.migrate(conn, "test", lambda done, total: seen.append((done, total))) == 2
        assert pg_schema.current_version(conn) == pg_schema.LATEST_VERSION
    assert seen[0] == (0, 2500) and seen[-1] == (2500, 2500) and len(seen) > 2
    store = PostgresStore(pg_schema_url)
    try:
        assert hits(store, "cafe", session="old", limit=1000, order="recent")[:2] == [
            ("old", 2500),
            ("old", 2499),
        ]
        assert hits(store, '"message 1234"') == [("old", 1234)]
        assert store.check() == []
    finally:
        store.close()


def test_postgres_check_finds_stale_vectors_and_rebuild_fixes_them(pg_schema_url: str) -> None:
    """check names missing and outdated vectors and says how to rebuild; rebuilding fixes them."""
    store = PostgresStore(pg_schema_url)
    try:
        record_corpus(store)
        store.put_fact("Café notes: see utils.py", key="k")
        assert store.check() == []
        with psycopg.connect(pg_schema_url, autocommit=True) as conn:
            conn.execute("UPDATE events SET search = NULL WHERE session = %s AND seq = 1", (B,))
            conn.execute(
                "UPDATE events SET search = to_tsvector('simple', 'changed')"
                " WHERE session = %s AND seq = 2",
                (B,),
            )
            conn.execute("UPDATE facts SET search = to_tsvector('simple', 'changed')")
        problems = store.check()
        assert len(problems) == 3, problems
        assert all("memctl db check --rebuild-search" in problem for problem in problems)
        assert "1 events are not in the search index" in problems[0] and f"{B}#1" in problems[0]
        assert "outdated" in problems[1] and f"{B}#2" in problems[1]
        assert hits(store, "billing", session=B) == [(B, 6)]
        assert store.rebuild_search() == 18
        assert store.check() == []
        assert set(hits(store, "billing", session=B)) == {(B, 1), (B, 2), (B, 6)}
        assert [f.key for f in store.search_facts("cafe utils.py")] == ["k"]
    finally:
        store.close()


def test_event_vector_is_the_stored_tokens() -> None:
    """event_vector gives each token its positions, keys and ids left out, lexemes sorted."""
    vector = event_vector(
        "Reading utils.py",
        {"id": "call_9", "name": "read_file", "arguments": {"path": "Ünï/x.py"}},
        {"steps": 3, "ok": True},
    )
    assert vector == "'3':9 'file':5 'py':3,8 'read':4 'reading':1 'uni':6 'utils':2 'x':7"
    assert vector_text([]) == ""


def test_vector_text_keeps_within_postgres_limits(pg_schema_url: str) -> None:
    """Words over 2047 bytes are left out, positions stop at 16383, as the server requires."""
    long_word = "é" * 1024  # 2048 bytes
    words = ["a", long_word, "b", *(["c"] * (MAX_POSITION + 5))]
    literal = vector_text(words)
    assert long_word not in literal and "'b':3" in literal
    with psycopg.connect(pg_schema_url) as conn:
        stored = conn.execute("SELECT %s::tsvector::text", (literal,)).fetchone()
        assert stored is not None
        assert stored[0].startswith("'a':1 'b':3 'c':4,5,6")
        assert vector_text(["é" * 1023]) == f"'{'é' * 1023}':1"
        conn.execute("SELECT %s::tsvector", (vector_text(["é" * 1023]),))
        # Past the positions made at import, and past the last one.
        many = vector_text([f"w{n}" for n in range(1, 20_001)])
        assert "'w1500':1500 " in many and "'w20000':16383 " in many
        row = conn.execute(
            "SELECT length(%s::tsvector), %s::tsvector @@ %s::tsquery",
            (many, many, "'w1500' <-> 'w1501'"),
        ).fetchone()
        assert row == (20_000, True)


def _one_entry_per_word(words: list[str]) -> str:
    """The plain literal: every word at its position, in text order, repeats and all."""
    return " ".join(
        f"'{word}':{min(position, MAX_POSITION)}"
        for position, word in enumerate(words, 1)
        if len(word.encode("utf-8")) <= 2047
    )


def test_vector_text_is_the_servers_own_form(pg_schema_url: str) -> None:
    """The literal reads back unchanged (sorted, merged), and is the plain literal's vector."""
    texts = [
        "retry the billing retry, then retry billing once more",
        "Zebra zebra ÄPFEL äpfel apfel a b a 10 9 100 ǡ ß straße ω Ω 東京 東 x²",
        " ".join(f"w{n % 37}" for n in range(3_000)),  # past the positions made at import
    ]
    words_lists = [tokens(text) for text in texts]
    words_lists += [["b", "a"], ["a", "a"], ["only"], ["a", "é" * 1024, "a"]]
    with psycopg.connect(pg_schema_url) as conn:
        for words in words_lists:
            literal = vector_text(words)
            row = conn.execute(
                "SELECT %s::tsvector::text, %s::tsvector = %s::tsvector",
                (literal, literal, _one_entry_per_word(words)),
            ).fetchone()
            assert row == (literal, True), words[:8]
        # A lexeme keeps at most 256 positions on the server; the rest agree.
        crowded = ["c"] * (MAX_POSITION + 5)
        row = conn.execute(
            "SELECT %s::tsvector = %s::tsvector",
            (vector_text(crowded), _one_entry_per_word(crowded)),
        ).fetchone()
        assert row == (True,)


def test_symbols_postgres_parser_drops_are_found_on_both(store: Store) -> None:
    """Tokens such as x² and ½, which to_tsvector would split or drop, are searchable."""
    store.append(
        "s_math", [NewEvent(type="message", role="user", content="use x² and ½ cup")], me()
    )
    assert hits(store, "x²") == [("s_math", 1)]
    assert hits(store, "½ cup") == [("s_math", 1)]
    assert hits(store, '"and ½"') == [("s_math", 1)]


def test_postgres_refuses_a_query_word_too_long_to_index(pg_schema_url: str) -> None:
    """A word over PostgreSQL's 2047-byte lexeme limit is BadInput, not a server error."""
    store = PostgresStore(pg_schema_url)
    try:
        with pytest.raises(BadInput, match="too long"):
            hits(store, "日" * 700)
        with pytest.raises(BadInput, match="too long"):
            store.search_facts("日" * 700)
        assert hits(store, "日" * 600) == []
    finally:
        store.close()


def test_migration_makes_parser_built_vectors_exact(pg_schema_url: str) -> None:
    """Vectors an older memctl built with to_tsvector are rewritten where they differ."""
    store = PostgresStore(pg_schema_url)
    try:
        record_corpus(store)
        store.append("s_math", [NewEvent(type="message", role="user", content="x² ½")], me())
        store.put_fact("x² is a square", key="sq")
    finally:
        store.close()
    latest = pg_schema.LATEST_VERSION
    with psycopg.connect(pg_schema_url, autocommit=True) as conn:
        use_schema(conn, pg_schema_url)
        # As schema version 4 left them: the server's parser over the tokens.
        conn.execute(
            "UPDATE events SET search = to_tsvector('simple',"
            " array_to_string(tsvector_to_array(search), ' '))"
        )
        conn.execute("UPDATE facts SET search = to_tsvector('simple', 'x² is a square')")
        conn.execute("DELETE FROM memctl_migrations WHERE version = %s", (latest,))
        assert pg_schema.migrate(conn, "test") == latest - 1
        stored = conn.execute("SELECT search::text FROM events WHERE session = 's_math'").fetchone()
        assert stored is not None and stored[0] == "'x²':1 '½':2"
    store = PostgresStore(pg_schema_url)
    try:
        assert store.check() == []
        assert hits(store, "x²") == [("s_math", 1)]
        assert [fact.key for fact in store.search_facts("x²")] == ["sq"]
    finally:
        store.close()


def test_recent_order_beyond_the_newest_window(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """order='recent' finds old matches when the newest events hold too few of them."""
    monkeypatch.setattr(pg_search, "RECENT_WINDOW", 3)
    store = PostgresStore(pg_schema_url)
    try:
        events = [
            NewEvent("message", "user", text, ts=f"2026-01-01T00:00:{i:02d}.000000Z")
            for i, text in enumerate(["old needle", "older needle", "x", "y", "z", "new needle"])
        ]
        store.append("s1", events, me())
        # One match among the newest three: the rest come from the GIN index.
        assert hits(store, "needle", order="recent", limit=2) == [("s1", 6), ("s1", 2)]
        assert hits(store, "needle", order="recent") == [("s1", 6), ("s1", 2), ("s1", 1)]
        # Enough matches among the newest three: the walk alone answers.
        assert hits(store, "needle", order="recent", limit=1) == [("s1", 6)]
        assert hits(store, "needle", order="recent", limit=3, since=events[1].ts) == [
            ("s1", 6),
            ("s1", 2),
        ]
    finally:
        store.close()


def test_overlong_fact_key_or_tag_is_bad_input_on_both_backends(db_url: str) -> None:
    """A key PostgreSQL could not index is refused up front (exit 2), never an outage (5)."""
    with memctl.open(db_url) as mem:
        with pytest.raises(BadInput):
            mem.add_fact("text", key="k" * (MAX_KEY_LENGTH + 1))
        with pytest.raises(BadInput):
            mem.add_fact("text", tags=["t" * (MAX_KEY_LENGTH + 1)])
        longest = "é" * MAX_KEY_LENGTH
        assert mem.add_fact("text", key=longest, tags=[longest]).key == longest


@pytest.mark.parametrize(
    "text",
    [
        ",".join(str(n) for n in range(200_000))[:800_000],  # many short distinct words
        "w " * 400_000,  # one word, many times
    ],
    ids=["distinct", "repeated"],
)
def test_event_with_a_large_vocabulary_is_stored_and_found(db_url: str, text: str) -> None:
    """An event under the size limit whose words overflow a tsvector is stored whole, and found."""
    with memctl.open(db_url) as mem:
        session = mem.start()
        session.add_message("user", text)
        assert mem.events(session.id)[0].content == text
        # The repeated word too: FTS5's snippet() took minutes over its 400,000 hits.
        assert [h.session for h in mem.search("0" if text.startswith("0,") else "w")] == [
            session.id
        ]
        fact = mem.add_fact("w " * 2_500_000)
        assert mem.store.get_fact(fact.id) is not None


def test_vector_text_fits_a_tsvector_whatever_the_words(pg_schema_url: str) -> None:
    """Past VECTOR_BUDGET the rest of the words are left out, so the server accepts the vector."""
    with psycopg.connect(pg_schema_url) as conn:
        for words in (
            [str(n) for n in range(200_000)],
            ["ab"] * 600_000,
            ["é" * 500] * 3_000,
            ["x" * 3_000] * 1_000 + ["kept"],  # unindexable words use none of the budget
        ):
            literal = vector_text(words)
            row = conn.execute("SELECT length(%s::tsvector)", (literal,)).fetchone()
            assert row is not None and row[0] >= 1
        assert "'kept':1001" in vector_text(["x" * 3_000] * 1_000 + ["kept"])


def test_a_long_text_gets_its_snippet_too(db_url: str) -> None:
    """Past SNIPPET_IN_SQL characters a hit's snippet is made by memctl.snippets, same shape."""
    filler = "lorem ipsum dolor " * 1_000  # 18,000 characters
    with memctl.open(db_url) as mem:
        session = mem.start()
        session.add_message("user", filler + "the needle is here " + filler)
        session.add_message("user", "a short needle")
        hits = {h.seq: h.to_dict()["snippet"] for h in mem.search("needle")}
    assert set(hits) == {1, 2}
    assert hits[1].startswith("…") and hits[1].endswith("…") and "[needle]" in hits[1]
    assert len(hits[1]) < 200
    assert hits[2] == "a short [needle]"
