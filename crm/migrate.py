"""Store migrations: Alembic, run from inside Switchboard on its async engines.

Theory of operation: the revisions live in ``crm/migrations/versions`` (shipped with the
package; see ``crm/migrations/README``). :func:`upgrade` opens the store's async engine, takes
one connection and runs Alembic inside ``AsyncConnection.run_sync`` and one transaction, so
the same ``sqlite+aiosqlite`` and ``postgresql+asyncpg`` URLs work as everywhere else.

Three kinds of database meet :func:`upgrade`:

- an empty one: every revision runs from the first, so a new store and an upgraded one have
  the same schema (there is no ``create_all`` anywhere);
- one made before Alembic (0.1.0 and earlier: tables, no ``alembic_version``): it is brought
  to exactly revision 0001 the way 0.1.0 itself did at start (missing tables created, missing
  nullable columns added), stamped 0001, then upgraded;
- one with an ``alembic_version``: upgraded from there.

On PostgreSQL, where several nodes share one store, the whole upgrade holds a
transaction-level advisory lock (:data:`UPGRADE_LOCK`): a second node upgrading at the same
moment waits, then finds the store at head and applies nothing. PostgreSQL runs DDL inside the
transaction, so a failed upgrade leaves the store as it was.

``Store.open`` upgrades a SQLite store by itself (an embedded store has one user: the server
opening it). A PostgreSQL store is only upgraded by the explicit ``switchboard db upgrade``;
``Store.open`` refuses one that is not at head with :class:`StoreNeedsUpgrade`.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, MetaData, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

log = structlog.get_logger("crm.migrate")

MIGRATIONS = Path(__file__).parent / "migrations"
# The revision a database made before Alembic is stamped at.
BASELINE = "0001"
# pg_advisory_xact_lock key of "a store upgrade is running" (any fixed 64-bit number; this is
# b"sbmigrat" read as a big-endian integer, so it will not collide with the ACD's queue locks).
UPGRADE_LOCK = int.from_bytes(b"sbmigrat", "big") - (1 << 63)

# Objects revisions make that crm.models cannot describe: the knowledge base's search index
# (revision 0006; crm/kb.py) — FTS5's table and its shadow tables on SQLite, a GIN
# expression index on PostgreSQL. Schema comparisons (autogenerate, tests) leave them out.
SEARCH_OBJECTS = frozenset(
    {
        "kb_search",
        "kb_search_data",
        "kb_search_idx",
        "kb_search_content",
        "kb_search_docsize",
        "kb_search_config",
        "ix_kb_articles_search",
    }
)


def modelled(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's ``include_name`` hook: False for :data:`SEARCH_OBJECTS`."""
    return name not in SEARCH_OBJECTS


class StoreNeedsUpgrade(RuntimeError):
    """The store's schema is not the one this release needs (run ``switchboard db upgrade``)."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, made in code (no alembic.ini): the packaged migrations and,
    when given, the connection env.py runs them on."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The revision this release's code needs."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def baseline_metadata() -> MetaData:
    """The tables of revision 0001 (release 0.1.0's schema), as that revision froze them."""
    script = ScriptDirectory.from_config(alembic_config()).get_revision(BASELINE)
    assert script is not None
    module: ModuleType = script.module
    metadata: MetaData = module.metadata()
    return metadata


def add_missing_nullable_columns(conn: Connection, metadata: MetaData) -> list[tuple[str, str]]:
    """Add the nullable columns of ``metadata``'s tables that the database's tables lack
    (``ALTER TABLE … ADD COLUMN``). What 0.1.0 did at every start instead of migrations; now
    only for a database made before Alembic, against revision 0001's tables. Returns the
    columns added."""
    inspector = inspect(conn)
    existing_tables = set(inspector.get_table_names())
    added: list[tuple[str, str]] = []
    for table in metadata.sorted_tables:
        if table.name not in existing_tables:
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in have or not column.nullable:
                continue
            kind = column.type.compile(conn.dialect)
            conn.execute(
                text(f"ALTER TABLE {_quoted(table.name)} ADD COLUMN {_quoted(column.name)} {kind}")
            )
            added.append((table.name, column.name))
    return added


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _adopt_pre_alembic(conn: Connection) -> bool:
    """A database with the store's tables and no ``alembic_version``: bring it to exactly
    revision 0001 and stamp it. False when the database is empty (nothing to adopt)."""
    baseline = baseline_metadata()
    tables = set(inspect(conn).get_table_names())
    if not tables & set(baseline.tables):
        return False
    baseline.create_all(conn)  # tables an older release did not have yet
    for table, column in add_missing_nullable_columns(conn, baseline):
        log.info("store_column_added", table=table, column=column)
    command.stamp(alembic_config(conn), BASELINE)
    log.info("store_stamped", revision=BASELINE, reason="made before migrations")
    return True


def _upgrade_sync(conn: Connection, target: str) -> list[str]:
    if conn.dialect.name == "postgresql":
        # Held until this transaction ends: a second node waits here, then sees head.
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK})
    elif conn.dialect.name == "sqlite" and not getattr(
        conn.connection.driver_connection, "in_transaction", True
    ):
        # The write lock from the first statement: a second process (serve and `db upgrade`
        # at once) waits for this upgrade, then sees head; and the DDL commits as one.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    if _current(conn) is None:
        _adopt_pre_alembic(conn)
    cfg = alembic_config(conn)
    applied: list[str] = []
    cfg.attributes["applied"] = applied
    try:
        command.upgrade(cfg, target)
    except CommandError as exc:  # e.g. a revision only a newer release knows
        raise StoreNeedsUpgrade(f"cannot upgrade the store: {exc}") from exc
    return applied


async def upgrade_engine(engine: AsyncEngine, target: str = "head") -> list[str]:
    """Upgrade the store behind ``engine`` to ``target``; the revisions applied, in order."""
    async with engine.begin() as conn:
        applied: list[str] = await conn.run_sync(_upgrade_sync, target)
    if applied:
        log.info("store_upgraded", revisions=applied)
    return applied


async def upgrade(url: str, target: str = "head") -> list[str]:
    """Upgrade the store at ``url`` to ``target`` (default: this release's head); return the
    revisions applied, in order (empty when it already was there)."""
    # SQLite: wait for a running server's write to finish instead of "database is locked".
    sqlite = make_url(url).get_backend_name() == "sqlite"
    engine = create_async_engine(url, connect_args={"timeout": 30} if sqlite else {})
    try:
        return await upgrade_engine(engine, target)
    finally:
        await engine.dispose()


async def current_revision_of(engine: AsyncEngine) -> str | None:
    """The store's revision; None for an empty database or one made before Alembic."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def current_revision(url: str) -> str | None:
    """The revision of the store at ``url`` (None: empty, or made before Alembic)."""
    engine = create_async_engine(url)
    try:
        return await current_revision_of(engine)
    finally:
        await engine.dispose()


def _has_tables(conn: Connection) -> bool:
    return bool(inspect(conn).get_table_names())


async def require_head(engine: AsyncEngine) -> None:
    """Raise :class:`StoreNeedsUpgrade` unless the store is at this release's head."""
    head = head_revision()
    async with engine.connect() as conn:
        current = await conn.run_sync(_current)
        has_tables = current is None and await conn.run_sync(_has_tables)
    if current == head:
        return
    if current is None:
        what = "was made before migrations" if has_tables else "is empty"
        raise StoreNeedsUpgrade(
            f"the store {what}; this release needs revision {head}: "
            "run `switchboard db upgrade` (PostgreSQL stores are only changed by that command)"
        )
    script = ScriptDirectory.from_config(alembic_config())
    try:
        script.get_revision(current)
    except CommandError:
        raise StoreNeedsUpgrade(
            f"the store is at revision {current}, which this release does not know "
            f"(made by a newer release?); this release needs {head}"
        ) from None
    raise StoreNeedsUpgrade(
        f"the store is at revision {current}, this release needs {head}: "
        "run `switchboard db upgrade`"
    )
