"""``switchboard customer``: search and show customers, add one, import a CSV or XLSX file
(with a progress bar and the per-row report as a table), export a search, and the outbound
blacklist — each through the running server's HTTP API (docs/api.md "Customers"), with the
exit codes of :mod:`cli.client` (an import that refused rows exits 1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.client import EXIT_REFUSED, ApiClient
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
    _table,
    _when,
)
from cli.recordings import ExportFormat, ExportFormatOpt, OutputOpt, save

customer_app = _sub("Customers: search, show, add, import and export; the outbound blacklist.")
blacklist_app = _sub("The outbound blacklist: numbers outbound calls must not dial.")
customer_app.add_typer(blacklist_app, name="blacklist")

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
UPLOAD_CHUNK = 256 * 1024

TextOpt = Annotated[
    str | None, typer.Option("--text", "-q", help="Name or company contains this (any case).")
]
NumberOpt = Annotated[str | None, typer.Option(help="One of the numbers, however typed.")]
GradeOpt = Annotated[str | None, typer.Option(help="Grade A..E.")]
TagOpt = Annotated[str | None, typer.Option(help="Has this tag.")]
OwnerOpt = Annotated[str | None, typer.Option(help="Owned by this user.")]
SourceOpt = Annotated[str | None, typer.Option(help="From this source.")]
PoolOpt = Annotated[
    bool | None, typer.Option("--pool/--owned", help="Only the public pool / only owned ones.")
]
FieldOpt = Annotated[
    list[str] | None,
    typer.Option("--field", help="A custom field's value, NAME:VALUE (repeatable)."),
]


def _filters(
    text: str | None,
    number: str | None,
    grade: str | None,
    tag: str | None,
    owner: str | None,
    source: str | None,
    pool: bool | None,
    field: list[str] | None,
) -> dict[str, Any]:
    return {
        "q": text,
        "number": number,
        "grade": grade.upper() if grade else None,
        "tag": tag,
        "owner": owner,
        "source": source,
        "pool": None if pool is None else str(pool).lower(),
        "field": field or None,
    }


CUSTOMER_COLUMNS = [
    _col("ID", "id"),
    _col("NAME", "name"),
    _col("PHONE", "phone"),
    _col("GRADE", "grade"),
    _col("COMPANY", "company"),
    _col("TAGS", "tags"),
    _col("OWNER", "owner"),
    _col("LAST FOLLOW-UP", "last_followup_at", _when),
]


@customer_app.command("search")
def customer_search(
    config: ConfigOpt = DEFAULT_CONFIG,
    text: TextOpt = None,
    number: NumberOpt = None,
    grade: GradeOpt = None,
    tag: TagOpt = None,
    owner: OwnerOpt = None,
    source: SourceOpt = None,
    pool: PoolOpt = None,
    field: FieldOpt = None,
    as_json: JsonOpt = False,
    limit: LimitOpt = None,
) -> None:
    """Search the customers you may see, by name; every filter given must hold."""
    _listing(
        config,
        "/api/customers",
        as_json,
        limit,
        CUSTOMER_COLUMNS,
        "no customers",
        **_filters(text, number, grade, tag, owner, source, pool, field),
    )


@customer_app.command("show")
def customer_show(
    customer_id: Annotated[int, typer.Argument(metavar="ID", help="The customer id.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: JsonOpt = False,
) -> None:
    """One customer's card: every field, numbers and the last follow-ups."""
    with _api(config) as api:
        item = api.get(f"/api/customers/{customer_id}")
        followups = api.items(f"/api/customers/{customer_id}/followups", limit=5)
    if as_json:
        _print_json({**item, "followups": followups})
        return
    numbers = item.pop("numbers", [])
    item["numbers"] = [f"{n['kind']} {n['number']}" for n in numbers]
    _fields(item)
    for f in followups:
        typer.echo(f"follow-up {_when(f['time'])} {f['user']}: {f['note']}")


@customer_app.command("add")
def customer_add(
    name: Annotated[str, typer.Option(help="The customer's name.")],
    phone: Annotated[str, typer.Option(help="The primary number, as typed.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    grade: GradeOpt = None,
    email: Annotated[str | None, typer.Option(help="E-mail address.")] = None,
    company: Annotated[str | None, typer.Option(help="Company.")] = None,
    address: Annotated[str | None, typer.Option(help="Postal address.")] = None,
    source: SourceOpt = None,
    owner: OwnerOpt = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeatable).")] = None,
    number: Annotated[
        list[str] | None,
        typer.Option("--number", help="Another number, NUMBER or KIND:NUMBER (repeatable)."),
    ] = None,
    field: Annotated[
        list[str] | None,
        typer.Option("--field", help="A custom field, NAME=VALUE (repeatable)."),
    ] = None,
    shared: Annotated[bool, typer.Option(help="Every agent may see and edit it.")] = False,
    allow_duplicate: Annotated[
        bool, typer.Option(help="Add it even if a number belongs to another customer.")
    ] = False,
) -> None:
    """Add a customer (refused when a number belongs to another customer, naming it)."""
    custom: dict[str, str] = {}
    for item in field or []:
        key, sep, value = item.partition("=")
        if not sep:
            typer.echo(f"--field {item!r}: use NAME=VALUE", err=True)
            raise typer.Exit(2)
        custom[key.strip()] = value
    numbers = []
    for item in number or []:
        kind, _, value = item.rpartition(":")
        numbers.append({"number": value, "kind": kind or "mobile"})
    body: dict[str, Any] = {
        "name": name,
        "phone": phone,
        "grade": grade.upper() if grade else None,
        "email": email,
        "company": company,
        "address": address,
        "source": source,
        "owner": owner,
        "tags": tag or [],
        "numbers": numbers,
        "custom": custom,
        "shared": shared,
    }
    with _api(config) as api:
        created = api.request(
            "POST",
            "/api/customers",
            params={"allow_duplicate": "true" if allow_duplicate else None},
            body=body,
        )
    typer.echo(f"customer {created['id']} added: {created['name']} {created['phone']}")


def _chunks(data: bytes, advance: Any) -> Iterator[bytes]:
    for start in range(0, len(data), UPLOAD_CHUNK):
        chunk = data[start : start + UPLOAD_CHUNK]
        yield chunk
        advance(len(chunk))


def upload_import(
    api: ApiClient, file: Path, data: bytes, all_or_nothing: bool, show: bool
) -> dict[str, Any]:
    """Send ``data`` (the file) to the import route with a progress bar of the upload and
    a spinner while the server imports; the report."""
    fmt = "xlsx" if file.suffix.lower() in (".xlsx", ".xlsm") else "csv"
    params = {"format": fmt, "all_or_nothing": "true" if all_or_nothing else None}
    content_type = XLSX_TYPE if fmt == "xlsx" else "text/csv"
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        disable=not show,
        transient=True,
    ) as progress:
        task = progress.add_task(f"importing {file.name}", total=len(data))

        def advance(n: int) -> None:
            progress.advance(task, n)

        report: dict[str, Any] = api.upload(
            "/api/customers/import", _chunks(data, advance), content_type, params=params
        )
    return report


@customer_app.command("import")
def customer_import(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A .csv or .xlsx file.")],
    config: ConfigOpt = DEFAULT_CONFIG,
    all_or_nothing: Annotated[
        bool,
        typer.Option(
            "--all-or-nothing",
            help="Import nothing when any row is bad (default: import the good rows).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Import customers from a CSV or XLSX file whose first row names the columns
    (docs/crm.md). Every refused row is listed with its row number and reason; the exit
    code is 1 when any row was refused."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        typer.echo(f"cannot read {file}: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from None
    with _api(config) as api:
        report = upload_import(api, file, data, all_or_nothing, show=not as_json)
    if as_json:
        _print_json(report)
    else:
        errors = report.get("errors", [])
        _table(errors, [_col("ROW", "row"), _col("REASON", "reason")], "")
        kept = "nothing imported (--all-or-nothing)" if all_or_nothing and errors else ""
        typer.echo(
            f"{report.get('rows', 0)} rows: {report.get('imported', 0)} imported, "
            f"{report.get('refused', 0)} refused{'; ' + kept if kept else ''}"
        )
    if report.get("refused"):
        raise typer.Exit(EXIT_REFUSED)


@customer_app.command("export")
def customer_export(
    output: OutputOpt,
    fmt: ExportFormatOpt = ExportFormat.csv,
    config: ConfigOpt = DEFAULT_CONFIG,
    text: TextOpt = None,
    number: NumberOpt = None,
    grade: GradeOpt = None,
    tag: TagOpt = None,
    owner: OwnerOpt = None,
    source: SourceOpt = None,
    pool: PoolOpt = None,
    field: FieldOpt = None,
) -> None:
    """Export the customers a search finds (at most 100,000) as CSV or XLSX, in the
    columns an import reads."""
    params = {
        "format": fmt.value,
        **_filters(text, number, grade, tag, owner, source, pool, field),
    }
    try:
        with _api(config) as api:
            fetched = save(api, "/api/customers/export", output, params)
    except OSError as exc:
        typer.echo(f"cannot write {output}: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    typer.echo(f"customers exported to {output} ({fmt.value}, {fetched.size} bytes)")


# -- blacklist ---------------------------------------------------------------------------------

NumberArg = Annotated[str, typer.Argument(metavar="NUMBER", help="A phone number, as typed.")]


@blacklist_app.command("add")
def blacklist_add(
    number: NumberArg,
    config: ConfigOpt = DEFAULT_CONFIG,
    reason: Annotated[str, typer.Option(help="Why (shown to whoever dials it).")] = "",
) -> None:
    """Add a number: outbound calls will not dial it."""
    with _api(config) as api:
        entry = api.post("/api/blacklist", {"number": number, "reason": reason})
    typer.echo(f"{entry['number']} blacklisted")


@blacklist_app.command("remove")
def blacklist_remove(number: NumberArg, config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Take a number off the blacklist (supervisors and admins)."""
    with _api(config) as api:
        api.delete(f"/api/blacklist/{_seg(number)}")
    typer.echo(f"{number} removed from the blacklist")


@blacklist_app.command("list")
def blacklist_list(
    config: ConfigOpt = DEFAULT_CONFIG,
    number: Annotated[str | None, typer.Option(help="Only the entry this number matches.")] = None,
    as_json: JsonOpt = False,
    limit: LimitOpt = None,
) -> None:
    """The blacklist, newest first."""
    _listing(
        config,
        "/api/blacklist",
        as_json,
        limit,
        [
            _col("NUMBER", "number"),
            _col("REASON", "reason"),
            _col("BY", "added_by"),
            _col("AT", "at", _when),
        ],
        "the blacklist is empty",
        number=number,
    )


__all__ = ["blacklist_app", "customer_app", "upload_import"]
