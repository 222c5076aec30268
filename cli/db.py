"""``switchboard db``: the store's schema and backups (thin commands over :mod:`app.db`).

``db upgrade`` brings the store the config names to this release's schema. ``serve`` does
that by itself for the embedded SQLite store; a PostgreSQL store shared by several nodes is
only changed by this command (under an advisory lock, so two nodes running it at once do not
race). ``db backup`` copies the store to a file while the server runs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.logging_setup import configure_logging

if TYPE_CHECKING:  # imported where used: the schema loads pbx helpers, --help needs none
    from config import ConfigError

DEFAULT_VAR_DIR = Path("var")

db_app = typer.Typer(
    help="The store: upgrade its schema, back it up.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

ConfigPath = Annotated[
    Path,
    typer.Option("--config", "-c", help="Config folder (holding switchboard.yaml) or YAML file."),
]


def _config_problems(err: ConfigError) -> typer.Exit:
    for problem in err.problems:
        typer.echo(str(problem), err=True)
    return typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade(config: ConfigPath = DEFAULT_VAR_DIR) -> None:
    """Upgrade the store to this release's schema; print the revisions applied (or that it
    already was at head). Exit 1 on failure."""
    from app.db import StoreNeedsUpgrade, upgrade_store
    from config import ConfigError

    configure_logging(level="warning")  # stdout is the report; problems go to stderr
    try:
        report = asyncio.run(upgrade_store(config))
    except ConfigError as err:
        raise _config_problems(err) from None
    except StoreNeedsUpgrade as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    if report.adopted:
        typer.echo("store made before migrations: stamped at revision 0001")
    for revision in report.applied:
        typer.echo(f"applied {revision}")
    if report.applied or report.adopted:
        typer.echo(f"store at head ({report.head})")
    else:
        typer.echo(f"already at head ({report.head})")


@db_app.command("backup")
def db_backup(
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write the backup to.")],
    config: ConfigPath = DEFAULT_VAR_DIR,
) -> None:
    """Back up the store to a file, consistent while the server runs: SQLite through the
    online backup API (the file is a SQLite store), PostgreSQL through pg_dump's custom
    format (restore with pg_restore). Exit 1 on failure."""
    from app.db import BackupError, backup_store
    from config import ConfigError

    configure_logging(level="warning")
    try:
        asyncio.run(backup_store(config, output))
    except ConfigError as err:
        raise _config_problems(err) from None
    except BackupError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"store backed up to {output}")
