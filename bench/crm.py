"""Customer store benchmark (issue 14): import of 100,000 customers from a generated CSV and
lookup by caller number at 1,000,000 customers, on SQLite.

Theory of operation: a temporary folder holds a fresh SQLite store (WAL, as Switchboard runs
it). Step 1 writes a CSV of ``--import-rows`` customers (German, US and Chinese numbers typed
in several ways, grades, tags, a custom field) and times
:func:`crm.customer_import.import_customers` on it — the whole path the API's import route
takes: parsing, validation, de-duplication against the file and the store, batched inserts.
Step 2 fills the store up to ``--customers`` rows with the same columns (sqlite3
executemany, written as :meth:`crm.Store.add_customers` writes them, only faster to set
up), then times ``--lookups`` calls of :meth:`crm.Store.find_customer_by_number` — what the
ACD and the IVR do for every queue call — with known numbers typed another way than stored
and with unknown numbers, and reports p50/p99/max. Nothing else runs; the machine may be
shared, so run twice and compare.

    python bench/crm.py [--quick] [--import-rows N] [--customers N] [--lookups N]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from crm import CrmSettings, CustomField, Store  # noqa: E402
from crm.customer_import import import_customers  # noqa: E402
from crm.numbers import normalise, tail  # noqa: E402

IMPORT_GOAL_S = 30.0
LOOKUP_P99_GOAL_MS = 5.0
SETTINGS = CrmSettings(
    custom_fields={"contract": CustomField("contract", "choice", ("basic", "gold"))}
)
FIRST = ["Anna", "Bernd", "Carla", "Dieter", "Emma", "Li", "Wei", "John", "Mary", "Zoe"]
LAST = ["Schmidt", "Meyer", "Wang", "Zhang", "Smith", "Jones", "Müller", "Chen", "Brown"]


def number_of(i: int) -> tuple[str, str]:
    """Customer ``i``'s number as stored and as a caller ID might present it (another
    form of the same number): German, US or Chinese mobile, unique per ``i``."""
    kind = i % 3
    if kind == 0:  # Berlin: +49 30 + 8 digits
        sub = f"{10_000_000 + i:08d}"
        return f"+49 30 {sub[:4]} {sub[4:]}", f"030{sub}"
    if kind == 1:  # US: area code from 200, 7-digit subscriber
        area, sub = 200 + (i // 10_000_000) % 700, f"{i % 10_000_000:07d}"
        return f"({area}) {sub[:3]}-{sub[3:]}", f"+1{area}{sub}"
    sub = f"{i:08d}"  # China Mobile 138 + 8 digits
    return f"138 {sub[:4]} {sub[4:]}", f"+86138{sub}"


def write_csv(rows: int, offset: int) -> bytes:
    rng = random.Random(1)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["name", "phone", "grade", "tags", "source", "contract"])
    for i in range(offset, offset + rows):
        writer.writerow(
            [
                f"{rng.choice(FIRST)} {rng.choice(LAST)} {i}",
                number_of(i)[0],
                "ABCDE"[i % 5],
                "vip;reseller" if i % 7 == 0 else "",
                "fair" if i % 2 else "web",
                "gold" if i % 3 == 0 else "basic",
            ]
        )
    return out.getvalue().encode()


def fill(path: Path, start: int, end: int) -> None:
    """Customers ``start..end-1`` straight into the tables (as add_customers writes them)."""
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        step = 50_000
        for lo in range(start, end, step):
            hi = min(end, lo + step)
            first_id = (conn.execute("SELECT COALESCE(MAX(id), 0) FROM customers").fetchone())[0]
            customers, numbers = [], []
            for k, i in enumerate(range(lo, hi)):
                phone = number_of(i)[0]
                digits = normalise(phone)
                customers.append(
                    (first_id + k + 1, f"Filler {i}", phone, digits, "ABCDE"[i % 5], now)
                )
                numbers.append((first_id + k + 1, phone, digits, tail(digits), "primary"))
            conn.executemany(
                "INSERT INTO customers (id, name, phone, phone_digits, grade, created_at,"
                " tags, shared) VALUES (?, ?, ?, ?, ?, ?, '', 0)",
                customers,
            )
            conn.executemany(
                "INSERT INTO customer_numbers (customer_id, number, digits, tail, kind)"
                " VALUES (?, ?, ?, ?, ?)",
                numbers,
            )
            conn.commit()
        conn.execute("ANALYZE")
        conn.commit()
    finally:
        conn.close()


async def run(args: argparse.Namespace) -> dict[str, float]:
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="switchboard-crm-bench-") as tmp:
        db = Path(tmp) / "store.db"
        url = f"sqlite+aiosqlite:///{db}"
        store = await Store.open(url)
        try:
            data = write_csv(args.import_rows, 0)
            print(f"import: {args.import_rows:,} rows, {len(data) / 1e6:.1f} MB CSV")
            t0 = time.perf_counter()
            report = await import_customers(store, data, "csv", SETTINGS)
            took = time.perf_counter() - t0
            print(f"  imported {report.imported:,}, refused {report.refused} in {took:.2f} s")
            if report.imported != args.import_rows:
                raise SystemExit(f"import refused rows: {report.errors[:5]}")
            results["import_s"] = took
        finally:
            await store.close()

        total = max(args.customers, args.import_rows)
        print(f"fill: up to {total:,} customers")
        t0 = time.perf_counter()
        await asyncio.to_thread(fill, db, args.import_rows, total)
        print(f"  filled in {time.perf_counter() - t0:.1f} s")

        store = await Store.open(url)
        try:
            rng = random.Random(2)
            known = [number_of(rng.randrange(total))[1] for _ in range(args.lookups)]
            # Unknown: London numbers whose last 7 digits no generated number has (those
            # end in 0000000..0999999 below 10 million customers; a US number stored
            # without +1 would otherwise match its London look-alike on 10 digits).
            unknown = [
                f"+44 20 {rng.randrange(5 * 10**6, 10**7):07d}" for _ in range(args.lookups // 5)
            ]
            for n in known[:200]:  # warm the page cache and the connection pool
                await store.find_customer_by_number(n)
            timings_ms: list[float] = []
            misses = 0
            for n in known:
                t = time.perf_counter()
                found = await store.find_customer_by_number(n)
                timings_ms.append((time.perf_counter() - t) * 1000)
                misses += found is None
            if misses:
                raise SystemExit(f"{misses} known numbers were not found")
            for n in unknown:
                t = time.perf_counter()
                found = await store.find_customer_by_number(n)
                timings_ms.append((time.perf_counter() - t) * 1000)
                if found is not None:
                    raise SystemExit(f"unknown number {n} found {found.name}")
            timings_ms.sort()
            p99 = timings_ms[int(len(timings_ms) * 0.99) - 1]
            results["lookup_p50_ms"] = statistics.median(timings_ms)
            results["lookup_p99_ms"] = p99
            results["lookup_max_ms"] = timings_ms[-1]
            results["customers"] = float(total)
            print(
                f"lookup at {total:,} customers: {len(timings_ms):,} lookups "
                f"({len(known):,} known typed another way, {len(unknown):,} unknown)"
            )
        finally:
            await store.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200,000 customers, fewer lookups")
    parser.add_argument("--import-rows", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=5_000)
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args()
    if args.quick:
        args.customers, args.lookups = 200_000, 2_000
    results = asyncio.run(run(args))
    print()
    print(f"{'measure':<34}{'measured':>12}{'goal':>12}  ok")
    rows = [
        (f"import {args.import_rows:,} customers (s)", results["import_s"], IMPORT_GOAL_S),
        (
            f"lookup p99 at {int(results['customers']):,} (ms)",
            results["lookup_p99_ms"],
            LOOKUP_P99_GOAL_MS,
        ),
    ]
    for name, value, goal in rows:
        print(f"{name:<34}{value:>12.2f}{goal:>12.2f}  {'yes' if value < goal else 'NO'}")
    print(
        f"{'lookup p50 / max (ms)':<34}{results['lookup_p50_ms']:>12.2f}"
        f"{results['lookup_max_ms']:>12.2f}"
    )
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
