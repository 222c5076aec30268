"""``switchboard kb`` (search, show and add knowledge-base articles) and ``switchboard qa``
(list and show evaluations), each through the running server's HTTP API (docs/api.md
"Knowledge base" and "Quality assessment"), with the exit codes of :mod:`cli.client`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.commands import (
    DEFAULT_CONFIG,
    ConfigOpt,
    JsonOpt,
    LimitOpt,
    _api,
    _col,
    _fields,
    _listing,
    _print_json,
    _sub,
    _when,
)

kb_app = _sub("The knowledge base: search, show and add articles.")
qa_app = _sub("Quality assessment: evaluations of agents' calls.")

ARTICLE_COLUMNS = [
    _col("ID", "id"),
    _col("TITLE", "title"),
    _col("KEYWORDS", "keywords"),
    _col("CATEGORY", "category_id"),
    _col("VIEWS", "views"),
    _col("UPDATED", "updated_at", _when),
]
EVALUATION_COLUMNS = [
    _col("ID", "id"),
    _col("AGENT", "agent"),
    _col("EVALUATOR", "evaluator"),
    _col("TASK", "task_id"),
    _col("CALL", "call_id"),
    _col("TOTAL %", "total"),
    _col("AUTO-FAIL", "auto_failed"),
    _col("PUBLISHED", "published"),
    _col("UPDATED", "updated_at", _when),
]


@kb_app.command("search")
def kb_search(
    query: Annotated[str, typer.Argument(metavar="QUERY", help="Words; all must match.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    category: Annotated[
        int | None, typer.Option(help="Only this category (and its sub-categories).")
    ] = None,
    as_json: JsonOpt = False,
    limit: LimitOpt = None,
) -> None:
    """Articles you may read with every word of QUERY, best first (title hits first)."""
    _listing(
        config,
        "/api/kb/search",
        as_json,
        limit,
        ARTICLE_COLUMNS,
        "no articles",
        q=query,
        category=category,
    )


@kb_app.command("show")
def kb_show(
    article_id: Annotated[int, typer.Argument(metavar="ID", help="The article id.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
) -> None:
    """One article: its fields, then its markdown text (counted as a view)."""
    with _api(config) as api:
        item: dict[str, Any] = api.get(f"/api/kb/articles/{article_id}")
    if as_json:
        _print_json(item)
        return
    _fields(item, skip=("body",))
    typer.echo("")
    typer.echo(item.get("body", ""))


@kb_app.command("add")
def kb_add(
    title: Annotated[str, typer.Option(help="The title.")],
    category: Annotated[int, typer.Option(help="The category id.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    body_file: Annotated[
        Path | None,
        typer.Option("--file", help="The markdown text from this file (default: --text)."),
    ] = None,
    text: Annotated[str, typer.Option("--text", help="The markdown text.")] = "",
    keyword: Annotated[
        list[str] | None, typer.Option("--keyword", "-k", help="A keyword (repeatable).")
    ] = None,
) -> None:
    """Add an article (needs edit rights on the category)."""
    if body_file is not None:
        try:
            text = body_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            typer.echo(f"cannot read {body_file}: {exc}", err=True)
            raise typer.Exit(2) from None
    body = {"title": title, "category_id": category, "body": text, "keywords": keyword or []}
    with _api(config) as api:
        created = api.post("/api/kb/articles", body)
    typer.echo(f"article {created['id']} added: {created['title']}")


@qa_app.command("list")
def qa_list(
    config: ConfigOpt = DEFAULT_CONFIG,
    agent: Annotated[str | None, typer.Option(help="Only this agent's evaluations.")] = None,
    task: Annotated[int | None, typer.Option(help="Only this task's evaluations.")] = None,
    as_json: JsonOpt = False,
    limit: LimitOpt = None,
) -> None:
    """Evaluations you may see, the latest first (agents: their own published ones)."""
    _listing(
        config,
        "/api/qa/evaluations",
        as_json,
        limit,
        EVALUATION_COLUMNS,
        "no evaluations",
        agent=agent,
        task=task,
    )


@qa_app.command("show")
def qa_show(
    evaluation_id: Annotated[int, typer.Argument(metavar="ID", help="The evaluation id.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
) -> None:
    """One evaluation: the scorecard's items with the points given, then the total."""
    with _api(config) as api:
        item: dict[str, Any] = api.get(f"/api/qa/evaluations/{evaluation_id}")
        card: dict[str, Any] = api.get(f"/api/qa/scorecards/{item['scorecard_id']}")
    if as_json:
        _print_json({**item, "scorecard": card})
        return
    _fields(item, skip=("scores", "failed", "comment"))
    scores: dict[str, Any] = item.get("scores", {})
    failed = set(item.get("failed", []))
    for section in card.get("sections", []):
        typer.echo(f"\n{section['name']}")
        for i in section["items"]:
            given = scores.get(i["key"])
            shown = "-" if given is None else f"{given:g}"
            notes = [
                n for n, on in (("system", i.get("computed")), ("FAILED", i["key"] in failed)) if on
            ]
            extra = f"  ({', '.join(notes)})" if notes else ""
            typer.echo(f"  {i['label']}: {shown} / {i['max_points']:g}{extra}")
    if item.get("comment"):
        typer.echo(f"\ncomment: {item['comment']}")
