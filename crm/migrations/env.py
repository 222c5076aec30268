"""Alembic environment of the store.

Switchboard runs migrations itself (:mod:`crm.migrate`): it opens the async engine, takes a
connection and hands it in as ``config.attributes["connection"]`` from inside
``AsyncConnection.run_sync``, so the same aiosqlite / asyncpg URLs work here as everywhere
else. Without a connection (a developer running ``alembic`` by hand with ``-x url=...``, see
README) this file makes its own async engine from that URL.

``render_as_batch``: SQLite cannot ALTER most things; batch mode rebuilds the table instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from typing import Any

from alembic import context
from alembic.runtime.migration import MigrationContext, MigrationInfo
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from crm.migrate import modelled
from crm.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    applied: list[str] | None = config.attributes.get("applied")

    def on_apply(
        ctx: MigrationContext,
        step: MigrationInfo,
        heads: Collection[Any],
        run_args: Mapping[str, Any],
    ) -> None:
        if applied is not None and step.is_upgrade:
            applied.extend(step.up_revision_ids)

    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        include_name=modelled,  # not the KB's search index (crm.migrate.SEARCH_OBJECTS)
        user_module_prefix="",  # UtcDateTime(), imported by script.py.mako
        on_version_apply=on_apply,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("no database: pass -x url=sqlite+aiosqlite:///path.db")
    return url


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (connection := config.attributes.get("connection")) is not None:
    _run(connection)
else:
    asyncio.run(_run_with_own_engine(_url()))
