"""The FastAPI application and the uvicorn server that runs it inside Switchboard's own
event loop (DESIGN.md: one process, one loop; signals stay with Switchboard)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import structlog
import uvicorn
from fastapi import FastAPI

from web.api import build_router, install_error_handlers
from web.api_calls import build_calls_router
from web.api_crm import build_crm_router
from web.api_kb import build_kb_router
from web.api_notifications import build_notifications_router
from web.api_panel import build_panel_router
from web.api_recordings import build_recordings_router
from web.api_reports import build_reports_router
from web.api_tickets import build_tickets_router
from web.pages import install_pages
from web.phone import build_phone_router
from web.services import Services

__all__ = ["HttpListenError", "HttpServer", "create_app"]

log = structlog.get_logger("web")


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="Switchboard",
        version=services.ops.version,
        description="The control plane of a running Switchboard (docs/api.md).",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.services = services
    install_error_handlers(app)
    app.include_router(build_router(services))
    app.include_router(build_recordings_router(services))
    app.include_router(build_reports_router(services))
    app.include_router(build_crm_router(services))
    app.include_router(build_tickets_router(services))
    app.include_router(build_kb_router(services))
    app.include_router(build_notifications_router(services))
    app.include_router(build_panel_router(services))
    app.include_router(build_phone_router(services))
    app.include_router(build_calls_router(services))
    install_pages(app, services)
    return app


class HttpListenError(OSError):
    """The HTTP socket could not be opened; ``socket`` and ``setting`` name it for the
    CLI's one-line error (as ``pbx.stack.ListenError`` does for SIP)."""

    def __init__(self, errno: int | None, host: str, port: int, reason: str | None) -> None:
        super().__init__(errno, f"cannot listen for HTTP on {host}:{port}: {reason}")
        self.socket = f"tcp {host}:{port}"
        self.setting = "http.host/http.port"


class _InLoopServer(uvicorn.Server):
    """uvicorn without its signal handlers: SIGINT/SIGTERM/SIGHUP are Switchboard's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """Serves ``app`` on ``host:port`` as a task of the running loop."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.host = host
        self.port = port
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            proxy_headers=False,
            ws="websockets-sansio",
            # Events are small JSON texts: compressing each costs the loop more (~25 µs a
            # message, per client) than it saves on a LAN (bench/web.py).
            ws_per_message_deflate=False,
            timeout_graceful_shutdown=2,
        )
        self._server = _InLoopServer(config)
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    async def start(self) -> None:
        """Bind (raising ``OSError`` naming the address when that fails), then serve."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(1024)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise HttpListenError(exc.errno, self.host, self.port, exc.strerror) from None
        self._socket = sock
        self.port = sock.getsockname()[1]
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()
        log.info("http_listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, 5.0)
        self._task = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
