"""``switchboard db upgrade`` and ``db backup`` on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from app.db import BackupError, backup_database
from cli.main import app
from crm import Store
from crm.migrate import alembic_config, head_revision
from tests.fixtures import make_store_v010 as v010
from tests.unit.test_cli import _restore_logging  # noqa: F401 (autouse: undo configure_logging)

runner = CliRunner()


def _config(folder: Path, url: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "switchboard.yaml").write_text(f'store: {{url: "{url}"}}\n')
    return folder


def _revisions() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return [s.revision for s in reversed(list(script.walk_revisions()))]


async def _rows(url: str) -> dict[str, list[dict[str, object]]]:
    store = await Store.open(url)
    try:
        return await v010.table_rows(store.engine)
    finally:
        await store.close()


def test_db_upgrade_prints_the_revisions_then_already_at_head(
    empty_store_url: str, tmp_path: Path
) -> None:
    cfg = _config(tmp_path / "var", empty_store_url)
    first = runner.invoke(app, ["db", "upgrade", "--config", str(cfg)])
    assert first.exit_code == 0, first.output
    head = head_revision()
    assert first.output.splitlines() == [
        *(f"applied {r}" for r in _revisions()),
        f"store at head ({head})",
    ]
    again = runner.invoke(app, ["db", "upgrade", "-c", str(cfg)])
    assert again.exit_code == 0, again.output
    assert again.output == f"already at head ({head})\n"
    assert asyncio.run(_rows(empty_store_url))["call_records"] == []  # Store.open accepts it


def test_db_upgrade_adopts_a_store_made_by_0_1_0(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    shutil.copy(Path(v010.__file__).parent / "store-v0.1.0.sqlite", db)
    cfg = _config(tmp_path / "var", f"sqlite+aiosqlite:///{db}")
    result = runner.invoke(app, ["db", "upgrade", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "store made before migrations: stamped at revision 0001",
        *(f"applied {r}" for r in _revisions()[1:]),
        f"store at head ({head_revision()})",
    ]


def test_db_upgrade_with_a_broken_config_exits_1(tmp_path: Path) -> None:
    (tmp_path / "switchboard.yaml").write_text("store: {url: 42}\n")
    result = runner.invoke(app, ["db", "upgrade", "--config", str(tmp_path)])
    assert result.exit_code == 1
    assert "switchboard.yaml" in result.output


async def test_backup_while_the_store_is_open_has_every_committed_row(
    store_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = await Store.open(store_url)
    try:
        await v010.fill(store)
        expected = await v010.table_rows(store.engine)
        out = tmp_path / "backup.db"
        # The store stays open: on SQLite its last commits are still in the WAL file.
        await backup_database(store_url, out)
    finally:
        await store.close()
    if make_url(store_url).get_backend_name() == "sqlite":
        restored = f"sqlite+aiosqlite:///{out}"
        assert not Path(f"{out}-wal").exists()  # one self-contained file
    else:
        new_db: Callable[[], Awaitable[str]] = request.getfixturevalue("new_pg_database")
        restored = await new_db()
        target = make_url(restored)
        done = await asyncio.to_thread(
            subprocess.run,
            [
                "pg_restore",
                "--no-owner",
                f"--host={target.host}",
                f"--port={target.port}",
                f"--username={target.username}",
                f"--dbname={target.database}",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    assert await _rows(restored) == expected


def test_db_backup_cli_writes_a_file_that_opens_as_the_store(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    shutil.copy(Path(v010.__file__).parent / "store-v0.1.0.sqlite", db)
    cfg = _config(tmp_path / "var", f"sqlite+aiosqlite:///{db}")
    out = tmp_path / "copy.db"
    result = runner.invoke(app, ["db", "backup", "--config", str(cfg), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output == f"store backed up to {out}\n"
    assert asyncio.run(_rows(f"sqlite+aiosqlite:///{out}")) == asyncio.run(
        _rows(f"sqlite+aiosqlite:///{db}")
    )


def test_db_backup_of_a_missing_sqlite_store_creates_nothing(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "var", f"sqlite+aiosqlite:///{tmp_path / 'nothing.db'}")
    out = tmp_path / "copy.db"
    result = runner.invoke(app, ["db", "backup", "--config", str(cfg), "-o", str(out)])
    assert result.exit_code == 1
    assert "no SQLite store at" in result.output
    assert not (tmp_path / "nothing.db").exists() and not out.exists()


def test_db_backup_without_pg_dump_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    cfg = _config(tmp_path / "var", "postgresql+asyncpg://switchboard@127.0.0.1:5432/sb")
    result = runner.invoke(app, ["db", "backup", "--config", str(cfg), "-o", "x.dump"])
    assert result.exit_code == 1
    assert "pg_dump not found" in result.output and "postgresql-client" in result.output


async def test_a_failing_pg_dump_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match=r"pg_dump failed: .*"):
        await backup_database("postgresql+asyncpg://nobody@127.0.0.1:1/none", tmp_path / "x.dump")
    assert list(tmp_path.iterdir()) == []


def test_serve_refuses_a_postgresql_store_that_needs_db_upgrade(
    pg_url: str, tmp_path: Path
) -> None:
    cfg = _config(tmp_path / "var", pg_url)
    result = runner.invoke(app, ["serve", "--config", str(cfg)])
    assert result.exit_code == 1, result.output
    assert "is empty; this release needs revision" in result.output
    assert "run `switchboard db upgrade`" in result.output
