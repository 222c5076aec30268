"""The ``/api`` routes (docs/api.md): authentication, role checks, input validation and
JSON; the work itself is done by the services (``web.services``)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import ipaddress
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.websockets import WebSocketDisconnect

from crm import AgentStateData, CallRecordData, Disposition, QueueEventData
from crm.users import ROLES, AuditEntry, UserExistsError
from web.auth import COOKIE, CSRF_HEADER, LOCAL_ADMIN, AuthError, Principal
from web.services import OperationError, Services

__all__ = ["build_router"]

log = structlog.get_logger("web.api")

MAX_PER_PAGE = 500
SSE_KEEPALIVE = 15.0
DURABLE_WAIT = 5.0  # seconds an agent state change waits for its commit before answering


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- request bodies ----------------------------------------------------------------------------

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")]
Number = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9]+$")]
Dialled = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^\+?[0-9*#]+$")]
Password = Annotated[str, Field(min_length=8, max_length=256)]
Role = Annotated[str, Field(pattern="^(" + "|".join(ROLES) + ")$")]


class LoginBody(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=256)]


class OriginateBody(BaseModel):
    extension: Number
    number: Dialled


class ExtensionBody(BaseModel):
    number: Number
    name: Annotated[str, Field(max_length=80)] | None = None
    password: Annotated[str, Field(min_length=8, max_length=128)] | None = None


class ExtensionPasswordBody(BaseModel):
    password: Annotated[str, Field(min_length=8, max_length=128)] | None = None


class PauseBody(BaseModel):
    reason: Annotated[str, Field(min_length=1, max_length=40)] | None = None


class UserBody(BaseModel):
    name: Name
    role: Role
    password: Password
    agent: Name | None = None


class PasswordBody(BaseModel):
    password: Password
    # Required to change your own password (a stolen session or token must not suffice).
    current_password: Annotated[str, Field(max_length=256)] | None = None


class RoleBody(BaseModel):
    role: Role
    agent: Name | None = None


class TokenBody(BaseModel):
    user: Name
    name: Annotated[str, Field(max_length=80)] = ""


# -- JSON helpers --------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Dataclasses, datetimes (ISO 8601) and enums as JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return value


def page(items: Sequence[Any], total: int, page_no: int, per_page: int) -> dict[str, Any]:
    return {"items": list(items), "total": total, "page": page_no, "per_page": per_page}


def page_list(items: Sequence[Any], page_no: int, per_page: int) -> dict[str, Any]:
    start = (page_no - 1) * per_page
    return page(items[start : start + per_page], len(items), page_no, per_page)


def utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


PageNo = Annotated[int, Query(ge=1, le=1_000_000, alias="page")]
PerPage = Annotated[int, Query(ge=1, le=MAX_PER_PAGE)]


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def who(request: Request) -> Principal:
    """The authenticated caller (a FastAPI dependency); :class:`AuthError` otherwise."""
    services: Services = request.app.state.services
    return await services.auth.principal(
        authorization=request.headers.get("authorization"),
        cookie=request.cookies.get(COOKIE),
        method=request.method,
        csrf=request.headers.get(CSRF_HEADER),
    )


Who = Annotated[Principal, Depends(who)]


# -- helpers the routers share ---------------------------------------------------------------


async def audit_change(
    s: Services, request: Request, p: Principal, action: str, target: str, **detail: Any
) -> None:
    """Write one change made through the API to the audit log (and the log)."""
    address = request.client.host if request.client else ""
    log.info("api_change", user=p.name, action=action, target=target)
    entry = AuditEntry(datetime.now(UTC), p.name, address, action, target, jsonable(detail))
    try:
        await s.store.add_audit(entry)
    except Exception as exc:  # the change is made: answer it, and say what was not kept
        log.error("audit_not_stored", user=p.name, action=action, error=repr(exc))


def principal_scope(s: Services, p: Principal) -> tuple[frozenset[str], frozenset[str]]:
    """The caller's agent's extensions and served queues (empty for users with no agent)."""
    if p.agent is None:
        return frozenset(), frozenset()
    return s.ops.agent_scope(p.agent)


def is_own_call(
    s: Services,
    p: Principal,
    caller_ext: str | None,
    callee_ext: str | None,
    *,
    read: bool = True,
) -> bool:
    """Whether ``p`` may see (``read``) or act on a call with these extensions: qa reads
    and supervisors act on every call, an agent on calls at their own extensions."""
    if p.at_least("qa" if read else "supervisor"):
        return True
    extensions = principal_scope(s, p)[0]
    return caller_ext in extensions or callee_ext in extensions


def live_call_of(s: Services, p: Principal, call_id: str, *, read: bool = True) -> Any:
    """The live call ``call_id`` if ``p`` may see or act on it; ApiError 404 / 403."""
    info = s.control.info(call_id)
    if info is None or info.ended:
        raise ApiError(404, f"no live call {call_id}")
    if not is_own_call(s, p, info.local_caller_ext, info.local_callee_ext, read=read):
        raise ApiError(403, "not your call")
    return info


async def websocket_principal(s: Services, websocket: WebSocket) -> Principal | None:
    """Who opens this WebSocket (session cookie, bearer token or ``?token=``); None after
    closing it with 4401/4403 (not authenticated, foreign origin, refused)."""
    cookie = websocket.cookies.get(COOKIE)
    token = websocket.query_params.get("token")
    origin = websocket.headers.get("origin")
    host = websocket.headers.get("host")
    if cookie and not token and origin and host and origin.split("://", 1)[-1] != host:
        # A cookie rides along on a cross-site WebSocket: refuse foreign pages.
        await websocket.close(code=4403, reason="foreign origin")
        return None
    try:
        return await s.auth.principal(
            authorization=websocket.headers.get("authorization"),
            cookie=cookie,
            method="GET",
            csrf=None,
            query_token=token,
        )
    except AuthError as exc:
        await websocket.close(code=4401 if exc.status == 401 else 4403, reason=exc.message)
        return None


def build_router(s: Services) -> APIRouter:
    """Every route of docs/api.md; the app must hold ``s`` as ``app.state.services``."""
    router = APIRouter()

    async def audit(
        request: Request, p: Principal, action: str, target: str, **detail: Any
    ) -> None:
        await audit_change(s, request, p, action, target, **detail)

    def scope(p: Principal) -> tuple[frozenset[str], frozenset[str]]:
        return principal_scope(s, p)

    def own_call(
        p: Principal, caller_ext: str | None, callee_ext: str | None, *, read: bool = True
    ) -> bool:
        return is_own_call(s, p, caller_ext, callee_ext, read=read)

    # -- health and login ------------------------------------------------------------------------

    @router.get("/api/health", tags=["health"])
    async def health() -> dict[str, Any]:
        calls, registrations = s.ops.counts()
        return {
            "status": "ok",
            "version": s.ops.version,
            "uptime_seconds": round(time.time() - s.ops.started_at, 1),
            "calls": calls,
            "registrations": registrations,
        }

    @router.post("/api/login", tags=["auth"])
    async def login(body: LoginBody, request: Request, response: Response) -> dict[str, Any]:
        address = request.client.host if request.client else ""
        principal, cookie = await s.auth.login(body.name, body.password, address)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=s.http.session_minutes * 60,
            httponly=True,
            secure=s.http.secure_cookie,
            samesite="strict",
            path="/",
        )
        await audit(request, principal, "login", principal.name)
        return _me(principal)

    @router.post("/api/logout", tags=["auth"])
    async def logout(p: Who, response: Response) -> dict[str, Any]:
        if p.session_id is not None:
            await s.store.delete_session(p.session_id)
        response.delete_cookie(COOKIE, path="/")
        return {"logged_out": True}

    @router.get("/api/me", tags=["auth"])
    async def me(p: Who) -> dict[str, Any]:
        return _me(p)

    # -- registrations and calls ------------------------------------------------------------------

    @router.get("/api/registrations", tags=["sip"])
    async def registrations(
        p: Who, aor: str | None = None, page_no: PageNo = 1, per_page: PerPage = 50
    ) -> dict[str, Any]:
        p.require("supervisor")
        rows = [r for r in s.ops.registrations() if aor is None or r["aor"] == aor]
        return page_list(rows, page_no, per_page)

    def call_item(info: Any) -> dict[str, Any]:
        return {
            "id": info.call_id,
            "caller": info.caller,
            "callee": info.callee,
            "state": info.state,
            "caller_ext": info.caller_ext,
            "callee_ext": info.callee_ext,
            "linked_id": info.linked_id,
            "ivr_keys": info.ivr_keys,
            "started_at": jsonable(info.started_at),
            "answered_at": jsonable(info.answered_at),
            "direction": info.direction,
            "queue": info.queue,
            "agent": info.agent,
            "recording_id": s.recorder.recording_of(info.call_id) if s.recorder else None,
        }

    @router.get("/api/calls", tags=["calls"])
    async def calls(p: Who, page_no: PageNo = 1, per_page: PerPage = 50) -> dict[str, Any]:
        rows = [
            call_item(c)
            for c in s.control.calls()
            if not c.ended and own_call(p, c.local_caller_ext, c.local_callee_ext)
        ]
        return page_list(rows, page_no, per_page)

    def live_call(p: Principal, call_id: str, *, read: bool = True) -> Any:
        return live_call_of(s, p, call_id, read=read)

    @router.get("/api/calls/{call_id}", tags=["calls"])
    async def call(p: Who, call_id: str) -> dict[str, Any]:
        return call_item(live_call(p, call_id))

    @router.post("/api/calls/{call_id}/hangup", tags=["calls"])
    async def hangup(p: Who, call_id: str, request: Request) -> dict[str, Any]:
        live_call(p, call_id, read=False)
        s.control.hangup(call_id, "normal_clearing")
        await audit(request, p, "call.hangup", call_id)
        return {"id": call_id, "hung_up": True}

    @router.post("/api/calls", tags=["calls"])
    async def originate(p: Who, body: OriginateBody, request: Request) -> dict[str, Any]:
        if not p.at_least("supervisor") and body.extension not in scope(p)[0]:
            raise ApiError(403, f"extension {body.extension} is not yours")
        try:
            origin = s.dialer.dial(body.extension, body.number)
        except LookupError:
            raise ApiError(404, f"no extension {body.extension}") from None
        if origin is None:
            raise ApiError(409, f"extension {body.extension} has no registered phone")
        await audit(request, p, "call.originate", body.extension, number=body.number)
        return {"originate_id": origin}

    # -- extensions -------------------------------------------------------------------------------

    @router.get("/api/extensions", tags=["extensions"])
    async def extensions(p: Who, page_no: PageNo = 1, per_page: PerPage = 50) -> dict[str, Any]:
        p.require("supervisor")
        return page_list(s.ops.extensions(), page_no, per_page)

    @router.post("/api/extensions", tags=["extensions"], status_code=201)
    async def add_extension(p: Who, body: ExtensionBody, request: Request) -> dict[str, Any]:
        p.require("admin")
        password = await s.ops.add_extension(body.number, body.name, body.password)
        await audit(request, p, "extension.add", body.number, name=body.name)
        return {"number": body.number, "password": password}

    @router.delete("/api/extensions/{number}", tags=["extensions"])
    async def remove_extension(p: Who, number: str, request: Request) -> dict[str, Any]:
        p.require("admin")
        await s.ops.remove_extension(number)
        await audit(request, p, "extension.remove", number)
        return {"number": number, "removed": True}

    @router.put("/api/extensions/{number}/password", tags=["extensions"])
    async def extension_password(
        p: Who, number: str, body: ExtensionPasswordBody, request: Request
    ) -> dict[str, Any]:
        p.require("admin")
        password = await s.ops.set_extension_password(number, body.password)
        await audit(request, p, "extension.password", number)
        return {"number": number, "password": password}

    # -- queues and agents ------------------------------------------------------------------------

    def queue_item(q: Any) -> dict[str, Any]:
        return {
            "name": q.name,
            "strategy": q.strategy,
            "waiting": q.waiting,
            "longest_wait_seconds": round(q.longest_wait_seconds, 1),
            "agents": dict(q.agents),
        }

    def visible_queues(p: Principal) -> list[Any]:
        snaps = s.acd.queue_snapshots()
        if p.at_least("qa"):
            return snaps
        served = scope(p)[1]
        return [q for q in snaps if q.name in served]

    @router.get("/api/queues", tags=["queues"])
    async def queues(p: Who, page_no: PageNo = 1, per_page: PerPage = 50) -> dict[str, Any]:
        return page_list([queue_item(q) for q in visible_queues(p)], page_no, per_page)

    @router.get("/api/queues/{name}", tags=["queues"])
    async def queue(p: Who, name: str) -> dict[str, Any]:
        found = [q for q in visible_queues(p) if q.name == name]
        if not found:
            raise ApiError(404, f"no queue {name} (or not one you serve)")
        q = found[0]
        midnight = datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
        stats = (await s.store.queue_day_stats(midnight, s.ops.service_level_thresholds())).get(
            name
        )
        today = {
            "since": midnight.isoformat(),
            "offered": stats.offered if stats else 0,
            "answered": stats.answered if stats else 0,
            "abandoned": stats.abandoned if stats else 0,
            "service_level": stats.service_level if stats else None,
            "service_level_seconds": q.service_level_seconds,
            "asa_seconds": stats.asa_seconds if stats else None,
            "aht_seconds": stats.aht_seconds if stats else None,
        }
        return {**queue_item(q), "members": list(q.members), "today": today}

    def agent_item(a: Any) -> dict[str, Any]:
        return {
            "id": a.id,
            "name": a.name,
            "extensions": list(a.extensions),
            "state": a.state,
            "reason": a.reason,
            "since": datetime.fromtimestamp(a.since, UTC).isoformat() if a.since else None,
            "queues": list(a.queues),
            "current_call": a.current_call,
        }

    def agent_of(agent_id: str) -> Any:
        for a in s.acd.agent_snapshots():
            if a.id == agent_id:
                return a
        raise ApiError(404, f"no agent {agent_id}")

    def may_act_for(p: Principal, agent_id: str, role: str = "supervisor") -> None:
        if p.agent != agent_id and not p.at_least(role):
            raise ApiError(403, f"agent {agent_id} is not you")

    @router.get("/api/agents", tags=["agents"])
    async def agents(p: Who, page_no: PageNo = 1, per_page: PerPage = 50) -> dict[str, Any]:
        rows = [
            agent_item(a) for a in s.acd.agent_snapshots() if p.at_least("qa") or a.id == p.agent
        ]
        return page_list(rows, page_no, per_page)

    async def agent_action(
        p: Principal, agent_id: str, request: Request, action: str, run: Callable[[], None]
    ) -> dict[str, Any]:
        may_act_for(p, agent_id)
        before = agent_of(agent_id)
        if action in ("pause", "unpause") and before.state == "LOGGED_OUT":
            raise ApiError(409, f"agent {agent_id} is logged out")
        run()
        # Answered once the state change is committed (DESIGN.md, Durability).
        try:
            await asyncio.wait_for(asyncio.shield(s.acd.durable()), DURABLE_WAIT)
        except TimeoutError:
            raise ApiError(503, f"agent {agent_id}: {action} applied, not yet saved") from None
        await audit(request, p, f"agent.{action}", agent_id)
        return agent_item(agent_of(agent_id))

    @router.post("/api/agents/{agent_id}/login", tags=["agents"])
    async def agent_login(p: Who, agent_id: str, request: Request) -> dict[str, Any]:
        return await agent_action(p, agent_id, request, "login", lambda: s.acd.login(agent_id))

    @router.post("/api/agents/{agent_id}/logout", tags=["agents"])
    async def agent_logout(p: Who, agent_id: str, request: Request) -> dict[str, Any]:
        return await agent_action(p, agent_id, request, "logout", lambda: s.acd.logout(agent_id))

    @router.post("/api/agents/{agent_id}/pause", tags=["agents"])
    async def agent_pause(
        p: Who, agent_id: str, request: Request, body: PauseBody | None = None
    ) -> dict[str, Any]:
        reason = (body.reason if body else None) or "busy"
        return await agent_action(
            p, agent_id, request, "pause", lambda: s.acd.pause(agent_id, reason)
        )

    @router.post("/api/agents/{agent_id}/unpause", tags=["agents"])
    async def agent_unpause(p: Who, agent_id: str, request: Request) -> dict[str, Any]:
        return await agent_action(p, agent_id, request, "unpause", lambda: s.acd.unpause(agent_id))

    @router.get("/api/agents/{agent_id}/states", tags=["agents"])
    async def agent_states(
        p: Who,
        agent_id: str,
        since: datetime | None = None,
        until: datetime | None = None,
        page_no: PageNo = 1,
        per_page: PerPage = 50,
    ) -> dict[str, Any]:
        may_act_for(p, agent_id, "qa")
        rows, total = await s.store.agent_state_history(
            agent_id,
            since=utc(since),
            until=utc(until),
            offset=(page_no - 1) * per_page,
            limit=per_page,
        )
        return page([_state(r) for r in rows], total, page_no, per_page)

    # -- records ----------------------------------------------------------------------------------

    @router.get("/api/cdrs", tags=["records"])
    async def cdrs(
        p: Who,
        since: datetime | None = None,
        until: datetime | None = None,
        number: Annotated[str | None, Query(max_length=64)] = None,
        agent: str | None = None,
        queue: str | None = None,
        disposition: Disposition | None = None,
        page_no: PageNo = 1,
        per_page: PerPage = 50,
    ) -> dict[str, Any]:
        own: dict[str, Any] = {}
        if not p.at_least("qa"):
            if p.agent is None:
                raise ApiError(403, "needs role qa (you are agent without an agent id)")
            own = {"extensions": sorted(scope(p)[0]), "own_agent": p.agent}
        rows, total = await s.store.search_call_records(
            since=utc(since),
            until=utc(until),
            number=number,
            agent=agent,
            queue=queue,
            disposition=disposition.value if disposition else None,
            offset=(page_no - 1) * per_page,
            limit=per_page,
            **own,
        )
        return page([_record(r) for r in rows], total, page_no, per_page)

    @router.get("/api/queue-events", tags=["records"])
    async def queue_events(
        p: Who,
        since: datetime | None = None,
        until: datetime | None = None,
        queue: str | None = None,
        agent: str | None = None,
        event: str | None = None,
        page_no: PageNo = 1,
        per_page: PerPage = 50,
    ) -> dict[str, Any]:
        p.require("qa")
        rows, total = await s.store.search_queue_events(
            since=utc(since),
            until=utc(until),
            queue=queue,
            agent=agent,
            event=event,
            offset=(page_no - 1) * per_page,
            limit=per_page,
        )
        return page([_queue_event(r) for r in rows], total, page_no, per_page)

    # -- config and trunks ------------------------------------------------------------------------

    @router.post("/api/config/validate", tags=["config"])
    async def validate(p: Who) -> dict[str, Any]:
        p.require("admin")
        problems = await s.ops.validate_config()
        return {"ok": not problems, "problems": problems}

    @router.post("/api/config/reload", tags=["config"])
    async def reload(p: Who, request: Request) -> dict[str, Any]:
        p.require("admin")
        report = await s.ops.reload_config()
        await audit(request, p, "config.reload", "switchboard.yaml", ok=report.get("ok"))
        return report

    @router.get("/api/trunks", tags=["sip"])
    async def trunks(p: Who, page_no: PageNo = 1, per_page: PerPage = 50) -> dict[str, Any]:
        p.require("supervisor")
        return page_list(s.ops.trunks(), page_no, per_page)

    @router.get("/api/trunks/{name}", tags=["sip"])
    async def trunk(p: Who, name: str) -> dict[str, Any]:
        p.require("supervisor")
        for t in s.ops.trunks():
            if t.get("name") == name:
                return t
        raise ApiError(404, f"no trunk {name!r}")

    # -- users, tokens, audit ---------------------------------------------------------------------

    @router.get("/api/users", tags=["users"])
    async def users(p: Who, page_no: PageNo = 1, per_page: PerPage = 50) -> dict[str, Any]:
        p.require("admin")
        rows = [
            {
                "name": u.name,
                "role": u.role,
                "agent": u.agent,
                "created_at": u.created_at.isoformat(),
                "disabled": u.disabled,
            }
            for u in await s.store.list_users()
        ]
        return page_list(rows, page_no, per_page)

    @router.post("/api/users", tags=["users"], status_code=201)
    async def add_user(p: Who, body: UserBody, request: Request) -> dict[str, Any]:
        p.require("admin")
        if body.name == LOCAL_ADMIN:
            raise ApiError(409, f"{LOCAL_ADMIN} is the name of the local admin token")
        check_agent(body.role, body.agent)
        try:
            user = await s.store.add_user(body.name, body.role, body.password, body.agent)
        except UserExistsError:
            raise ApiError(409, f"user {body.name} exists") from None
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        await audit(request, p, "user.add", user.name, role=user.role, agent=user.agent)
        return {"name": user.name, "role": user.role, "agent": user.agent}

    def check_agent(role: str, agent: str | None) -> None:
        if agent is not None and agent not in {a.id for a in s.acd.agent_snapshots()}:
            raise ApiError(400, f"no agent {agent} in the config's agents:")
        if role == "agent" and agent is None:
            raise ApiError(400, "an agent user needs --agent (an id from agents:)")

    @router.put("/api/users/{name}/password", tags=["users"])
    async def user_password(
        p: Who, name: str, body: PasswordBody, request: Request
    ) -> dict[str, Any]:
        if p.name != name:
            p.require("admin")
        elif (
            not body.current_password
            or (await s.store.check_password(name, body.current_password)) is None
        ):
            raise ApiError(403, "changing your own password needs current_password")
        try:
            found = await s.store.set_password(name, body.password)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        if not found:
            raise ApiError(404, f"no user {name}")
        await audit(request, p, "user.password", name)
        return {"name": name, "password_changed": True}

    @router.put("/api/users/{name}/role", tags=["users"])
    async def user_role(p: Who, name: str, body: RoleBody, request: Request) -> dict[str, Any]:
        p.require("admin")
        check_agent(body.role, body.agent)
        if not await s.store.set_role(name, body.role, body.agent):
            raise ApiError(404, f"no user {name}")
        await audit(request, p, "user.role", name, role=body.role, agent=body.agent)
        return {"name": name, "role": body.role, "agent": body.agent}

    @router.get("/api/tokens", tags=["users"])
    async def tokens(p: Who, page_no: PageNo = 1, per_page: PerPage = 50) -> dict[str, Any]:
        p.require("admin")
        return page_list([jsonable(t) for t in await s.store.list_tokens()], page_no, per_page)

    @router.post("/api/tokens", tags=["users"], status_code=201)
    async def create_token(p: Who, body: TokenBody, request: Request) -> dict[str, Any]:
        p.require("admin")
        try:
            token, secret = await s.store.create_token(body.user, body.name)
        except LookupError:
            raise ApiError(404, f"no user {body.user}") from None
        await audit(request, p, "token.create", body.user, id=token.id, name=body.name)
        return {"id": token.id, "user": token.user, "name": token.name, "token": secret}

    @router.delete("/api/tokens/{token_id}", tags=["users"])
    async def revoke_token(p: Who, token_id: int, request: Request) -> dict[str, Any]:
        p.require("admin")
        if not await s.store.revoke_token(token_id):
            raise ApiError(404, f"no token {token_id}")
        await audit(request, p, "token.revoke", str(token_id))
        return {"id": token_id, "revoked": True}

    @router.get("/api/audit", tags=["users"])
    async def audit_log(
        p: Who,
        since: datetime | None = None,
        until: datetime | None = None,
        user: str | None = None,
        page_no: PageNo = 1,
        per_page: PerPage = 50,
    ) -> dict[str, Any]:
        p.require("admin")
        rows, total = await s.store.list_audit(
            since=utc(since),
            until=utc(until),
            user=user,
            offset=(page_no - 1) * per_page,
            limit=per_page,
        )
        items = [
            {
                "time": e.time.isoformat(),
                "user": e.user,
                "address": e.address,
                "action": e.action,
                "target": e.target,
                "detail": e.detail,
            }
            for e in rows
        ]
        return page(items, total, page_no, per_page)

    # -- events -----------------------------------------------------------------------------------

    @router.get("/api/events", tags=["events"])
    async def events(p: Who, request: Request) -> StreamingResponse:
        listener = s.hub.connect(p)

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b": connected\n\n"
                while True:
                    try:
                        text = await asyncio.wait_for(listener.queue.get(), SSE_KEEPALIVE)
                    except TimeoutError:
                        if await request.is_disconnected():
                            return
                        if not await s.auth.still_valid(p):
                            return  # logged out, revoked, expired or changed role
                        yield b": keep-alive\n\n"
                        continue
                    if text is None:
                        return
                    yield b"data: " + text.encode() + b"\n\n"
            finally:
                s.hub.disconnect(listener)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.websocket("/api/events/ws")
    async def events_ws(websocket: WebSocket) -> None:
        p = await websocket_principal(s, websocket)
        if p is None:
            return
        await websocket.accept()
        listener = s.hub.connect(p)

        async def drain_incoming() -> None:
            with contextlib.suppress(WebSocketDisconnect):
                while True:
                    await websocket.receive_text()  # clients do not speak; notice them leave

        reader = asyncio.ensure_future(drain_incoming())

        def client_left(_: asyncio.Future[None]) -> None:
            # Wake the loop below when the client goes: None in the queue (there is room
            # for one: the hub cuts a client off at MAX_BACKLOG and the queue holds one more).
            with contextlib.suppress(asyncio.QueueFull):
                listener.queue.put_nowait(None)

        reader.add_done_callback(client_left)
        # One wait per event and no task per event: with hundreds of panels connected an
        # event wakes every one of them in the same loop turn, so each wake-up must be cheap
        # (bench/web.py measures what the panels cost the loop).
        try:
            while True:
                try:
                    async with asyncio.timeout(SSE_KEEPALIVE):
                        text = await listener.queue.get()
                except TimeoutError:  # quiet for a while: is the caller still who they were?
                    if not await s.auth.still_valid(p):
                        await websocket.close(code=4401, reason="credentials no longer valid")
                        break
                    continue
                if text is None:
                    if not reader.done():
                        await websocket.close(code=4408, reason="too slow: reconnect")
                    break
                await websocket.send_text(text)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            reader.cancel()
            s.hub.disconnect(listener)

    # -- metrics ----------------------------------------------------------------------------------

    @router.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def metrics(request: Request) -> Response:
        if not _is_loopback(request.client.host if request.client else None):
            (await who(request)).require("supervisor")
        body, content_type = s.ops.metrics()
        return Response(body, media_type=content_type)

    return router


def _me(p: Principal) -> dict[str, Any]:
    return {"user": p.name, "role": p.role, "agent": p.agent, "csrf_token": p.csrf_token}


def _record(r: CallRecordData) -> dict[str, Any]:
    out: dict[str, Any] = jsonable(r)
    return out


def _state(r: AgentStateData) -> dict[str, Any]:
    return {
        "time": r.time.isoformat(),
        "old_state": r.old_state,
        "new_state": r.new_state,
        "event": r.event,
        "reason": r.reason,
    }


def _queue_event(r: QueueEventData) -> dict[str, Any]:
    return {
        "time": r.time.isoformat(),
        "call_id": r.call_id,
        "queue": r.queue,
        "agent": r.agent,
        "event": r.event,
        "data": list(r.data),
    }


def install_error_handlers(app: FastAPI) -> None:
    """Every error is ``{"error": "one line"}`` with its status (docs/api.md)."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    async def auth_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AuthError)
        headers = (
            {"Retry-After": str(max(1, round(exc.retry_after)))}
            if exc.retry_after is not None
            else None
        )
        return error(exc.status, exc.message, headers)

    async def api_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, (ApiError, OperationError))
        return error(exc.status, exc.message)

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    async def invalid(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        first: dict[str, Any] = dict(errors[0]) if errors else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        message = str(first.get("msg", "invalid request"))
        return error(422, f"{where}: {message}" if where else message)

    async def out_of_range(request: Request, exc: Exception) -> Response:
        # An id no row can have (beyond the database's 64-bit integers): the client's error.
        log.info("api_number_out_of_range", path=request.url.path, error=str(exc))
        return error(400, "a number in the request is out of range")

    async def crashed(request: Request, exc: Exception) -> Response:
        log.error("api_error", path=request.url.path, error=repr(exc))
        return error(500, "internal error (see the server log)")

    handlers: list[tuple[type[Exception], Callable[[Request, Exception], Awaitable[Response]]]] = [
        (AuthError, auth_error),
        (ApiError, api_error),
        (OperationError, api_error),
        (StarletteHTTPException, http_error),
        (RequestValidationError, invalid),
        (OverflowError, out_of_range),
        (Exception, crashed),
    ]
    for kind, handler in handlers:
        app.add_exception_handler(kind, handler)
