"""``memctl fact``: the semantic tier on the command line."""

# No `from __future__ import annotations`: see cli.py.

from typing import Annotated

import typer

from .cli_common import (
    MAX_COUNT,
    JsonlOpt,
    JsonOpt,
    SessionOpt,
    fail,
    fancy,
    one_format,
    print_rich,
    say,
    state_of,
)
from .core import fact_key
from .models import Fact
from .text import dumps, one_line, sanitize

fact_app = typer.Typer(
    no_args_is_help=True,
    help="Semantic memory: facts the agent learned, with keys, tags and history.",
)


def _emit(facts: list[Fact], as_json: bool, as_jsonl: bool) -> None:
    one_format(as_json, as_jsonl)
    if as_json:
        typer.echo(dumps([fact.to_dict() for fact in facts]))
    elif as_jsonl:
        for fact in facts:
            typer.echo(dumps(fact.to_dict()))
    elif fancy():
        from .render import rich_facts

        if facts:
            print_rich(rich_facts(facts))
        else:
            say("No facts.")
    else:
        for fact in facts:
            typer.echo(
                "\t".join(
                    [
                        fact.id,
                        _flat(fact.key or ""),
                        _flat(",".join(fact.tags)),
                        one_line(fact.text, 200),
                    ]
                )
            )


def _flat(text: str) -> str:
    """Keys and tags are stored text too: escaped, on one line, never cut."""
    return sanitize(text, keep_newlines=False)


@fact_app.command("add")
def fact_add(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="The fact; '-' reads it from stdin.")],
    key: Annotated[
        str | None,
        typer.Option("--key", "-k", help="Unique key: adding it again updates the fact."),
    ] = None,
    tags: Annotated[
        list[str] | None,
        typer.Option(
            "--tag",
            help="A tag; repeatable. An update without --tag keeps the tags.",
            show_default=False,
        ),
    ] = None,
    session: SessionOpt = None,
    seq: Annotated[
        int | None, typer.Option("--seq", min=1, max=MAX_COUNT, help="The event it came from.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a fact (or update the one with --key) and print its id."""
    import sys

    if text == "-":
        text = sys.stdin.read()
    memory = state_of(ctx).memory()
    session_id = memory.resolve(session) if session else None
    fact = memory.add_fact(text, key=key, tags=tags, session_id=session_id, seq=seq)
    typer.echo(dumps(fact.to_dict()) if as_json else fact.id)


@fact_app.command("list")
def fact_list(
    ctx: typer.Context,
    tag: Annotated[str | None, typer.Option("--tag", help="Only facts with this tag.")] = None,
    session: SessionOpt = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=MAX_COUNT, help="At most N facts.")
    ] = 50,
    as_json: JsonOpt = False,
    as_jsonl: JsonlOpt = False,
) -> None:
    """Facts, most recently updated first."""
    memory = state_of(ctx).memory()
    session_id = memory.resolve(session) if session else None
    _emit(memory.store.facts(tag=tag, session=session_id, limit=limit), as_json, as_jsonl)


@fact_app.command("show")
def fact_show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Key or id.")],
    as_json: JsonOpt = False,
) -> None:
    """One fact and its history (ADD / UPDATE / DELETE)."""
    memory = state_of(ctx).memory()
    ref = fact_key(ref)
    fact = memory.store.get_fact(ref)
    history = memory.store.fact_history(fact.id if fact else ref)
    if fact is None and not history:
        fail(f"error: no fact {ref!r}", 3)
    if as_json:
        typer.echo(
            dumps(
                {
                    "fact": fact.to_dict() if fact else None,
                    "history": [change.to_dict() for change in history],
                }
            )
        )
        return
    if fact is not None:
        key, tags = _flat(fact.key or "-"), _flat(",".join(fact.tags) or "-")
        typer.echo(f"{fact.id}  key={key}  tags={tags}")
        typer.echo(one_line(fact.text, 10_000))
    for change in history:
        typer.echo(f"  {change.ts}  {change.action:<6}  {one_line(change.text or '', 120)}")


@fact_app.command("search")
def fact_search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help='Words (ANDed), "a phrase", prefix*, OR, -word.')],
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=MAX_COUNT, help="At most N facts.")
    ] = 10,
    as_json: JsonOpt = False,
    as_jsonl: JsonlOpt = False,
) -> None:
    """Full-text search over facts, best match first."""
    _emit(state_of(ctx).memory().search_facts(query, limit=limit), as_json, as_jsonl)


@fact_app.command("forget")
def fact_forget(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Key or id.")],
) -> None:
    """Remove a fact for good: the fact, its index entry and the text of its history."""
    forgotten = state_of(ctx).memory().store.forget_fact(fact_key(ref))
    if forgotten is None:
        fail(f"error: no fact {ref!r}", 3)
    say(f"memctl: forgot {forgotten.id}")
