"""The store as an operator handles it: ``switchboard db upgrade`` and ``db backup``.

Upgrading is :func:`crm.migrate.upgrade` on the store the config names. A backup is taken
while the server may be running and writing:

- SQLite: the SQLite online backup API (``sqlite3.Connection.backup``) copies a consistent
  snapshot page by page; the copy is written beside the target and renamed into place, so a
  failed backup never leaves half a file under the name asked for.
- PostgreSQL: ``pg_dump --format=custom`` (one consistent snapshot; restore with
  ``pg_restore -d URL FILE``). The password goes in through ``PGPASSWORD``, never argv.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from config import load_config
from crm.migrate import StoreNeedsUpgrade, current_revision, head_revision, upgrade

__all__ = [
    "BackupError",
    "StoreNeedsUpgrade",
    "UpgradeReport",
    "backup_database",
    "backup_store",
    "upgrade_store",
]


class BackupError(RuntimeError):
    """The backup could not be made (the message says why, in one line)."""


@dataclass(frozen=True, slots=True)
class UpgradeReport:
    """What ``db upgrade`` did: the revision before (None: an empty store or one made before
    migrations), the revisions applied in order, and the head it is at now."""

    before: str | None
    applied: list[str]
    head: str

    @property
    def adopted(self) -> bool:
        """A store made before migrations, stamped at the first revision (not created)."""
        return self.before is None and self.applied[:1] != ["0001"]


async def upgrade_store(config_path: Path) -> UpgradeReport:
    """Upgrade the store the config names to this release's schema. Raises ``ConfigError``
    for a config with errors, :class:`StoreNeedsUpgrade` for a store this release cannot
    upgrade (made by a newer one)."""
    cfg = load_config(config_path)
    before = await current_revision(cfg.store.url)
    applied = await upgrade(cfg.store.url)
    return UpgradeReport(before, applied, head_revision())


async def backup_store(config_path: Path, out: Path) -> None:
    """Back up the store the config names to ``out``. Raises ``ConfigError`` for a config
    with errors, :class:`BackupError` when the backup fails."""
    cfg = load_config(config_path)
    await backup_database(cfg.store.url, out)


async def backup_database(url: str, out: Path) -> None:
    """Back up the database at ``url`` (SQLite or PostgreSQL) to the file ``out``."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        await asyncio.to_thread(_backup_sqlite, parsed, out)
    elif backend == "postgresql":
        await _backup_postgresql(parsed, out)
    else:
        raise BackupError(f"cannot back up a {backend} store (SQLite and PostgreSQL only)")


def _partial(out: Path) -> Path:
    return out.with_name(f".{out.name}.partial")


def _backup_sqlite(url: URL, out: Path) -> None:
    db = url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        raise BackupError(f"cannot back up the SQLite store {db or ':memory:'!r}: not a file")
    source = Path(db)
    if not source.is_file():
        raise BackupError(f"no SQLite store at {source}")
    tmp = _partial(out)
    try:
        src = sqlite3.connect(source, timeout=30)
        try:
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst)
                # One self-contained file: the copy keeps no WAL beside it.
                dst.execute("PRAGMA journal_mode=DELETE")
            finally:
                dst.close()
        finally:
            src.close()
        os.replace(tmp, out)
    except (OSError, sqlite3.Error) as exc:
        tmp.unlink(missing_ok=True)
        raise BackupError(f"SQLite backup of {source} to {out} failed: {exc}") from exc


async def _backup_postgresql(url: URL, out: Path) -> None:
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise BackupError(
            "pg_dump not found on PATH: install the PostgreSQL client tools "
            "(Debian: apt install postgresql-client) of the server's major version or newer"
        )
    args = [pg_dump, "--format=custom", "--no-password", f"--file={_partial(out)}"]
    host = url.query.get("host", url.host)  # ?host=/run/postgresql: a unix socket folder
    if isinstance(host, str) and host:
        args.append(f"--host={host}")
    if url.port is not None:
        args.append(f"--port={url.port}")
    if url.username:
        args.append(f"--username={url.username}")
    args.append(f"--dbname={url.database or 'postgres'}")
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await proc.communicate()
    except OSError as exc:
        raise BackupError(f"cannot run pg_dump: {exc}") from exc
    if proc.returncode != 0:
        _partial(out).unlink(missing_ok=True)
        reason = " ".join(stderr.decode(errors="replace").split()) or f"exit {proc.returncode}"
        raise BackupError(f"pg_dump failed: {reason}")
    try:
        os.replace(_partial(out), out)
    except OSError as exc:
        raise BackupError(f"cannot write {out}: {exc}") from exc
