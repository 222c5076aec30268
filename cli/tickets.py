"""``switchboard ticket``: list, show and create tickets, and move them through their
lifecycle (assign, transfer, start, feedback, resume, revisit, close, reopen, urge, cc,
comment) — each through the running server's HTTP API (docs/api.md "Tickets"), with the
exit codes of :mod:`cli.client` (an illegal move is refused with the server's reason)."""

from __future__ import annotations

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
    _seg,
    _sub,
    _when,
)

ticket_app = _sub("Tickets: list, show, create; assign, transfer, close, reopen, urge, comment.")

RefArg = Annotated[str, typer.Argument(metavar="TICKET", help="Ticket id or number (T-000123).")]
NoteOpt = Annotated[str, typer.Option("--note", "-m", help="A note for the audit trail.")]
UserOpt = Annotated[str | None, typer.Option("--user", help="A user name.")]
DepartmentOpt = Annotated[str | None, typer.Option("--department", help="A department.")]

TICKET_COLUMNS = [
    _col("NUMBER", "number"),
    _col("STATE", "state"),
    _col("PRIORITY", "priority"),
    _col("TYPE", "type"),
    _col("TITLE", "title"),
    _col("ASSIGNEE", "assignee"),
    _col("DEPARTMENT", "department"),
    _col("URGED", "urgency"),
    _col("RESOLUTION DUE", "resolution_due", _when),
]


@ticket_app.command("list")
def ticket_list(
    config: ConfigOpt = DEFAULT_CONFIG,
    state: Annotated[str | None, typer.Option(help="In this state.")] = None,
    open_only: Annotated[
        bool | None, typer.Option("--open/--closed", help="Only open / only closed ones.")
    ] = None,
    assignee: Annotated[str | None, typer.Option(help="Assigned to this user.")] = None,
    department: DepartmentOpt = None,
    customer: Annotated[int | None, typer.Option(help="Of this customer id.")] = None,
    as_json: JsonOpt = False,
    limit: LimitOpt = None,
) -> None:
    """The tickets you may see, newest first; every filter given must hold."""
    _listing(
        config,
        "/api/tickets",
        as_json,
        limit,
        TICKET_COLUMNS,
        "no tickets",
        state=state,
        open=None if open_only is None else str(open_only).lower(),
        assignee=assignee,
        department=department,
        customer_id=customer,
    )


@ticket_app.command("show")
def ticket_show(ref: RefArg, config: ConfigOpt = DEFAULT_CONFIG, as_json: JsonOpt = False) -> None:
    """One ticket: every field, then its audit trail."""
    with _api(config) as api:
        item = api.get(f"/api/tickets/{_seg(ref)}")
    if as_json:
        _print_json(item)
        return
    events = item.pop("events", [])
    item.pop("notifications", None)
    _fields(item)
    for e in events:
        before, after = e["from_state"], e["to_state"]
        move = "" if before == after else f" {before} -> {after}" if before else f" -> {after}"
        note = f": {e['note']}" if e["note"] else ""
        typer.echo(f"{_when(e['time'])} {e['user']} {e['action']}{move}{note}")


@ticket_app.command("create")
def ticket_create(
    type_: Annotated[str, typer.Option("--type", help="A ticket type (tickets.types).")],
    title: Annotated[str, typer.Option(help="What it is about, in one line.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    description: Annotated[str, typer.Option(help="The details.")] = "",
    priority: Annotated[str, typer.Option(help="low, normal, high or urgent.")] = "normal",
    category: Annotated[str | None, typer.Option(help="A category (tickets.categories).")] = None,
    customer: Annotated[int | None, typer.Option(help="The customer id.")] = None,
    call: Annotated[
        str | None,
        typer.Option("--call", help="The call's record id: links the call and its recording."),
    ] = None,
    assignee: UserOpt = None,
    department: DepartmentOpt = None,
    cc: Annotated[list[str] | None, typer.Option("--cc", help="Copy a user (repeatable).")] = None,
) -> None:
    """Create a ticket (optionally from a call, assigned, with users copied)."""
    body: dict[str, Any] = {
        "type": type_,
        "title": title,
        "description": description,
        "priority": priority,
        "category": category,
        "customer_id": customer,
        "record_id": call,
        "assignee": assignee,
        "department": department,
        "cc": cc or [],
    }
    with _api(config) as api:
        created = api.request("POST", "/api/tickets", body=body)
    typer.echo(f"ticket {created['number']} created ({created['state']}): {created['title']}")


def _act(config: Any, ref: str, action: str, body: dict[str, Any]) -> None:
    with _api(config) as api:
        t = api.request("POST", f"/api/tickets/{_seg(ref)}/{action}", body=body)
    who = t.get("assignee") or t.get("department") or "nobody"
    typer.echo(f"ticket {t['number']}: {t['state']} (assigned to {who})")


@ticket_app.command("assign")
def ticket_assign(
    ref: RefArg,
    config: ConfigOpt = DEFAULT_CONFIG,
    user: UserOpt = None,
    department: DepartmentOpt = None,
    note: NoteOpt = "",
) -> None:
    """Dispatch a ticket to a user and/or a department."""
    _act(config, ref, "assign", {"user": user, "department": department, "note": note})


@ticket_app.command("transfer")
def ticket_transfer(
    ref: RefArg,
    config: ConfigOpt = DEFAULT_CONFIG,
    user: UserOpt = None,
    department: DepartmentOpt = None,
    note: NoteOpt = "",
) -> None:
    """Hand a ticket over to another department or person."""
    _act(config, ref, "transfer", {"user": user, "department": department, "note": note})


def _simple(action: str, help_text: str) -> None:
    def command(ref: RefArg, config: ConfigOpt = DEFAULT_CONFIG, note: NoteOpt = "") -> None:
        _act(config, ref, action, {"note": note})

    command.__doc__ = help_text
    ticket_app.command(action)(command)


_simple("start", "Start working on a ticket.")
_simple("feedback", "Wait on the customer (the SLA clock stops).")
_simple("resume", "Back to work after feedback or an unsatisfied revisit.")
_simple("close", "Close a ticket.")
_simple("reopen", "Reopen a closed ticket.")
_simple("urge", "Urge a ticket: raises its urgency and notifies who handles it.")


@ticket_app.command("revisit")
def ticket_revisit(
    ref: RefArg,
    outcome: Annotated[str, typer.Option(help="What the customer said when called back.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    note: NoteOpt = "",
) -> None:
    """Mark a ticket solved with the outcome of the call back to the customer."""
    _act(config, ref, "revisit", {"outcome": outcome, "note": note})


@ticket_app.command("comment")
def ticket_comment(
    ref: RefArg,
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The comment.")],
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Comment on an open ticket (users copied on it may too)."""
    _act(config, ref, "comment", {"note": text})


@ticket_app.command("cc")
def ticket_cc(
    ref: RefArg,
    config: ConfigOpt = DEFAULT_CONFIG,
    add: Annotated[list[str] | None, typer.Option("--add", help="Copy a user.")] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", help="Stop copying.")] = None,
) -> None:
    """Copy users on a ticket or take them off."""
    _act(config, ref, "cc", {"add": add or [], "remove": remove or []})
