"""What the HTTP layer is given to work with: the services, and the operations the
composition root (``app/``) performs for it (config edits, reload, registrations, trunks).

The web layer holds no business rules: it authenticates, checks roles, validates input,
calls these and turns the answers into JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from acd.dialer import ClickToCall
from acd.host import AcdHost
from config import HttpConfig
from crm import CrmSettings, Store
from crm.reports import ReportSettings
from crm.tickets import TicketSettings
from pbx.control import CallControl
from recorder.commands import RecorderCommands
from web.auth import Authenticator
from web.hub import EventHub
from web.phone_line import PhoneLines

__all__ = ["OperationError", "Operations", "Services"]


class OperationError(Exception):
    """An operation refused: ``status`` is the HTTP status to answer with (400 bad input,
    404 unknown, 409 conflict, 422 the config it would make is invalid)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Operations(Protocol):
    """Done by ``app/`` for the API (it owns the config file and the SIP server)."""

    version: str
    started_at: float  # epoch seconds

    def counts(self) -> tuple[int, int]:
        """Calls in progress and live registrations (cheap: no lists built)."""
        ...

    def registrations(self) -> list[dict[str, Any]]: ...

    def trunks(self) -> list[dict[str, Any]]: ...

    def extensions(self) -> list[dict[str, Any]]: ...

    async def add_extension(self, number: str, name: str | None, password: str | None) -> str: ...

    async def remove_extension(self, number: str) -> None: ...

    async def set_extension_password(self, number: str, password: str | None) -> str: ...

    async def validate_config(self) -> list[str]: ...

    async def reload_config(self) -> dict[str, Any]: ...

    def agent_scope(self, agent: str) -> tuple[frozenset[str], frozenset[str]]:
        """An agent's extensions and the queues they serve."""
        ...

    def service_level_thresholds(self) -> dict[str, float]: ...

    def report_settings(self) -> ReportSettings:
        """How reports count: the ``reports:`` config and each queue's service level."""
        ...

    def crm_settings(self) -> CrmSettings:
        """Customers' custom fields and pool limits: the ``crm:`` config."""
        ...

    def ticket_settings(self) -> TicketSettings:
        """Ticket code tables, departments, business calendar and SLA: ``tickets:``."""
        ...

    def metrics(self) -> tuple[bytes, str]:
        """Prometheus text and its content type."""
        ...


@dataclass(slots=True)
class Services:
    """Everything the API routes use."""

    store: Store
    control: CallControl
    acd: AcdHost
    dialer: ClickToCall
    ops: Operations
    hub: EventHub
    auth: Authenticator
    http: HttpConfig
    # The recorder's commands; None when recording is not enabled (the API answers 503).
    recorder: RecorderCommands | None = None
    # Hosted phones behind the browser phone; None when ``browser_phone.enabled`` is off.
    phones: PhoneLines | None = None
