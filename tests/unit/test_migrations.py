"""Store migrations on SQLite and PostgreSQL: a store made by release 0.1.0 (before Alembic;
tests/fixtures/store-v0.1.0.sqlite) upgrades without losing a row, a fresh store and an
upgraded one have the same schema, upgrading twice changes nothing, two nodes upgrading one
PostgreSQL store at once do not race, and Store.open refuses a PostgreSQL store that is
behind."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from crm import Store
from crm.migrate import (
    BASELINE,
    SEARCH_OBJECTS,
    StoreNeedsUpgrade,
    alembic_config,
    baseline_metadata,
    current_revision,
    head_revision,
    modelled,
    upgrade,
)
from crm.models import Base
from tests.fixtures import make_store_v010 as v010

FIXTURE = Path(v010.__file__).parent / "store-v0.1.0.sqlite"
EXPECTED: dict[str, Any] = json.loads(v010.EXPECTED.read_text())


def _all_revisions() -> list[str]:
    """Every revision, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [s.revision for s in reversed(list(script.walk_revisions()))]


async def _load_fixture_rows(url: str, fixture: Path) -> None:
    """Copy every row of the 0.1.0 fixture into the (0001-shaped) database at ``url``, ids
    included, and move PostgreSQL's id sequences past them as 0.1.0's inserts would have."""
    src = create_async_engine(f"sqlite+aiosqlite:///{fixture}")
    dst = create_async_engine(url)
    try:
        async with src.connect() as s, dst.begin() as d:
            for table in baseline_metadata().sorted_tables:
                rows = [dict(r._mapping) for r in (await s.execute(select(table))).all()]
                assert rows, table.name
                await d.execute(table.insert(), rows)
                if dst.dialect.name == "postgresql" and "id" in table.c:
                    await d.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'),"
                            f" (SELECT max(id) FROM {table.name}))"
                        )
                    )
    finally:
        await src.dispose()
        await dst.dispose()


@pytest.fixture
async def v010_url(empty_store_url: str, tmp_path: Path) -> str:
    """A store as 0.1.0 left it: on SQLite a copy of the fixture file; on PostgreSQL the
    0.1.0 tables (revision 0001, then its alembic_version dropped: 0.1.0 kept none) holding
    the fixture's rows."""
    if empty_store_url.startswith("sqlite"):
        path = tmp_path / "v010.db"
        shutil.copy(FIXTURE, path)
        return f"sqlite+aiosqlite:///{path}"
    url = empty_store_url
    assert await upgrade(url, BASELINE) == [BASELINE]
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE alembic_version"))
    finally:
        await engine.dispose()
    copy = tmp_path / "fixture.db"  # never open the committed file itself
    shutil.copy(FIXTURE, copy)
    await _load_fixture_rows(url, copy)
    return url


@pytest.fixture
async def fresh_url(empty_store_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A second empty database on the same backend as ``empty_store_url``."""
    if empty_store_url.startswith("sqlite"):
        return f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    make: Callable[[], Awaitable[str]] = request.getfixturevalue("new_pg_database")
    return await make()


def _subset(expected: Any, actual: Any) -> Any:
    """``actual`` cut down to the keys ``expected`` has (a later release may add fields)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        return {k: _subset(v, actual.get(k)) for k, v in expected.items()}
    if isinstance(expected, list) and isinstance(actual, list):
        return [_subset(e, a) for e, a in zip(expected, actual, strict=False)] + actual[
            len(expected) :
        ]
    return actual


def _schema(conn: Connection) -> dict[str, Any]:
    insp = inspect(conn)
    out: dict[str, Any] = {}
    for t in sorted(insp.get_table_names()):
        out[t] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(t)],
            "pk": insp.get_pk_constraint(t)["constrained_columns"],
            "indexes": sorted(
                (
                    i["name"],
                    tuple(i["column_names"]),
                    bool(i["unique"]),
                    repr(sorted((k, str(v)) for k, v in i.get("dialect_options", {}).items())),
                )
                for i in insp.get_indexes(t)
            ),
            "unique": sorted(
                (u["name"], tuple(u["column_names"])) for u in insp.get_unique_constraints(t)
            ),
            "foreign_keys": sorted(
                (f["name"], tuple(f["constrained_columns"]), f["referred_table"])
                for f in insp.get_foreign_keys(t)
            ),
        }
    return out


def _diffs(conn: Connection) -> list[Any]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": modelled})
    return list(compare_metadata(ctx, Base.metadata))


async def _inspect(url: str) -> tuple[dict[str, Any], list[Any]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_schema), await conn.run_sync(_diffs)
    finally:
        await engine.dispose()


async def test_a_0_1_0_store_upgrades_without_losing_a_row(v010_url: str) -> None:
    assert await current_revision(v010_url) is None  # made before Alembic
    if v010_url.startswith("postgresql"):
        with pytest.raises(StoreNeedsUpgrade, match=r"made before migrations.*db upgrade"):
            await Store.open(v010_url)
        # Adopted at 0001 (stamped, not created again), then every later revision.
        assert await upgrade(v010_url) == _all_revisions()[1:]
    # SQLite: Store.open upgrades by itself, as `serve` does.
    store = await Store.open(v010_url)
    try:
        assert await current_revision(v010_url) == head_revision()
        columns = {name: list(rows[0]) for name, rows in EXPECTED["tables"].items()}
        assert await v010.table_rows(store.engine, columns) == EXPECTED["tables"]
        reads = await v010.store_reads(store)
        assert _subset(EXPECTED["store"], reads) == EXPECTED["store"]
        # The upgraded store takes every kind of row again (ids continue after the old ones).
        await v010.fill(store)
        records = await store.list_call_records()
        assert len(records) == 2 * len(EXPECTED["tables"]["call_records"])
        assert {r.id for r in records} == set(range(1, len(records) + 1))
        full = [r for r in records if r.call_id == "a84b4c76e66710@pc33.example.com"]
        assert [r.caller_id_sent for r in full] == ["+15550100", "+15550100"]
        assert len(await store.list_voicemails()) == 4
    finally:
        await store.close()


async def test_fresh_and_upgraded_stores_have_the_same_schema(
    v010_url: str, fresh_url: str
) -> None:
    await upgrade(v010_url)
    assert await upgrade(fresh_url) == _all_revisions()
    upgraded, upgraded_diffs = await _inspect(v010_url)
    fresh, fresh_diffs = await _inspect(fresh_url)
    # Alembic's own comparison with crm.models: a model change without a revision shows here.
    assert fresh_diffs == []
    assert upgraded_diffs == []
    assert upgraded == fresh
    assert set(fresh) - SEARCH_OBJECTS == {*Base.metadata.tables, "alembic_version"}


async def test_upgrading_twice_changes_nothing(empty_store_url: str) -> None:
    assert await current_revision(empty_store_url) is None
    assert await upgrade(empty_store_url) == _all_revisions()
    before = await _inspect(empty_store_url)
    assert await upgrade(empty_store_url) == []
    assert await _inspect(empty_store_url) == before
    assert await current_revision(empty_store_url) == head_revision()


async def test_a_store_from_a_newer_release_is_refused(store_url: str) -> None:
    await upgrade(store_url)
    engine = create_async_engine(store_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = 'f00dface'"))
    finally:
        await engine.dispose()
    with pytest.raises(StoreNeedsUpgrade, match="f00dface"):
        await Store.open(store_url)


async def test_store_open_refuses_a_postgresql_store_not_at_head(pg_url: str) -> None:
    with pytest.raises(StoreNeedsUpgrade, match=r"is empty.*run `switchboard db upgrade`"):
        await Store.open(pg_url)
    revisions = _all_revisions()
    if len(revisions) > 1:  # one revision behind (once there is a second one)
        await upgrade(pg_url, revisions[-2])
        with pytest.raises(
            StoreNeedsUpgrade,
            match=f"revision {revisions[-2]}, this release needs {revisions[-1]}: run `switch",
        ):
            await Store.open(pg_url)
    await upgrade(pg_url)
    store = await Store.open(pg_url)
    await store.close()


async def test_two_nodes_upgrading_one_postgresql_store_at_once(pg_url: str) -> None:
    """Both upgrades wait on the advisory lock (held here first); once it is released one
    applies every revision and the other finds the store at head."""
    from crm.migrate import UPGRADE_LOCK

    engine = create_async_engine(pg_url)
    try:
        async with engine.connect() as holder:
            await holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": UPGRADE_LOCK})
            first = asyncio.create_task(upgrade(pg_url))
            second = asyncio.create_task(upgrade(pg_url))
            async with engine.connect() as watch:
                for _ in range(500):
                    waiting = (
                        await watch.execute(
                            text(
                                "SELECT count(*) FROM pg_locks"
                                " WHERE locktype = 'advisory' AND NOT granted"
                            )
                        )
                    ).scalar()
                    await watch.rollback()
                    if waiting == 2:
                        break
                    await asyncio.sleep(0.01)
                assert waiting == 2, "both upgrades should be waiting for the lock"
            assert not first.done() and not second.done()
            await holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": UPGRADE_LOCK})
            await holder.commit()
            results = sorted(await asyncio.gather(first, second))
    finally:
        await engine.dispose()
    assert results == [[], _all_revisions()]
    assert await current_revision(pg_url) == head_revision()


async def test_two_processes_upgrading_one_sqlite_store_at_once(tmp_path: Path) -> None:
    """`serve` and `switchboard db upgrade` at once: the first takes SQLite's write lock for
    the whole upgrade (BEGIN IMMEDIATE), the second waits, then finds the store at head."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    results = sorted(await asyncio.gather(upgrade(url), upgrade(url), upgrade(url)))
    assert results == [[], [], _all_revisions()]
    assert await current_revision(url) == head_revision()


async def test_reminders_already_due_at_the_upgrade_to_0008_are_not_pushed(
    empty_store_url: str,
) -> None:
    """Nothing delivered reminders before 0008: those already due count as reminded, the
    ones still to come do not."""
    from datetime import UTC, datetime, timedelta

    import sqlalchemy as sa

    from crm.models import UtcDateTime

    await upgrade(empty_store_url, "0007")
    now = datetime.now(UTC)
    day = timedelta(days=1)
    customers = sa.table(
        "customers",
        sa.column("id"),
        sa.column("name"),
        sa.column("phone"),
        sa.column("phone_digits"),
        sa.column("created_at", UtcDateTime()),
    )
    followups = sa.table(
        "customer_followups",
        sa.column("customer_id"),
        sa.column("time", UtcDateTime()),
        sa.column("user"),
        sa.column("note"),
        sa.column("next_at", UtcDateTime()),
    )
    appointments = sa.table(
        "customer_appointments",
        sa.column("customer_id"),
        sa.column("at", UtcDateTime()),
        sa.column("remind_at", UtcDateTime()),
        sa.column("user"),
        sa.column("note"),
    )
    engine = create_async_engine(empty_store_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                customers.insert().values(
                    id=1, name="Anna", phone="1001", phone_digits="1001", created_at=now
                )
            )
            for note, at in (("due", now - day), ("later", now + day)):
                await conn.execute(
                    followups.insert().values(
                        customer_id=1, time=now - 2 * day, user="bob", note=note, next_at=at
                    )
                )
                await conn.execute(
                    appointments.insert().values(
                        customer_id=1, at=at + day, remind_at=at, user="bob", note=note
                    )
                )
        await upgrade(empty_store_url)
        async with engine.connect() as conn:
            for table in ("customer_followups", "customer_appointments"):
                rows = (await conn.execute(text(f"SELECT note, reminded FROM {table}"))).all()
                assert sorted((n, bool(r)) for n, r in rows) == [("due", True), ("later", False)]
    finally:
        await engine.dispose()
