"""The control plane wired into a running Switchboard: the HTTP API's operations on the
config file and the SIP server, the first admin user, the local admin token and the
session-signing key (docs/api.md)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from ruamel.yaml.error import YAMLError

from acd.dialer import ClickToCall
from app.phone import HostedLines
from app.settings import (
    crm_settings_from_config,
    report_settings_from_config,
    ticket_settings_from_config,
)
from config import ConfigError, config_file_path
from config.defaults import generate_password
from config.edit import (
    ExtensionExistsError,
    add_extension,
    remove_extension,
    set_extension_password,
)
from crm import CrmSettings, CustomerService
from crm.notifications import NotificationStore
from crm.reports import ReportSettings
from crm.tickets import TicketService, TicketSettings
from web.api_notifications import deliver
from web.app import HttpServer, create_app
from web.auth import Authenticator
from web.hub import EventHub
from web.metrics import Metrics
from web.services import OperationError, Services

if TYPE_CHECKING:
    from app import Running

__all__ = [
    "ADMIN_PASSWORD_FILE",
    "ADMIN_TOKEN_FILE",
    "SECRET_FILE",
    "ControlPlane",
    "ensure_admin_user",
    "write_private",
]

log = structlog.get_logger("switchboard.http")

ADMIN_TOKEN_FILE = "admin.token"
ADMIN_PASSWORD_FILE = "admin.password"
SECRET_FILE = "http.secret"
# How often the public pool's job returns stale customers (crm.pool.return_after_days).
POOL_JOB_SECONDS = 3600.0
# How often the ticket escalation job looks for SLA warnings and breaches.
ESCALATION_JOB_SECONDS = 60.0
# How often new notifications are pushed to their users (docs/crm.md "Notifications").
NOTIFY_JOB_SECONDS = 1.0


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by its owner only (0600)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("switchboard")
    except PackageNotFoundError:
        return "0+unknown"


async def ensure_admin_user(running: Running, folder: Path) -> Path | None:
    """The first start with no admin user creates ``admin`` with a random password written
    to ``folder/admin.password`` (0600); returns that path, or None when an admin exists."""
    store = running.store
    if await store.has_admin():
        return None
    password = generate_password()
    path = folder / ADMIN_PASSWORD_FILE
    name = "admin"
    if await store.get_user(name) is not None:
        # A user named admin without the role (or disabled): make a fresh admin.
        name = f"admin-{secrets.token_hex(3)}"
    await store.add_user(name, "admin", password)
    text = password if name == "admin" else f"{name}: {password}"
    await asyncio.to_thread(write_private, path, text + "\n")
    log.warning("admin_user_created", user=name, password_file=str(path))
    return path


def _session_secret(folder: Path) -> bytes:
    """The key that signs session cookies, kept across restarts (sessions survive one)."""
    path = folder / SECRET_FILE
    try:
        value = path.read_text().strip()
        if len(value) >= 32:
            return value.encode()
    except OSError:
        pass
    value = secrets.token_hex(32)
    write_private(path, value + "\n")
    return value.encode()


class ControlPlane:
    """:class:`web.services.Operations` for a running Switchboard, plus the HTTP server."""

    def __init__(
        self,
        running: Running,
        folder: Path,
        config_file: Path | None,
        reload: Callable[[], Awaitable[Any]],
    ) -> None:
        self.running = running
        self.folder = folder
        self.config_file = config_file
        self._reload = reload
        self.version = _version()
        self.started_at = time.time()
        self.local_token = secrets.token_urlsafe(32)
        self._edit_lock = asyncio.Lock()
        server = running.server
        self.dialer = ClickToCall(server.control)
        self.hub = EventHub(self.agent_scope)
        self._unsubscribe = [
            server.control.subscribe(self.hub.on_call_event),
            running.acd.subscribe(self.hub.on_acd_item),
        ]
        self.metrics_source = Metrics(server, running.acd)
        self._pool_task: asyncio.Task[None] | None = None
        self._escalation_task: asyncio.Task[None] | None = None
        self._notify_task: asyncio.Task[None] | None = None
        http = running.config.http
        self.auth = Authenticator(
            running.store, self.local_token, _session_secret(folder), http.session_minutes
        )
        self.services = Services(
            store=running.store,
            control=server.control,
            acd=running.acd,
            dialer=self.dialer,
            ops=self,
            hub=self.hub,
            auth=self.auth,
            http=http,
            recorder=running.recorder,
            phones=HostedLines(lambda: self.running.config),
        )
        self.http = HttpServer(create_app(self.services), http.host, http.port)

    async def start(self) -> None:
        await ensure_admin_user(self.running, self.folder)
        await self.http.start()
        await asyncio.to_thread(
            write_private, self.folder / ADMIN_TOKEN_FILE, self.local_token + "\n"
        )
        self._pool_task = asyncio.get_running_loop().create_task(self._pool_job())
        self._escalation_task = asyncio.get_running_loop().create_task(self._escalation_job())
        self._notify_task = asyncio.get_running_loop().create_task(self._notify_job())

    async def _pool_job(self) -> None:
        """Hourly: owned customers without a follow-up for ``crm.pool.return_after_days``
        go back to the public pool (docs/crm.md)."""
        while True:
            try:
                service = CustomerService(self.running.store, self.crm_settings())
                await service.return_stale_to_pool(datetime.now(UTC))
            except Exception as exc:  # a store hiccup: try again next hour
                log.error("pool_job_failed", error=repr(exc))
            await asyncio.sleep(POOL_JOB_SECONDS)

    async def _escalation_job(self) -> None:
        """Every minute: record ticket SLA warnings and breaches (docs/crm.md "Tickets")."""
        while True:
            try:
                service = TicketService(self.running.store, self.ticket_settings())
                await service.escalate(datetime.now(UTC))
            except Exception as exc:  # a store hiccup: try again next minute
                log.error("escalation_job_failed", error=repr(exc))
            await asyncio.sleep(ESCALATION_JOB_SECONDS)

    async def _notify_job(self) -> None:
        """Every second: push new notifications to their users (web/api_notifications.py)."""
        notes = NotificationStore(self.running.store.engine)
        while True:
            try:
                await deliver(notes, self.hub, datetime.now(UTC))
            except Exception as exc:  # a store hiccup: try again next round
                log.error("notify_job_failed", error=repr(exc))
            await asyncio.sleep(NOTIFY_JOB_SECONDS)

    async def stop(self) -> None:
        if self._notify_task is not None:
            self._notify_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._notify_task
            self._notify_task = None
        if self._escalation_task is not None:
            self._escalation_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._escalation_task
            self._escalation_task = None
        if self._pool_task is not None:
            self._pool_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pool_task
            self._pool_task = None
        self.hub.close()  # event streams end at once instead of at the graceful timeout
        await self.http.stop()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self.dialer.close()
        self.metrics_source.close()
        token_file = self.folder / ADMIN_TOKEN_FILE
        with contextlib.suppress(OSError):
            if token_file.read_text().strip() == self.local_token:
                token_file.unlink()

    # -- Operations ------------------------------------------------------------------------------

    def counts(self) -> tuple[int, int]:
        return self.running.server.call_count(), self.running.server.registration_count()

    def registrations(self) -> list[dict[str, Any]]:
        return [
            {
                "aor": aor,
                "contact": c.uri,
                "source": f"{c.source[0]}:{c.source[1]}",
                "transport": c.transport,
                "expires_in": expires_in,
                "user_agent": c.user_agent,
            }
            for aor, c, expires_in in self.running.server.registrations()
        ]

    def trunks(self) -> list[dict[str, Any]]:
        server = self.running.server
        configured = self.running.config.trunks
        out = []
        for name, st in sorted(server.trunk_states().items()):
            cfg = configured.get(name)
            out.append(
                {
                    "name": name,
                    "state": "up" if st.usable else "down",
                    "registration": st.registration.value if st.registration else None,
                    "reachability": st.reachability.value,
                    "last_status": st.status,
                    "cause": st.cause,
                    "rtt_ms": round(st.rtt * 1000, 1) if st.rtt is not None else None,
                    "channels": server.trunk_load(name),
                    "max_channels": cfg.max_channels if cfg is not None else None,
                }
            )
        return out

    def extensions(self) -> list[dict[str, Any]]:
        registered = {r["aor"] for r in self.registrations()}
        return [
            {"number": number, "name": ext.name, "registered": number in registered}
            for number, ext in sorted(self.running.config.extensions.items())
        ]

    def agent_scope(self, agent: str) -> tuple[frozenset[str], frozenset[str]]:
        for a in self.running.acd.agent_snapshots():
            if a.id == agent:
                return frozenset(a.extensions), frozenset(a.queues)
        return frozenset(), frozenset()

    def service_level_thresholds(self) -> dict[str, float]:
        return {name: float(q.service_level) for name, q in self.running.config.queues.items()}

    def report_settings(self) -> ReportSettings:
        return report_settings_from_config(self.running.config)

    def crm_settings(self) -> CrmSettings:
        return crm_settings_from_config(self.running.config)

    def ticket_settings(self) -> TicketSettings:
        return ticket_settings_from_config(self.running.config)

    def metrics(self) -> tuple[bytes, str]:
        return self.metrics_source.render()

    async def validate_config(self) -> list[str]:
        from app import load_all

        path = self._config_path()
        try:
            await asyncio.to_thread(load_all, path)
        except ConfigError as err:
            return [str(p) for p in err.problems]
        return []

    async def reload_config(self) -> dict[str, Any]:
        self._config_path()
        result = await self._reload()
        return {
            "ok": result.ok,
            "applied": result.applied,
            "restart_needed": result.restart_needed,
            "problems": result.problems,
        }

    def _config_path(self) -> Path:
        if self.config_file is None:
            raise OperationError(409, "this server runs without a config file")
        return config_file_path(self.config_file)

    async def _edit(self, change: Callable[[str], str]) -> None:
        """Apply ``change`` to the config text, validate the result as a whole config, then
        replace the file (atomically, mode kept, fsynced) and reload. A result with problems
        is refused (422) and the file is untouched; a file edited by hand meanwhile is not
        overwritten (409). Parsing, dumping and validating run off the event loop: a config
        with thousands of extensions takes most of a second."""
        path = self._config_path()
        async with self._edit_lock:
            old_text, mode = await asyncio.to_thread(_apply_edit, path, change)
            result = await self._reload()
            if not result.ok:  # valid a moment ago: put the old file back, change nothing
                await asyncio.to_thread(_put_back, path, old_text, mode)
                raise OperationError(422, "; ".join(result.problems))

    async def add_extension(self, number: str, name: str | None, password: str | None) -> str:
        secret = password or generate_password()
        await self._edit(lambda text: add_extension(text, number, name, secret))
        return secret

    async def remove_extension(self, number: str) -> None:
        await self._edit(lambda text: remove_extension(text, number))

    async def set_extension_password(self, number: str, password: str | None) -> str:
        secret = password or generate_password()
        await self._edit(lambda text: set_extension_password(text, number, secret))
        return secret


def _apply_edit(path: Path, change: Callable[[str], str]) -> tuple[str, int]:
    """Read, change, validate and replace the config file; returns the old text and mode.
    Runs in a worker thread."""
    from app import load_all

    before = os.stat(path)
    text = path.read_text(encoding="utf-8")
    try:
        new_text = change(text)
    except YAMLError as exc:
        raise OperationError(422, f"{path} is not valid YAML now: {exc}") from None
    except ExtensionExistsError as exc:
        raise OperationError(409, f"extension {exc} exists") from None
    except LookupError as exc:
        raise OperationError(404, f"no extension {exc}") from None
    except ValueError as exc:
        raise OperationError(400, str(exc)) from None
    mode = before.st_mode & 0o777
    fd, tmp = tempfile.mkstemp(prefix=".switchboard-edit-", suffix=".yaml", dir=path.parent)
    tmp_path = Path(tmp)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new_text)
            f.flush()
            os.fsync(f.fileno())
        try:
            load_all(tmp_path)
        except ConfigError as err:
            problems = [str(p).replace(str(tmp_path), str(path)) for p in err.problems]
            problems = [p.replace(tmp_path.name, path.name) for p in problems]
            raise OperationError(422, "; ".join(problems)) from None
        now = os.stat(path)
        if (now.st_mtime_ns, now.st_size, now.st_ino) != (
            before.st_mtime_ns,
            before.st_size,
            before.st_ino,
        ):
            raise OperationError(409, f"{path} changed while it was being edited; try again")
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
    return text, mode


def _put_back(path: Path, text: str, mode: int) -> None:
    write_private(path, text)
    os.chmod(path, mode)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (the directory entry), where the platform allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
