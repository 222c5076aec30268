"""Customer import from CSV or XLSX and export of a search as CSV or XLSX (docs/crm.md
"Import and export").

Theory of operation: the first row is the header. Each header names a field
(:data:`COLUMNS`; case and surrounding spaces do not matter) or a custom field declared in
``crm.custom_fields`` (by its name, or ``custom.<name>``); an unknown header refuses the whole
file (a typo would otherwise drop a column silently). Every other row is one customer, and
row numbers are the spreadsheet's (the header is row 1), so a report's "row 7" is line 7 of
the file. A row is refused, with its number and reason, for: a missing name, a bad or
missing phone number, a bad grade (A–E), a number that appears on an earlier row of the file
or belongs to a stored customer (numbers compared however typed, crm/numbers.py), or a custom
value its field does not accept. Blank rows are skipped.

Two modes: by default the good rows are imported and the bad ones reported
(``all_or_nothing=False``); with ``all_or_nothing=True`` one bad row means nothing is
imported (the report still lists every bad row). Rows go in through
:meth:`crm.Store.add_customers`, 5,000 per executemany: by default one transaction per
5,000 rows, all-or-nothing in one transaction. A customer created with the same number
while the file is being imported is not seen as a duplicate.

An export writes the same columns, so an exported file imports again (into another store:
its numbers would be duplicates of themselves here).
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from crm.customers import CrmSettings, check_custom, numbers_from
from crm.numbers import normalise, numbers_match, tail
from crm.store import CUSTOMER_GRADES, CustomerData, Store

__all__ = [
    "COLUMNS",
    "ImportFileTooLarge",
    "ImportReport",
    "RowError",
    "check_xlsx_archive",
    "export_csv",
    "export_rows",
    "export_xlsx",
    "import_customers",
    "parse_file",
]

FileFormat = Literal["csv", "xlsx"]
MAX_ROWS = 1_000_000
# An XLSX file is a ZIP archive: what its directory declares is checked before openpyxl
# opens it, so a small upload cannot inflate into gigabytes (a "zip bomb"). Python's
# zipfile never inflates a member beyond its declared size, so the declared sizes bound
# what reading can produce. A real workbook compresses its XML about 5-20:1.
XLSX_MAX_UNCOMPRESSED = 200 * 1024 * 1024  # bytes, all members together
XLSX_MAX_MEMBERS = 10_000
XLSX_MAX_RATIO = 100  # uncompressed : compressed, refused for a member beyond ...
XLSX_RATIO_FROM = 10 * 1024 * 1024  # ... this many uncompressed bytes

# The column names of an import and an export, and what each holds.
COLUMNS: dict[str, str] = {
    "name": "the customer's name (required)",
    "phone": "the primary phone number, as typed (required)",
    "numbers": "more numbers, separated by ';', each 'number' or 'kind:number' "
    "(kind mobile, home, work, fax or other)",
    "email": "e-mail address",
    "company": "company",
    "address": "postal address",
    "grade": "service grade A (best) .. E, or empty",
    "tags": "tags separated by ';' or ','",
    "source": "where the customer came from (a campaign, a fair)",
    "owner": "the user name that owns the customer; empty: the public pool",
    "shared": "yes/no (also true/false, 1/0): every agent may see and edit it",
    "language": "preferred language (e.g. en, de)",
    "notes": "free text",
}
_TRUE = {"yes", "y", "true", "1", "x"}
_FALSE = {"no", "n", "false", "0", ""}


@dataclass(frozen=True, slots=True)
class RowError:
    """A refused row: its number in the file (the header is row 1) and why."""

    row: int
    reason: str


@dataclass(slots=True)
class ImportReport:
    """What an import did: the data rows read, the customers stored, the refused rows."""

    rows: int = 0
    imported: int = 0
    errors: list[RowError] = field(default_factory=list)
    all_or_nothing: bool = False
    ids: list[int] = field(default_factory=list)

    @property
    def refused(self) -> int:
        return len(self.errors)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "imported": self.imported,
            "refused": self.refused,
            "all_or_nothing": self.all_or_nothing,
            "errors": [{"row": e.row, "reason": e.reason} for e in self.errors],
        }


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (not CSV/XLSX, no header, unknown column)."""


class ImportFileTooLarge(ImportFileError):
    """The file would inflate beyond what an import reads (an XLSX archive's limits)."""


def check_xlsx_archive(data: bytes) -> None:
    """Refuse an XLSX file whose ZIP directory promises too much: more than
    :data:`XLSX_MAX_MEMBERS` members, more than :data:`XLSX_MAX_UNCOMPRESSED` bytes in all,
    or a member beyond :data:`XLSX_RATIO_FROM` bytes compressed more than
    :data:`XLSX_MAX_RATIO`:1. ImportFileError for a file that is no ZIP archive at all."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise ImportFileError(f"not an XLSX workbook: {exc}") from None
    if len(members) > XLSX_MAX_MEMBERS:
        raise ImportFileTooLarge(
            f"the XLSX file has {len(members)} parts, more than {XLSX_MAX_MEMBERS}"
        )
    total = 0
    for m in members:
        total += m.file_size
        if m.file_size > XLSX_RATIO_FROM and m.file_size > XLSX_MAX_RATIO * max(m.compress_size, 1):
            raise ImportFileTooLarge(
                f"the XLSX part {m.filename} inflates {m.compress_size} bytes to "
                f"{m.file_size} (more than {XLSX_MAX_RATIO}:1): refused as a zip bomb"
            )
    if total > XLSX_MAX_UNCOMPRESSED:
        raise ImportFileTooLarge(
            f"the XLSX file inflates to {total} bytes, more than {XLSX_MAX_UNCOMPRESSED}"
        )


def _rows_csv(data: bytes) -> Iterator[list[str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportFileError("the CSV file is not UTF-8") from None
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    yield from csv.reader(io.StringIO(text, newline=""), dialect)


def _rows_xlsx(data: bytes) -> Iterator[list[str]]:
    import openpyxl  # only an import needs it

    check_xlsx_archive(data)
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a file that is not XLSX
        raise ImportFileError(f"not an XLSX workbook: {exc}") from None
    try:
        sheet = book.worksheets[0]
        for values in sheet.iter_rows(values_only=True):
            yield ["" if v is None else _cell_text(v) for v in values]
    finally:
        book.close()


def _cell_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a phone number typed into a number cell
    if hasattr(value, "isoformat"):
        return str(value.isoformat())[:10]
    return str(value)


def parse_file(
    data: bytes, fmt: FileFormat, settings: CrmSettings
) -> tuple[list[tuple[int, CustomerData]], list[RowError], int]:
    """The customers of a file with their row numbers, the rows refused by their content
    alone, and the number of data rows. ImportFileError for a file that cannot be read."""
    rows = _rows_csv(data) if fmt == "csv" else _rows_xlsx(data)
    header = next(rows, None)
    if header is None or not any(h.strip() for h in header):
        raise ImportFileError("the file is empty: the first row must name the columns")
    keys = [_column(h, settings) for h in header]
    if "name" not in keys or "phone" not in keys:
        raise ImportFileError("the header must have the columns name and phone")
    good: list[tuple[int, CustomerData]] = []
    errors: list[RowError] = []
    count = 0
    seen: dict[str, list[tuple[str, int]]] = {}  # tail -> (digits, row) of earlier rows
    for row_no, values in enumerate(rows, start=2):
        if not any(v.strip() for v in values):
            continue
        count += 1
        if count > MAX_ROWS:
            raise ImportFileError(f"more than {MAX_ROWS} rows: split the file")
        record = {k: values[i].strip() for i, k in enumerate(keys) if k and i < len(values)}
        try:
            customer = _customer(record, settings)
        except ValueError as exc:
            errors.append(RowError(row_no, str(exc)))
            continue
        clash = _seen_before(seen, customer)
        if clash is not None:
            number, first = clash
            errors.append(RowError(row_no, f"number {number} is on row {first} already"))
            continue
        for n in customer.all_numbers:
            seen.setdefault(tail(n.digits), []).append((n.digits, row_no))
        good.append((row_no, customer))
    return good, errors, count


def _column(header: str, settings: CrmSettings) -> str:
    key = header.strip().lower()
    if not key:
        return ""
    if key.startswith("custom."):
        key = key[len("custom.") :]
        if key not in settings.custom_fields:
            raise ImportFileError(f"column {header!r}: no such custom field")
        return "custom." + key
    if key in COLUMNS:
        return key
    if key in settings.custom_fields:
        return "custom." + key
    raise ImportFileError(
        f"unknown column {header!r} (columns: {', '.join(COLUMNS)}, or a custom field)"
    )


def _customer(record: dict[str, str], settings: CrmSettings) -> CustomerData:
    name = record.get("name", "")
    if not name:
        raise ValueError("name is missing")
    phone = record.get("phone", "")
    if not phone:
        raise ValueError("phone is missing")
    if not normalise(phone):
        raise ValueError(f"bad phone number {phone!r}")
    grade = record.get("grade", "").upper() or None
    if grade is not None and grade not in CUSTOMER_GRADES:
        raise ValueError(f"bad grade {record['grade']!r} (A..E)")
    shared_text = record.get("shared", "").lower()
    if shared_text not in _TRUE | _FALSE:
        raise ValueError(f"shared must be yes or no, not {record['shared']!r}")
    numbers = []
    for item in record.get("numbers", "").split(";"):
        item = item.strip()
        if not item:
            continue
        kind, _, number = item.rpartition(":")
        numbers.append({"number": number, "kind": kind.strip().lower() or "mobile"})
    try:
        extra = numbers_from(numbers)
    except ValueError as exc:
        raise ValueError(f"bad number in numbers: {exc}") from None
    custom = check_custom(
        settings, {k[len("custom.") :]: v for k, v in record.items() if k.startswith("custom.")}
    )
    tags = [t for part in record.get("tags", "").split(";") for t in part.split(",")]
    return CustomerData(
        name=name,
        phone=phone,
        email=record.get("email") or None,
        company=record.get("company") or None,
        grade=grade,
        language=record.get("language") or None,
        notes=record.get("notes") or None,
        address=record.get("address") or None,
        tags=tuple(tags),
        source=record.get("source") or None,
        owner=record.get("owner") or None,
        shared=shared_text in _TRUE,
        custom=custom,
        numbers=extra,
    )


def _seen_before(
    seen: dict[str, list[tuple[str, int]]], customer: CustomerData
) -> tuple[str, int] | None:
    own: list[str] = []
    for n in customer.all_numbers:
        digits = n.digits
        for earlier, row in seen.get(tail(digits), ()):
            if numbers_match(earlier, digits):
                return n.number, row
        if any(numbers_match(d, digits) for d in own):
            continue  # the same number twice on one row is not a clash with another row
        own.append(digits)
    return None


async def import_customers(
    store: Store,
    data: bytes,
    fmt: FileFormat,
    settings: CrmSettings,
    *,
    all_or_nothing: bool = False,
    progress: Callable[[int, int], object] | None = None,
) -> ImportReport:
    """Import a CSV or XLSX file (module docstring); ImportFileError for a file that cannot
    be read at all. ``progress(done, total)`` is called as rows are stored."""
    # Parsing is CPU work: off the event loop.
    good, errors, count = await asyncio.to_thread(parse_file, data, fmt, settings)
    report = ImportReport(rows=count, all_or_nothing=all_or_nothing)
    owners = await store.customers_by_numbers([n.number for _, c in good for n in c.all_numbers])
    keep: list[CustomerData] = []
    for row_no, customer in good:
        hit = next(
            ((n.number, owners[n.digits]) for n in customer.all_numbers if n.digits in owners),
            None,
        )
        if hit is not None:
            number, (cid, name) = hit
            errors.append(RowError(row_no, f"number {number} belongs to customer {cid} ({name})"))
        else:
            keep.append(customer)
    errors.sort(key=lambda e: e.row)
    report.errors = errors
    if all_or_nothing and errors:
        return report
    # All-or-nothing: one transaction, so a failure while writing leaves nothing either.
    step = max(1, len(keep)) if all_or_nothing else 5000
    for start in range(0, len(keep), step):
        ids = await store.add_customers(keep[start : start + step], allow_duplicate=True)
        report.ids.extend(ids)
        report.imported += len(ids)
        if progress is not None:
            progress(report.imported, len(keep))
    return report


# -- export ----------------------------------------------------------------------------------


def export_rows(
    customers: Sequence[CustomerData], settings: CrmSettings
) -> tuple[list[str], list[list[Any]]]:
    """The header and rows of an export: :data:`COLUMNS`, then the custom fields (the
    import's columns, so an export imports again)."""
    custom = list(settings.custom_fields)
    header = [*COLUMNS, *custom]
    rows: list[list[Any]] = []
    for c in customers:
        rows.append(
            [
                c.name,
                c.phone,
                ";".join(f"{n.kind}:{n.number}" for n in c.numbers),
                c.email or "",
                c.company or "",
                c.address or "",
                c.grade or "",
                ";".join(c.tags),
                c.source or "",
                c.owner or "",
                "yes" if c.shared else "no",
                c.language or "",
                c.notes or "",
                *(c.custom.get(name, "") for name in custom),
            ]
        )
    return header, rows


_PLAIN_NUMBER = re.compile(r"[+-]?[0-9 ()./-]*")


def _csv_text(value: str) -> str:
    """Text a spreadsheet will not run as a formula (OWASP on CSV injection): a leading
    ``=``, ``@``, tab or CR, or ``+``/``-`` not starting a plain phone number, gets a ``'``."""
    if not value:
        return value
    risky = value[0] in "=@\t\r" or (value[0] in "+-" and not _PLAIN_NUMBER.fullmatch(value))
    return "'" + value if risky else value


def export_csv(customers: Sequence[CustomerData], settings: CrmSettings) -> bytes:
    """An export as UTF-8 CSV (with a BOM, so spreadsheet programs read it as UTF-8)."""
    header, rows = export_rows(customers, settings)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows([[_csv_text(v) if isinstance(v, str) else v for v in r] for r in rows])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def export_xlsx(customers: Sequence[CustomerData], settings: CrmSettings) -> bytes:
    """An export as one XLSX worksheet (xlsxwriter, in memory; numbers kept as text)."""
    import xlsxwriter

    header, rows = export_rows(customers, settings)
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_numbers": False})
    sheet = book.add_worksheet("customers")
    bold = book.add_format({"bold": True})
    for col, title in enumerate(header):
        sheet.write_string(0, col, title, bold)
    for i, row in enumerate(rows, start=1):
        for col, value in enumerate(row):
            # Never a formula: names and notes come from outside.
            if isinstance(value, (int, float)):
                sheet.write_number(i, col, value)
            elif value != "":
                sheet.write_string(i, col, str(value))
    sheet.freeze_panes(1, 0)
    book.close()
    return buffer.getvalue()
