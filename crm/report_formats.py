"""A computed :class:`crm.reports.Report` as a file: CSV, XLSX (a sheet per report with a
native Excel chart beside the table) or a PNG chart (matplotlib, Agg backend).

All three are CPU work on plain data: callers on the event loop run them with
``asyncio.to_thread`` (:func:`render_async`).
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Sequence
from typing import Any

from crm.reports import Report

__all__ = ["FORMATS", "MEDIA_TYPES", "render", "render_async", "to_csv", "to_png", "to_xlsx"]

FORMATS = ("json", "csv", "xlsx", "png")
MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "png": "image/png",
}


def _all_rows(report: Report) -> list[dict[str, Any]]:
    return [*report.rows, *([report.totals] if report.totals is not None else [])]


def to_csv(report: Report) -> bytes:
    """Header of column labels, one line per row, the totals row last (``total`` in its
    first column); empty cells for figures that do not exist (a rate of nothing)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([c.label for c in report.columns])
    for row in _all_rows(report):
        writer.writerow(["" if row.get(c.key) is None else row.get(c.key) for c in report.columns])
    return out.getvalue().encode()


def _sheet_name(name: str, used: set[str]) -> str:
    base = name[:31] or "report"
    sheet, n = base, 2
    while sheet in used:
        suffix = f"_{n}"
        sheet, n = base[: 31 - len(suffix)] + suffix, n + 1
    used.add(sheet)
    return sheet


def to_xlsx(reports: Report | Sequence[Report]) -> bytes:
    """A workbook with one sheet per report: the title, the table (seconds and counts as
    numbers, ratios as percentages), the totals row, and an inline column chart of the
    report's chart columns (a native Excel chart reading the sheet's cells)."""
    import xlsxwriter

    items = [reports] if isinstance(reports, Report) else list(reports)
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    bold = book.add_format({"bold": True})
    percent = book.add_format({"num_format": "0.00%"})
    used: set[str] = set()
    for report in items:
        sheet = book.add_worksheet(_sheet_name(report.name, used))
        sheet.write(0, 0, report.title, bold)
        header = 2
        for col, c in enumerate(report.columns):
            sheet.write(header, col, c.label, bold)
            sheet.set_column(col, col, max(10, min(40, len(c.label) + 2)))
        rows = _all_rows(report)
        for r, row in enumerate(rows, start=header + 1):
            for col, c in enumerate(report.columns):
                value = row.get(c.key)
                if value is None:
                    continue
                if c.unit == "ratio":
                    sheet.write_number(r, col, float(value), percent)
                elif isinstance(value, (int, float)):
                    sheet.write_number(r, col, value)
                else:
                    sheet.write_string(r, col, str(value))
        if report.chart is not None and report.rows:
            x_key, y_keys = report.chart
            keys = [c.key for c in report.columns]
            first, last = header + 1, header + len(report.rows)  # the totals row is left out
            x_col = keys.index(x_key)
            chart = book.add_chart({"type": "column"})
            for y in y_keys:
                col = keys.index(y)
                chart.add_series(
                    {
                        "name": [sheet.name, header, col],
                        "categories": [sheet.name, first, x_col, last, x_col],
                        "values": [sheet.name, first, col, last, col],
                    }
                )
            chart.set_title({"name": report.title})
            sheet.insert_chart(header + len(rows) + 2, 0, chart, {"x_scale": 1.5, "y_scale": 1.2})
    book.close()
    return buffer.getvalue()


def to_png(report: Report) -> bytes:
    """A bar chart of the report's chart columns per row (the totals row left out)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 5), dpi=100)
    axes = figure.subplots()
    if report.chart is not None and report.rows:
        x_key, y_keys = report.chart
        labels = [str(row.get(x_key, "")) for row in report.rows]
        width = 0.8 / len(y_keys)
        names = {c.key: c.label for c in report.columns}
        for n, y in enumerate(y_keys):
            values = [float(row.get(y) or 0) for row in report.rows]
            axes.bar(
                [i + n * width - 0.4 + width / 2 for i in range(len(labels))],
                values,
                width,
                label=names.get(y, y),
            )
        axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        axes.legend()
    else:
        axes.text(0.5, 0.5, "no data", ha="center", va="center")
    axes.set_title(report.title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def render(report: Report, fmt: str) -> bytes:
    """``report`` as ``fmt`` (csv, xlsx or png); ValueError for another format."""
    if fmt == "csv":
        return to_csv(report)
    if fmt == "xlsx":
        return to_xlsx(report)
    if fmt == "png":
        return to_png(report)
    raise ValueError(f"unknown report format {fmt!r} (csv, xlsx or png)")


async def render_async(report: Report, fmt: str) -> bytes:
    """:func:`render` in a worker thread (charts and workbooks are CPU work)."""
    return await asyncio.to_thread(render, report, fmt)
