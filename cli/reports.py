"""``switchboard report``: the running server's reports (docs/reports.md) over its API.

``list`` names them, ``show`` prints one as a table (or its JSON), ``export`` saves it as
CSV, XLSX or a PNG chart. The server computes everything; these commands parse arguments,
make one request and print or save what comes back.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.commands import (
    DEFAULT_CONFIG,
    ConfigOpt,
    JsonOpt,
    _api,
    _col,
    _print_json,
    _seg,
    _table,
)

__all__ = ["report_app"]

report_app = typer.Typer(
    help="Call-centre reports: traffic, queues, agents, satisfaction (docs/reports.md).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


class FileFormat(StrEnum):
    csv = "csv"
    xlsx = "xlsx"
    png = "png"


class Period(StrEnum):
    min15 = "15min"
    min30 = "30min"
    hour = "hour"
    day = "day"
    week = "week"
    month = "month"
    total = "total"


NameArg = Annotated[str, typer.Argument(help="The report (switchboard report list).")]
SinceOpt = Annotated[
    str | None,
    typer.Option(help="From this time (ISO 8601, UTC if naive). Default: today's midnight."),
]
UntilOpt = Annotated[
    str | None,
    typer.Option(help="Before this time (ISO 8601). Default: the end of today, or now."),
]
PeriodOpt = Annotated[
    Period, typer.Option(help="One row per interval of this length, cut in the report zone.")
]
QueueOpt = Annotated[str | None, typer.Option(help="Only this queue.")]
AgentOpt = Annotated[str | None, typer.Option(help="Only this agent (agent id).")]
SkillOpt = Annotated[str | None, typer.Option(help="Only agents with this skill.")]
TrunkOpt = Annotated[str | None, typer.Option(help="Only calls through this trunk.")]


def _params(**values: Any) -> dict[str, Any]:
    return {k: (v.value if isinstance(v, StrEnum) else v) for k, v in values.items()}


def _cell(value: Any, unit: str) -> str:
    if value is None:
        return ""
    if unit == "ratio":
        return f"{float(value) * 100:.1f}%"
    if unit == "seconds":
        return f"{float(value):.0f}"
    return str(value)


@report_app.command("list")
def report_list(config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """The reports you may run (an agent: their own agent reports)."""
    with _api(config) as api:
        items = api.items("/api/reports")
    if as_json:
        _print_json(items)
        return
    _table(
        items,
        [_col("NAME", "name"), _col("TITLE", "title"), _col("AGENT", "agent_scoped")],
        "no reports",
    )


@report_app.command("show")
def report_show(
    name: NameArg,
    config: ConfigOpt = DEFAULT_CONFIG,
    since: SinceOpt = None,
    until: UntilOpt = None,
    period: PeriodOpt = Period.total,
    queue: QueueOpt = None,
    agent: AgentOpt = None,
    skill: SkillOpt = None,
    trunk: TrunkOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a report as a table: a row per interval (or agent, queue), then the totals."""
    params = _params(
        since=since, until=until, period=period, queue=queue, agent=agent, skill=skill, trunk=trunk
    )
    with _api(config) as api:
        body = api.get(f"/api/reports/{_seg(name)}", **params)
    if as_json:
        _print_json(body)
        return
    query = body.get("query") or {}
    typer.echo(
        f"{body.get('title', name)}: {query.get('since', '?')} .. {query.get('until', '?')} "
        f"({query.get('timezone', '?')}, per {query.get('period', '?')})"
    )
    columns = [
        (c["label"], lambda row, k=c["key"], u=c["unit"]: _cell(row.get(k), u))
        for c in body.get("columns", [])
    ]
    rows = list(body.get("rows") or [])
    if body.get("totals"):
        rows.append(body["totals"])
    _table(rows, columns, "nothing in this range")
    for note in body.get("notes") or []:
        typer.echo(f"note: {note}")


@report_app.command("export")
def report_export(
    name: NameArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Write the file here.")],
    fmt: Annotated[
        FileFormat, typer.Option("--format", "-f", help="csv, xlsx (with a chart) or png.")
    ] = FileFormat.csv,
    config: ConfigOpt = DEFAULT_CONFIG,
    since: SinceOpt = None,
    until: UntilOpt = None,
    period: PeriodOpt = Period.total,
    queue: QueueOpt = None,
    agent: AgentOpt = None,
    skill: SkillOpt = None,
    trunk: TrunkOpt = None,
) -> None:
    """Save a report as CSV, an XLSX workbook with a chart, or a PNG chart."""
    params = _params(
        since=since,
        until=until,
        period=period,
        queue=queue,
        agent=agent,
        skill=skill,
        trunk=trunk,
        format=fmt,
    )
    with _api(config) as api:
        content, _ = api.fetch_file(f"/api/reports/{_seg(name)}", **params)
    output.write_bytes(content)
    typer.echo(f"wrote {output} ({len(content)} bytes)")
