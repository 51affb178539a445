"""PostgreSQL-only behaviour: password hygiene, lost connections, migrations, pooling.

Everything runs against a real server: the one the contract suite uses, plus,
for the wrong-password case, a throwaway cluster with password authentication
(the shared test server trusts every local connection, so it accepts any
password).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from memctl.errors import BadInput, SchemaTooNew, StorageUnavailable
from memctl.ids import new_id, now_ts
from memctl.models import NewEvent
from memctl.owners import Identity
from memctl.pg_schema import LATEST_VERSION
from memctl.storage import SearchFilters, Writer
from tests.conftest import PG_URL, require_postgres, run_memctl

SECRET = "Sx9-secret-Pw"
PG_BIN = Path("/usr/lib/postgresql")


def _cannot(reason: str) -> NoReturn:
    """Skip a test this machine cannot host, visibly; in CI that is a failure, not a skip."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run this test: {reason}")
    pytest.skip(reason)


def me() -> Writer:
    return Writer(Identity.of(os.getpid()))


def msg(content: str, **extra: Any) -> NewEvent:
    return NewEvent(type="message", role="user", content=content, **extra)


def admin() -> Any:
    import psycopg

    return psycopg.connect(PG_URL, autocommit=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tagged(url: str, name: str) -> str:
    """``url`` with an application_name, so a test can find (and kill) its backends."""
    return f"{url}&application_name={name}"


def terminate(name: str) -> int:
    with admin() as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return len(rows)


def assert_no_secret(*texts: str | bytes, secret: str = SECRET) -> None:
    for text in texts:
        shown = text.decode(errors="replace") if isinstance(text, bytes) else text
        assert secret not in shown, shown


def assert_clean_error(exc: BaseException, secret: str = SECRET) -> None:
    """Neither the error nor anything chained to it shows the password."""
    rendered = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    assert_no_secret(str(exc), repr(exc), rendered, secret=secret)
    assert exc.__cause__ is None and exc.__context__ is None
    assert "\n" not in str(exc)


# -- password hygiene ---------------------------------------------------------

MALFORMED = [
    f"postgresql://memctl:{SECRET}@[::1/test",  # libpq quotes the whole URL back
    f"postgresql://memctl:{SECRET}@127.0.0.1:5432/te st",
    f"postgresql://memctl:{SECRET}@127.0.0.1:notaport/test",
    f"postgresql://memctl:{SECRET}@127.0.0.1:5432/test?bogus=1",
    f"postgresql://memctl:{SECRET}@127.0.0.1:5432/test?sslmode=sometimes",
    f"postgresql://memctl:{SECRET} with space@127.0.0.1:5432/test",
]


def _unreachable_urls() -> list[str]:
    return [
        f"postgresql://memctl:{SECRET}@127.0.0.1:{free_port()}/test",
        f"postgresql://memctl@127.0.0.1:{free_port()}/test?password={SECRET}",
    ]


@pytest.mark.parametrize("url", MALFORMED)
def test_malformed_url_is_unavailable_without_password(url: str) -> None:
    """A URL libpq rejects is exit 5 with one line, and the password shown nowhere."""
    from memctl.postgres import PostgresStore

    with pytest.raises(StorageUnavailable) as caught:
        PostgresStore(url)
    assert_clean_error(caught.value)
    result = run_memctl("--db", url, "db", "info", "--json")
    assert result.returncode == 5, result.stderr
    assert_no_secret(result.stdout, result.stderr)
    assert len(result.stderr.decode().strip().splitlines()) == 1


def test_unreachable_server_is_unavailable_without_password() -> None:
    """A closed port is exit 5; neither the message nor a traceback holds the password."""
    from memctl.postgres import PostgresStore

    for url in _unreachable_urls():
        with pytest.raises(StorageUnavailable) as caught:
            PostgresStore(url)
        assert_clean_error(caught.value)
        assert "***" in str(caught.value)
        for args in (["db", "info", "--json"], ["list", "--json"], ["record", "-s", "s1", "x"]):
            result = run_memctl("--db", url, *args, env={"MEMCTL_DEBUG": "1"})
            assert result.returncode == 5, result.stderr
            assert_no_secret(result.stdout, result.stderr)


def test_percent_encoded_password_is_hidden_in_both_forms() -> None:
    """A password with URL-escaped characters is hidden raw and decoded."""
    from memctl.postgres import PostgresStore

    url = f"postgresql://memctl:p%40ss%3A{SECRET}@127.0.0.1:{free_port()}/test"
    with pytest.raises(StorageUnavailable) as caught:
        PostgresStore(url)
    assert_clean_error(caught.value, secret=f"p%40ss%3A{SECRET}")
    assert_clean_error(caught.value, secret=f"p@ss:{SECRET}")


def test_describe_info_and_repr_hide_the_password(pg_schema_url: str) -> None:
    """A working store never prints its password (the test server ignores it)."""
    from memctl.postgres import PostgresStore

    url = pg_schema_url.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@")
    store = PostgresStore(url)
    try:
        store.append("s1", [msg("hi")], me())
        info = store.info()
        assert_no_secret(store.describe(), repr(store), json.dumps(info))
        assert "***" in store.describe() and info["location"] == store.describe()
        assert info["backend"] == "postgresql" and info["schema_version"] == LATEST_VERSION
        assert info["shared_buffers"].endswith("B")  # "128MB", as the server says it
        assert info["server_version"] and set(info["bytes"]) == {
            "sessions",
            "events",
            "checkpoints",
        }
        assert info["events"] == 1 and info["sessions"] == 1 and info["checkpoints"] == 0
    finally:
        store.close()
    result = run_memctl("--db", url, "db", "info", "--json")
    assert result.returncode == 0, result.stderr
    assert_no_secret(result.stdout, result.stderr)
    assert json.loads(result.stdout)["events"] == 1


@pytest.fixture(scope="module")
def password_server() -> Iterator[str]:
    """A throwaway cluster that checks passwords (scram-sha-256); yields its URL minus password."""
    require_postgres()
    initdb = sorted(PG_BIN.glob("*/bin/initdb"))
    if not initdb:
        _cannot("no initdb: cannot start a password-checking server for this test")
    bindir = initdb[-1].parent
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        if not shutil.which("runuser"):
            _cannot("running as root without runuser: cannot start a private cluster")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="memctl-pgpw-"))
    (base / "pw").write_text("right-password\n")
    if as_postgres:
        shutil.chown(base, "postgres")
        shutil.chown(base / "pw", "postgres")
    port = free_port()
    data = base / "data"
    try:
        subprocess.run(
            [
                *as_postgres,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-N",
                "-A",
                "scram-sha-256",
                f"--pwfile={base / 'pw'}",
            ],
            check=True,
            capture_output=True,
        )
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [
                *as_postgres,
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-w",
                "-l",
                str(base / "log"),
                "start",
            ],
            check=True,
            capture_output=True,
        )
    except (subprocess.CalledProcessError, OSError) as error:
        shutil.rmtree(base, ignore_errors=True)
        _cannot(f"cannot start a password-checking server: {error}")
    try:
        yield f"postgresql://postgres:{{password}}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


def test_wrong_password_is_unavailable_without_password(password_server: str) -> None:
    """A wrong password is exit 5, one line, and the password is nowhere."""
    from memctl.postgres import PostgresStore

    url = password_server.format(password=SECRET)
    with pytest.raises(StorageUnavailable) as caught:
        PostgresStore(url)
    assert_clean_error(caught.value)
    assert "password authentication failed" in str(caught.value)
    result = run_memctl("--db", url, "list", "--json", env={"MEMCTL_DEBUG": "1"})
    assert result.returncode == 5, result.stderr
    assert_no_secret(result.stdout, result.stderr)
    # The right password works, so the failure above was about the password.
    good = PostgresStore(password_server.format(password="right-password"))
    assert good.schema_version() == LATEST_VERSION
    good.close()


# -- lost connections ---------------------------------------------------------


@pytest.mark.parametrize("pool", [None, 3], ids=["connection", "pool"])
def test_connection_killed_between_writes_is_replaced(pg_schema_url: str, pool: int | None) -> None:
    """A backend terminated while idle costs nothing: the next write reconnects."""
    from memctl.postgres import PostgresStore

    name = f"memctl-idle-{os.getpid()}-{pool}"
    store = PostgresStore(tagged(pg_schema_url, name), pool=pool)
    try:
        assert store.append("s1", [msg("one")], me()) == [1]
        assert terminate(name) >= 1
        assert store.append("s1", [msg("two")], me()) == [2]
        assert terminate(name) >= 1
        assert [e.content for e in store.events("s1")] == ["one", "two"]
        assert store.check() == []
    finally:
        store.close()


def test_connection_killed_mid_write_is_retried_once(pg_schema_url: str) -> None:
    """A write whose backend dies inside its transaction is redone, stored exactly once."""
    from memctl.postgres import PostgresStore

    name = f"memctl-mid-{os.getpid()}"
    store = PostgresStore(tagged(pg_schema_url, name))
    store.append("s1", [msg("before")], me())
    result: dict[str, Any] = {}
    with admin() as blocker:
        use_schema(blocker, pg_schema_url)
        # Hold the session row, so the append below stops half way through
        # its transaction, waiting for the lock; kill it there.
        with blocker.transaction():
            blocker.execute("SELECT 1 FROM sessions WHERE id = 's1' FOR UPDATE")
            writer = threading.Thread(
                target=lambda: result.update(seqs=store.append("s1", [msg("during")], me()))
            )
            writer.start()
            _wait_for_lock_wait(name)
            assert terminate(name) == 1
            time.sleep(0.2)  # let the retry queue on the same lock again
        writer.join(30)
    assert result.get("seqs") == [2]
    assert [e.content for e in store.events("s1")] == ["before", "during"]
    assert store.check() == []
    store.close()


def test_retry_after_lost_acknowledgement_stores_once(pg_schema_url: str) -> None:
    """The retry of a committed append finds its events (ids chosen up front)."""
    from memctl.pg_append import append_batch, prepare
    from memctl.postgres import PostgresStore

    store = PostgresStore(pg_schema_url)
    events = [msg("a"), msg("b")]
    # The ids memctl chose for the batch before its first attempt.
    stamps = [(new_id("e"), now_ts()) for _ in events]
    conn = store._db.conn
    assert conn is not None
    # First attempt commits; its reply is "lost"; the retry runs the same batch.
    batch = prepare("s1", events, stamps)
    first = append_batch(conn, "s1", batch, me(), retry=False)
    again = append_batch(conn, "s1", batch, me(), retry=True)
    assert first == again == [1, 2]
    assert [e.content for e in store.events("s1")] == ["a", "b"]
    info = store.get_session("s1")
    assert info is not None and info.events == 2
    store.close()


KILLER_ROUNDS = 150
# Appends can outrun the killer on a quiet machine: keep writing (up to this
# many rounds) until the storm has really hit.
MAX_KILLER_ROUNDS = 3000
MIN_KILLS = 20


@pytest.mark.parametrize("pool", [None, 2], ids=["connection", "pool"])
def test_killing_backends_around_writes_loses_and_doubles_nothing(
    pg_schema_url: str, pool: int | None
) -> None:
    """Under a stream of terminations every acknowledged event is stored exactly once."""
    from memctl.postgres import PostgresStore

    name = f"memctl-storm-{os.getpid()}-{pool}"
    store = PostgresStore(tagged(pg_schema_url, name), pool=pool)
    stop = threading.Event()
    kills = []
    rng = random.Random(7)

    def killer() -> None:
        while not stop.is_set():
            kills.append(terminate(name))
            time.sleep(rng.uniform(0.002, 0.03))

    thread = threading.Thread(target=killer)
    thread.start()
    acknowledged, failed, rounds = [], 0, 0
    try:
        for i in range(MAX_KILLER_ROUNDS):
            if i >= KILLER_ROUNDS and sum(kills) >= MIN_KILLS:
                break
            rounds += 1
            try:
                store.append("s1", [msg(f"m{i}")], me())
            except StorageUnavailable:
                failed += 1  # both attempts killed: not acknowledged, may or may not be stored
            else:
                acknowledged.append(f"m{i}")
    finally:
        stop.set()
        thread.join()
    try:
        contents = [e.content for e in store.events("s1")]  # the next call works
        assert len(contents) == len(set(contents)), "an event was stored twice"
        assert set(acknowledged) <= set(contents), "an acknowledged event was lost"
        assert [e.seq for e in store.events("s1")] == list(range(1, len(contents) + 1))
        assert store.check() == []
        # The storm hit, and the single retry saved most writes from it.
        assert sum(kills) >= MIN_KILLS, kills
        assert len(acknowledged) > rounds // 2, f"{failed} of {rounds} failed"
    finally:
        store.close()


# -- migrations ---------------------------------------------------------------

MIGRATOR = textwrap.dedent(
    """
    import sys, time
    from memctl.postgres import PostgresStore
    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
    store = PostgresStore(sys.argv[1])
    print(store.schema_version())
    store.close()
    """
)


def test_concurrent_first_start_migrates_once(pg_schema_url: str) -> None:
    """Processes opening a fresh schema at the same instant all succeed; it is built once."""
    start_at = str(time.time() + 1.5)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATOR, pg_schema_url, start_at],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 8, [err for _, err in outputs]
    assert {out.strip() for out, _ in outputs} == {str(LATEST_VERSION)}
    with admin() as conn:
        use_schema(conn, pg_schema_url)
        versions = conn.execute("SELECT version FROM memctl_migrations ORDER BY version")
        assert [row[0] for row in versions] == list(range(1, LATEST_VERSION + 1))


def test_newer_schema_is_refused(pg_schema_url: str) -> None:
    """A schema written by a newer memctl is exit 5, never half-used."""
    from memctl.postgres import PostgresStore

    PostgresStore(pg_schema_url).close()
    with admin() as conn:
        use_schema(conn, pg_schema_url)
        conn.execute(
            "INSERT INTO memctl_migrations (version, name) VALUES (%s, 'from the future')",
            (LATEST_VERSION + 1,),
        )
    with pytest.raises(SchemaTooNew):
        PostgresStore(pg_schema_url)
    result = run_memctl("--db", pg_schema_url, "list")
    assert result.returncode == 5
    assert b"newer" in result.stderr


def test_reopening_is_idempotent(pg_schema_url: str) -> None:
    """Opening an up-to-date schema changes nothing and keeps the data."""
    from memctl.postgres import PostgresStore

    first = PostgresStore(pg_schema_url)
    first.append("s1", [msg("kept")], me())
    first.close()
    second = PostgresStore(pg_schema_url)
    assert [e.content for e in second.events("s1")] == ["kept"]
    assert second.schema_version() == LATEST_VERSION
    second.close()


# -- values PostgreSQL cannot hold ---------------------------------------------


def test_nul_and_surrogates_round_trip_as_on_sqlite(pg_schema_url: str, tmp_path: Path) -> None:
    """jsonb and text reject NUL; the input layer's U+FFFD makes both backends agree."""
    line = json.dumps(
        {"role": "user", "content": "a\u0000b\udcff", "payload": {"k": "x\u0000y", "z": [1.5]}}
    )
    shown = []
    for url in (pg_schema_url, str(tmp_path / "x.db")):
        recorded = run_memctl("--db", url, "record", "-s", "s1", input=line + "\n")
        assert recorded.returncode == 0, recorded.stderr
        result = run_memctl("--db", url, "show", "s1", "--json")
        assert result.returncode == 0, result.stderr
        shown.append([_without_ids(e) for e in json.loads(result.stdout)])
    assert shown[0] == shown[1]
    assert shown[0][0]["content"] == "a\ufffdb\ufffd"


def test_nul_given_straight_to_the_store_is_bad_input(pg_schema_url: str) -> None:
    """Bypassing the input layer, a NUL is a clear BadInput, not a driver error."""
    from memctl.postgres import PostgresStore

    store = PostgresStore(pg_schema_url)
    with pytest.raises(BadInput):
        store.append("s1", [msg("a\x00b")], me())
    assert store.append("s1", [msg("ok")], me()) == [1]
    store.close()


# -- pooling ------------------------------------------------------------------


def test_pool_from_url_serves_threads(pg_schema_url: str) -> None:
    """``?pool=N`` gives a pool; threads appending to one session keep seq gapless."""
    from memctl.postgres import PostgresStore
    from memctl.storage import open_store

    store = open_store(pg_schema_url + "&pool=4&prepare_threshold=2")
    assert isinstance(store, PostgresStore) and store._db.pool is not None

    def work(n: int) -> None:
        for i in range(40):
            store.append("shared", [msg(f"{n}-{i}")], me())

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seqs = [e.seq for e in store.events("shared")]
    assert seqs == list(range(1, 241))
    assert store.check() == []
    store.close()


# -- prepared statements ----------------------------------------------------


def _prepared_count(conn: Any) -> int:
    row = conn.execute("SELECT count(*) AS n FROM pg_prepared_statements").fetchone()
    return int(row["n"])


def test_statements_are_prepared_by_default_and_off_on_request(pg_schema_url: str) -> None:
    """From a statement's second use it is prepared; ``prepare_threshold=off`` prepares none."""
    from memctl.postgres import PostgresStore

    for url, prepared in ((pg_schema_url, True), (pg_schema_url + "&prepare_threshold=off", False)):
        store = PostgresStore(url)
        for i in range(3):
            store.append("s1", [msg(f"m{i}")], me())
        conn = store._db.conn
        assert conn is not None
        assert (_prepared_count(conn) > 0) is prepared, url
        store.close()


@pytest.mark.parametrize("mess", ["vanished", "taken"])
def test_a_proxy_losing_prepared_statements_turns_preparing_off(
    pg_schema_url: str, mess: str
) -> None:
    """What pgbouncer in transaction mode does to prepared statements, done on a real server.

    "vanished": the server connection no longer has the statements psycopg
    prepared (a proxy switched connections): 26000. "taken": the names psycopg
    is about to use already exist there (another client's): 42P05. Either way
    the append is stored once, and memctl stops preparing.
    """
    from memctl.postgres import PostgresStore

    store = PostgresStore(pg_schema_url)
    conn = store._db.conn
    assert conn is not None
    store.append("s1", [msg("first")], me())
    if mess == "vanished":
        store.append("s1", [msg("second")], me())
        assert _prepared_count(conn) > 0
        # Behind psycopg's back, as a proxy would: psycopg still thinks they exist.
        conn.pgconn.exec_(b"DEALLOCATE ALL")
    else:
        for n in range(50):
            conn.pgconn.exec_(f"PREPARE _pg3_{n} AS SELECT {n}".encode())
        store.append("s1", [msg("second")], me())
    store.append("s1", [msg("third")], me())
    assert store._db._prepare_threshold is None and conn.prepare_threshold is None
    assert [e.content for e in store.events("s1")] == ["first", "second", "third"]
    assert [hit.seq for hit in store.search("third", SearchFilters())] == [3]
    store.close()


def test_pool_threads_that_were_preparing_each_fall_back(pg_schema_url: str) -> None:
    """Two pooled connections lose their statements at once: both threads' calls succeed.

    Each thread checked its connection out while preparing was on; the first
    to fail turns it off, and the second must still get its unprepared retry.
    """
    from memctl.postgres import PostgresStore

    store = PostgresStore(pg_schema_url + "&pool=2")
    pool = store._db.pool
    assert pool is not None
    query = "SELECT count(*) AS n FROM events"
    held = [pool.getconn(), pool.getconn()]
    for conn in held:
        conn.execute(query)
        conn.execute(query)  # prepared from the second use
        assert _prepared_count(conn) > 0
        conn.pgconn.exec_(b"DEALLOCATE ALL")  # behind psycopg's back, as a proxy would
        pool.putconn(conn)
    both_in = threading.Barrier(2, timeout=10)
    first_try = threading.local()
    results: list[object] = []

    def count(conn: Any) -> int:
        if not getattr(first_try, "done", False):
            first_try.done = True
            both_in.wait()  # both connections checked out before either fails
        return int(conn.execute(query).fetchone()["n"])

    def work() -> None:
        try:
            results.append(store._db.run(count))
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [0, 0]
    assert store._db._prepare_threshold is None
    store.close()


def test_a_statement_prepared_before_a_schema_change_falls_back(pg_schema_url: str) -> None:
    """Another process adds a column: a prepared ``SELECT s.*`` fails, memctl runs it unprepared."""
    from memctl.postgres import PostgresStore

    store = PostgresStore(pg_schema_url)
    store.append("s1", [msg("a")], me())
    for _ in range(3):
        assert store.get_session("s1") is not None  # prepared from the second use
    import psycopg

    with psycopg.connect(pg_schema_url, autocommit=True) as other:
        other.execute("ALTER TABLE sessions ADD COLUMN added_later text")
    info = store.get_session("s1")
    assert info is not None and info.events == 1
    assert store._db._prepare_threshold is None
    store.close()


CONCURRENT_WRITER = textwrap.dedent(
    """
    import os, sys
    from memctl.models import NewEvent
    from memctl.owners import Identity
    from memctl.postgres import PostgresStore
    from memctl.storage import Writer
    url, session, n, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    store = PostgresStore(url)
    writer = Writer(Identity.of(os.getpid()))
    for i in range(n):
        store.append(session or tag, [NewEvent("message", "user", f"{tag}-{i}")], writer)
    store.close()
    """
)


@pytest.mark.parametrize("shared", [True, False], ids=["one-session", "own-sessions"])
def test_concurrent_processes_keep_seq_gapless(pg_schema_url: str, shared: bool) -> None:
    """8 processes x 500 appends: nothing lost, nothing doubled, no gap in seq."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CONCURRENT_WRITER,
                pg_schema_url,
                "shared" if shared else "",
                "500",
                f"w{n}",
            ],
            stderr=subprocess.PIPE,
        )
        for n in range(8)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    from memctl.postgres import PostgresStore

    store = PostgresStore(pg_schema_url)
    for session in ["shared"] if shared else [f"w{n}" for n in range(8)]:
        events = store.events(session)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert len({e.content for e in events}) == len(events) == (4000 if shared else 500)
    assert store.check() == []
    store.close()


# -- helpers ------------------------------------------------------------------


def use_schema(conn: Any, url: str) -> None:
    """Point an admin connection at the schema a test URL selects."""
    schema = url.rsplit("search_path%3D", 1)[1].split("&", 1)[0]
    conn.execute("SELECT set_config('search_path', %s, false)", (schema,))


def _without_ids(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in ("id", "ts")}


def _wait_for_lock_wait(name: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with admin() as conn, contextlib.suppress(Exception):
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = %s AND wait_event_type = 'Lock'",
                (name,),
            ).fetchone()
            if row and row[0]:
                return
        time.sleep(0.02)
    raise AssertionError("the append never waited for the row lock")


@pytest.mark.parametrize(
    "action",
    ["resume", "end", "write", "own-write", "own-import", "checkpoint", "touch", "db-copy"],
)
def test_takeover_of_a_locked_session_gives_up_after_the_lock_timeout(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    """A claim, an end, a write (the owner's one-statement append and copied batch too) or
    a ``db copy`` into the session waits a bounded time for a row lock a stuck process
    holds, then exit 5."""
    import psycopg

    import memctl
    from memctl import pg_append

    monkeypatch.setattr(pg_append, "LOCK_TIMEOUT_SECONDS", 0.5)
    with memctl.open(pg_schema_url) as mem:
        session = mem.start()
        session.stop()
        raised: list[BaseException] = []

        def take_over() -> None:
            try:
                if action == "resume":
                    mem.resume(session.id, force=True)
                elif action == "end":
                    mem.end(session.id)
                elif action == "write":  # by a process that does not own the session
                    other = Writer(Identity.of(os.getppid()))
                    mem.store.append(session.id, [NewEvent(type="note")], other)
                elif action in ("own-write", "own-import"):  # pg_fast's shortcut
                    count = 1 if action == "own-write" else 100
                    events = [NewEvent(type="note")] * count
                    mem.store.append(session.id, events, session.writer)
                elif action == "db-copy":  # more events of the session copied in
                    info = mem.store.get_session(session.id)
                    assert info is not None
                    mem.store.import_session(info, [], [])
                elif action == "checkpoint":
                    mem.store.checkpoint(session.id, {}, None, Writer(Identity.of(os.getppid())))
                else:
                    mem.store.touch(session.id, Writer(Identity.of(os.getpid())))
            except BaseException as exc:
                raised.append(exc)

        with psycopg.connect(pg_schema_url) as holder:  # a transaction left open, as by SIGSTOP
            holder.execute("SELECT 1 FROM sessions WHERE id = %s FOR UPDATE", (session.id,))
            worker = threading.Thread(target=take_over)
            worker.start()
            worker.join(timeout=10)
            gave_up = not worker.is_alive()
        worker.join()  # the holder's transaction ended with its connection
        assert gave_up, f"{action} still waiting for the lock after 10 s"
        assert len(raised) == 1 and isinstance(raised[0], StorageUnavailable), raised
        assert "gave up waiting for a lock" in str(raised[0])
        # Once the holder has let go, the same call works.
        mem.resume(session.id, force=True)[0].end()


def test_copying_a_fact_gives_up_on_a_stuck_copy_of_it(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``db copy`` of a fact another copy holds (its advisory lock, in a transaction left
    open) gives up after the lock timeout instead of waiting forever."""
    import psycopg

    import memctl
    from memctl import pg_append, pg_copy

    monkeypatch.setattr(pg_append, "LOCK_TIMEOUT_SECONDS", 0.5)
    with memctl.open(pg_schema_url) as mem:
        fact = mem.add_fact("the billing service retries three times", key="billing")
        history = mem.store.fact_history(fact.id)
        raised: list[BaseException] = []

        def copy_in() -> None:
            try:
                mem.store.import_fact(fact, history)
            except BaseException as exc:
                raised.append(exc)

        with psycopg.connect(pg_schema_url) as holder:
            holder.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (pg_copy._FACT_LOCK, fact.id)
            )
            worker = threading.Thread(target=copy_in)
            worker.start()
            worker.join(timeout=10)
            gave_up = not worker.is_alive()
        worker.join()  # the holder's lock ended with its connection
        assert gave_up, "the fact's copy still waiting for the lock after 10 s"
        assert len(raised) == 1 and isinstance(raised[0], StorageUnavailable), raised
        assert "gave up waiting for a lock" in str(raised[0])
        assert mem.store.import_fact(fact, history) is False  # already there, lock free


def test_heartbeat_outlasts_a_lock_held_past_the_timeout(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beats that give up on a stuck row lock (StorageUnavailable) do not stop the heartbeat:
    once the lock is free, the next beat renews the lease."""
    import psycopg

    import memctl
    from memctl import pg_append
    from memctl.core import Session

    monkeypatch.setattr(pg_append, "LOCK_TIMEOUT_SECONDS", 0.2)
    with memctl.open(pg_schema_url) as mem:
        started = mem.start()
        started.stop()
        # A short lease: a beat every 0.2 s.
        writer = Writer(started.writer.identity, started.epoch, lease_seconds=0.6)
        session = Session(mem, started.id, writer)

        def lease_until() -> float:
            info = mem.store.get_session(session.id)
            assert info is not None and info.owner is not None and info.owner.lease_until
            return float(info.owner.lease_until)

        session.keep_alive()
        try:
            # The first beat replaces the start's 60 s lease with a short one.
            deadline = time.monotonic() + 5
            while lease_until() > time.time() + 5 and time.monotonic() < deadline:
                time.sleep(0.05)
            with psycopg.connect(pg_schema_url) as holder:  # a transaction left open
                holder.execute("SELECT 1 FROM sessions WHERE id = %s FOR UPDATE", (session.id,))
                time.sleep(1.5)  # several beats give up on the lock meanwhile
                held_until = lease_until()
            deadline = time.monotonic() + 5
            while lease_until() <= held_until and time.monotonic() < deadline:
                time.sleep(0.05)
            assert lease_until() > held_until, "the heartbeat stopped at the held lock"
        finally:
            session.stop()


def test_a_search_path_naming_no_schema_says_so() -> None:
    """A URL whose search_path names a schema that does not exist: exit 5, one line, no SQL."""
    require_postgres()
    separator = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{separator}options=-csearch_path%3Dmemctl_no_such_schema"
    done = run_memctl("--db", url, "list")
    assert done.returncode == 5, done.stderr
    assert b"no schema named in the search_path exists" in done.stderr
    assert b"LINE 1" not in done.stderr and b"CREATE TABLE" not in done.stderr
    assert done.stderr.count(b"\n") == 1
