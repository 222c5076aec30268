"""Who is calling the API: local admin token, bearer tokens, browser sessions; CSRF; login
throttling (docs/api.md, "Who may call it").

Three ways in, tried in this order:

1. ``Authorization: Bearer <local admin token>``: the token the server wrote to
   ``<config folder>/admin.token`` (mode 0600) at start. It lives in memory only and changes
   at every start; whoever can read that file is root or the server's own user already.
2. ``Authorization: Bearer sbt_...``: a token made with ``switchboard token create``, stored
   as a SHA-256 in the store (``crm.Store.token_user``).
3. The ``sb_session`` cookie: a session id from ``POST /api/login`` signed with the server's
   key (itsdangerous), looked up in the store (``crm.Store.get_session``), so logout, a
   password or role change and expiry end it server-side. A request that changes something
   must also carry the session's CSRF token in ``X-CSRF-Token`` (the synchronizer-token
   pattern; SameSite=Strict on the cookie is the second layer).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import deque
from dataclasses import dataclass, field

from itsdangerous import BadSignature, Signer

from crm import Store
from crm.users import role_rank

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "LOCAL_ADMIN",
    "AuthError",
    "Authenticator",
    "LoginThrottle",
    "Principal",
]

COOKIE = "sb_session"
CSRF_HEADER = "x-csrf-token"
LOCAL_ADMIN = "local-admin"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AuthError(Exception):
    """Refused: ``status`` is 401 (who are you?), 403 (not allowed) or 429 (throttled)."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller of the API."""

    name: str
    role: str
    agent: str | None
    via: str  # "local", "token" or "session"
    session_id: str | None = None
    csrf_token: str | None = None
    # The bearer token it came with, so a long-lived event stream can be checked again.
    token: str | None = field(default=None, repr=False, compare=False)

    def at_least(self, role: str) -> bool:
        return role_rank(self.role) >= role_rank(role)

    def require(self, role: str) -> None:
        if not self.at_least(role):
            raise AuthError(403, f"needs role {role} (you are {self.role})")


class LoginThrottle:
    """Wrong passwords are limited per user name (``limit``) and per client address
    (``address_limit``) within ``window`` seconds; beyond either, logins are refused (429)
    until the oldest failure leaves the window.

    A call center's agents often share one NAT address and log in together at the start of
    a shift, so the address's limit is much higher than the name's, and only *wrong*
    passwords count against it: logins still being checked count only against the name
    (so parallel guesses at one account cannot all pass the gate) and, at most
    ``max_pending`` at a time, against the address. Successes do not clear the address's
    count: a password sprayer who guesses one user right is still slowed for the others."""

    def __init__(
        self,
        limit: int = 5,
        window: float = 300.0,
        max_keys: int = 100_000,
        *,
        address_limit: int = 50,
        max_pending: int = 64,
    ) -> None:
        self.limit = limit
        self.address_limit = address_limit
        self.max_pending = max_pending
        self.window = window
        self.max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}
        self._pending: dict[str, int] = {}  # address -> logins being checked

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.get(key)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._failures[key]
        return q

    def retry_after(self, name: str, address: str, now: float) -> float | None:
        """Seconds until a login for ``name`` from ``address`` may be tried, or None."""
        waits = [
            q[0] + self.window - now
            for q, limit in (
                (self._recent(f"u:{name}", now), self.limit),
                (self._recent(f"a:{address}", now), self.address_limit),
            )
            if len(q) >= limit
        ]
        if self._pending.get(address, 0) >= self.max_pending:
            waits.append(1.0)
        return max(waits) if waits else None

    def _add(self, key: str, now: float, limit: int) -> None:
        if key not in self._failures and len(self._failures) >= self.max_keys:
            self._failures.pop(next(iter(self._failures)))  # a flood of names: forget the oldest
        self._failures.setdefault(key, deque(maxlen=limit * 4)).append(now)

    def begin(self, name: str, address: str, now: float) -> None:
        """A login is being checked: counted against the name now (taken back if right)."""
        self._add(f"u:{name}", now, self.limit)
        self._pending[address] = self._pending.get(address, 0) + 1

    def end(self, name: str, address: str, now: float, *, right: bool | None) -> None:
        """The check of a :meth:`begin` login is over: the password was right, wrong, or
        (None) never checked (the store failed, the client went away): then nothing
        counts, so an outage does not lock a shared address out."""
        left = self._pending.get(address, 0) - 1
        if left > 0:
            self._pending[address] = left
        else:
            self._pending.pop(address, None)
        if right:
            self._failures.pop(f"u:{name}", None)
        elif right is None:
            q = self._failures.get(f"u:{name}")
            if q:
                q.pop()
        else:
            self._add(f"a:{address}", now, self.address_limit)

    def failed(self, name: str, address: str, now: float) -> None:
        """A wrong password for ``name`` from ``address`` (both counts)."""
        self.begin(name, address, now)
        self.end(name, address, now, right=False)


class Authenticator:
    """Turns a request's credentials into a :class:`Principal` (see the module docs)."""

    def __init__(self, store: Store, local_token: str, secret: bytes, session_minutes: int) -> None:
        self.store = store
        self.local_token = local_token
        self.session_minutes = session_minutes
        self.signer = Signer(secret, salt="switchboard-session")
        self.throttle = LoginThrottle()
        # Argon2 checks at once: logins must not take every worker thread.
        self._verifying = asyncio.Semaphore(4)

    def cookie_value(self, session_id: str) -> str:
        return self.signer.sign(session_id).decode()

    def session_id(self, cookie: str) -> str | None:
        try:
            return self.signer.unsign(cookie).decode()
        except (BadSignature, UnicodeDecodeError):
            return None

    async def principal(
        self,
        *,
        authorization: str | None,
        cookie: str | None,
        method: str,
        csrf: str | None,
        query_token: str | None = None,
    ) -> Principal:
        """The caller, or :class:`AuthError`. ``query_token`` is a WebSocket's ``?token=``
        (browsers cannot set headers on one)."""
        bearer = None
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise AuthError(401, "Authorization must be 'Bearer <token>'")
            bearer = value.strip()
        elif query_token:
            bearer = query_token
        if bearer is not None:
            return await self._bearer(bearer)
        if cookie:
            return await self._session(cookie, method, csrf)
        raise AuthError(401, "log in (POST /api/login) or send a bearer token")

    async def _bearer(self, token: str) -> Principal:
        if self.local_token and hmac.compare_digest(token.encode(), self.local_token.encode()):
            return Principal(LOCAL_ADMIN, "admin", None, "local")
        user = await self.store.token_user(token)
        if user is None:
            raise AuthError(401, "unknown or revoked token")
        return Principal(user.name, user.role, user.agent, "token", token=token)

    async def still_valid(self, p: Principal) -> bool:
        """Whether ``p``'s credentials still stand for the same user and role (an open
        event stream asks every ~15 s: logout, a revoked token, a disabled user, a role
        change or an expired session end it)."""
        if p.via == "local":
            return True
        if p.via == "token":
            user = await self.store.token_user(p.token) if p.token else None
        else:
            session = await self.store.get_session(p.session_id) if p.session_id else None
            user = session.user if session is not None else None
        return user is not None and (user.name, user.role, user.agent) == (
            p.name,
            p.role,
            p.agent,
        )

    async def _session(self, cookie: str, method: str, csrf: str | None) -> Principal:
        session_id = self.session_id(cookie)
        session = await self.store.get_session(session_id) if session_id else None
        if session is None:
            raise AuthError(401, "session expired: log in again")
        if method in UNSAFE_METHODS and not (
            csrf and hmac.compare_digest(csrf.encode(), session.csrf_token.encode())
        ):
            raise AuthError(403, "missing or wrong X-CSRF-Token")
        user = session.user
        return Principal(
            user.name, user.role, user.agent, "session", session.id, session.csrf_token
        )

    async def login(self, name: str, password: str, address: str) -> tuple[Principal, str]:
        """Check a password (throttled); returns the principal and the cookie value."""
        now = time.monotonic()
        wait = self.throttle.retry_after(name, address, now)
        if wait is not None:
            raise AuthError(429, "too many failed logins: try again later", retry_after=wait)
        # Counted before the (slow) check, so parallel guesses cannot all pass the gate.
        self.throttle.begin(name, address, now)
        user, checked = None, False
        try:
            async with self._verifying:
                user = await self.store.check_password(name, password)
            checked = True
        finally:
            right = (user is not None) if checked else None
            self.throttle.end(name, address, time.monotonic(), right=right)
        if user is None:
            raise AuthError(401, "wrong user name or password")
        await self.store.purge_expired_sessions()
        session = await self.store.create_session(user.name, self.session_minutes)
        principal = Principal(
            user.name, user.role, user.agent, "session", session.id, session.csrf_token
        )
        return principal, self.cookie_value(session.id)
