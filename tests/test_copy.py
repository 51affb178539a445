"""`memctl db copy`: sessions and facts move between databases, identically and re-runnably."""

from __future__ import annotations

import json
from pathlib import Path

import memctl
from tests.conftest import run_memctl


def _fill(db: str) -> None:
    call = json.dumps({"id": "c1", "name": "read_file", "arguments": {"path": "u.py"}})
    steps = [
        ("-s", "cp-a", "Refactor utils.py"),
        ("-s", "cp-a", "--role", "assistant", "--tool-call", call, "Reading"),
        ("-s", "cp-a", "--role", "tool", "--tool-call-id", "c1", "def f(): ..."),
        ("-s", "cp-b", "--type", "plan_updated", "--payload", '{"steps": 3}'),
    ]
    for step in steps:
        assert run_memctl("--db", db, "record", *step).returncode == 0
    assert run_memctl("--db", db, "checkpoint", "-s", "cp-a", "--state", '{"k": 1}').returncode == 0
    assert run_memctl("--db", db, "end", "cp-b").returncode == 0
    with memctl.open(db) as mem:
        mem.add_fact("retries 3 times", key="billing.retries", tags=["billing"])
        mem.add_fact("retries 5 times", key="billing.retries", tags=["billing"])
        mem.add_fact("forget me", key="gone")
        mem.store.forget_fact("gone")


def _show(db: str, session: str) -> object:
    out = run_memctl("--db", db, "show", session, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_copy_round_trip_is_identical(tmp_path: Path, db_url: str) -> None:
    """SQLite -> target -> SQLite gives identical `show --json`, checkpoints and facts."""
    source = str(tmp_path / "source.db")
    back = str(tmp_path / "back.db")
    _fill(source)
    there = run_memctl("--db", source, "db", "copy", "--to", db_url)
    assert there.returncode == 0, there.stderr
    home = run_memctl("--db", db_url, "db", "copy", "--to", back)
    assert home.returncode == 0, home.stderr
    for session in ("cp-a", "cp-b"):
        assert _show(source, session) == _show(db_url, session) == _show(back, session)
    with memctl.open(back) as mem:
        assert mem.get("cp-b").status.value == "ended"
        checkpoint = mem.store.latest_checkpoint("cp-a")
        assert checkpoint is not None and checkpoint.state == {"k": 1} and checkpoint.seq == 3
        fact = mem.store.get_fact("billing.retries")
        assert fact is not None and fact.text == "retries 5 times"
        assert [c.action for c in mem.store.fact_history("billing.retries")] == ["ADD", "UPDATE"]
        assert mem.store.get_fact("gone") is None
        assert [c.text for c in mem.store.fact_history("gone")] == [None, None]


def test_copy_is_safe_to_rerun(tmp_path: Path, db_url: str) -> None:
    """A second copy adds nothing; a copy after more events adds only those."""
    source = str(tmp_path / "source.db")
    _fill(source)
    first = run_memctl("--db", source, "db", "copy", "--to", db_url, "--json")
    assert json.loads(first.stdout)["events_added"] == 4
    # Facts count the live ones, as db info does; the forgotten one's history apart.
    assert json.loads(first.stdout)["facts"] == 1
    assert json.loads(first.stdout)["forgotten"] == 1
    again = run_memctl("--db", source, "db", "copy", "--to", db_url, "--json")
    assert json.loads(again.stdout)["events_added"] == 0
    assert json.loads(again.stdout)["facts_added"] == 0
    run_memctl("--db", source, "record", "-s", "cp-a", "one more")
    more = run_memctl("--db", source, "db", "copy", "--to", db_url, "--json")
    assert json.loads(more.stdout)["events_added"] == 1
    assert _show(source, "cp-a") == _show(db_url, "cp-a")


def test_copy_refuses_to_merge_a_different_session(tmp_path: Path, db_url: str) -> None:
    """A target holding other events under the same session id is a conflict (exit 6)."""
    source = str(tmp_path / "source.db")
    _fill(source)
    assert run_memctl("--db", db_url, "record", "-s", "cp-a", "something else").returncode == 0
    clash = run_memctl("--db", source, "db", "copy", "--to", db_url, "--session", "cp-a")
    assert clash.returncode == 6
    assert b"Traceback" not in clash.stderr
