"""Shared pytest fixtures.

PostgreSQL: ``pg_server`` starts a throwaway cluster once per session with Debian's binaries
(``/usr/lib/postgresql/*/bin/initdb`` and ``pg_ctl``) in a temporary folder, listening on a
free loopback port (127.0.0.1 only) and on a unix socket in that folder. When running as root
the cluster runs as the ``postgres`` system user (PostgreSQL refuses to run as root).
``pg_url`` creates a fresh database per test and drops it afterwards.

Set ``SWITCHBOARD_TEST_PG_URL=postgresql+asyncpg://user:pw@host/db`` to use an existing server
instead (each test still gets its own database). Without PostgreSQL the tests that need it
fail with the reason (`make test-deps` installs it); ``SWITCHBOARD_SKIP_PG=1`` skips them
instead, for a machine that cannot have it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

PG_START_TIMEOUT = 60


def _pg_unavailable(reason: str) -> None:
    if os.environ.get("SWITCHBOARD_SKIP_PG") == "1":
        pytest.skip(f"PostgreSQL unavailable: {reason}")
    pytest.fail(
        f"PostgreSQL unavailable: {reason}. `make test-deps` installs it (Debian `postgresql`);"
        " SWITCHBOARD_SKIP_PG=1 skips these tests instead",
        pytrace=False,
    )


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _pg_bindir() -> Path | None:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(candidates[-1]).parent if candidates else None


def _run(cmd: list[str], runas: str | None, timeout: float) -> subprocess.CompletedProcess[str]:
    if runas is not None:
        cmd = ["runuser", "-u", runas, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """Base URL (``postgresql+asyncpg://postgres@127.0.0.1:<port>/postgres``) of a running
    throwaway PostgreSQL server."""
    external = os.environ.get("SWITCHBOARD_TEST_PG_URL")
    if external:
        yield external
        return

    bindir = _pg_bindir()
    if bindir is None:
        _pg_unavailable(
            "no /usr/lib/postgresql/*/bin/initdb (install the `postgresql` package; "
            "`make test` does)"
        )
    assert bindir is not None
    runas: str | None = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _pg_unavailable("running as root and there is no `postgres` user to run the server")
        if shutil.which("runuser") is None:
            _pg_unavailable("running as root and `runuser` is missing")
        runas = "postgres"

    root = Path(tempfile.mkdtemp(prefix="switchboard-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if runas is not None:
        entry = pwd.getpwnam(runas)
        for p in (root, sock):
            os.chown(p, entry.pw_uid, entry.pw_gid)
    started = False
    try:
        init = _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            runas,
            timeout=120,
        )
        if init.returncode != 0:
            _pg_unavailable(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
        # Loopback only, fsync off: a test cluster needs no durability.
        port = _free_loopback_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {sock}"
            " -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        )
        start = _run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(root / "server.log"),
                "-w",
                "-t",
                str(PG_START_TIMEOUT),
                "start",
            ],
            runas,
            timeout=PG_START_TIMEOUT + 10,
        )
        if start.returncode != 0:
            log = (root / "server.log").read_text(errors="replace")[-2000:]
            _pg_unavailable(f"pg_ctl start failed: {start.stderr.strip()} {log}")
        started = True
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            _run(
                [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                runas,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def new_pg_database(pg_server: str) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """A maker of fresh, empty PostgreSQL databases (their URLs), all dropped after the
    test."""
    import asyncpg
    from sqlalchemy.engine import make_url

    base = make_url(pg_server)
    made: list[str] = []

    async def admin() -> asyncpg.Connection:
        host = base.query.get("host", base.host)
        return await asyncpg.connect(
            user=base.username,
            password=base.password,
            host=host if isinstance(host, str) else None,
            port=base.port,
            database=base.database or "postgres",
            timeout=30,
        )

    async def make() -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        conn = await admin()
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        made.append(name)
        return base.set(database=name).render_as_string(hide_password=False)

    try:
        yield make
    finally:
        if made:
            conn = await admin()
            try:
                for name in made:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()


@pytest.fixture
async def pg_url(new_pg_database: Callable[[], Awaitable[str]]) -> str:
    """URL of a fresh, empty PostgreSQL database, dropped after the test."""
    return await new_pg_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database for store tests: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def store_url(empty_store_url: str) -> str:
    """A database for store tests that ``Store.open`` accepts: on PostgreSQL upgraded to this
    release's revision first (what ``switchboard db upgrade`` does; ``Store.open`` refuses an
    empty one), on SQLite still empty (``Store.open`` upgrades it)."""
    if empty_store_url.startswith("postgresql"):
        from crm.migrate import upgrade

        await upgrade(empty_store_url)
    return empty_store_url
