"""Users of the control plane: roles, API tokens, browser sessions, the audit log.

Theory of operation: the store (:class:`crm.Store`) keeps one row per user with an Argon2id
password hash (argon2-cffi's :class:`~argon2.PasswordHasher`; hashing is slow by design, so
the store runs it in a worker thread with :func:`asyncio.to_thread`). API tokens and session
ids are bearer secrets: the store keeps only their SHA-256 (:func:`secret_hash`), so a copy of
the database does not let anyone in. A token is ``sbt_`` + 32 random bytes (url-safe base64);
a session id and its CSRF token are 32 random bytes each.

Roles are ordered (:data:`ROLES`, ascending privilege): a check "at least supervisor" is
``role_rank(user.role) >= role_rank("supervisor")``.

This module holds the plain, frozen data classes callers get back (never ORM rows) and the
small pure helpers; the queries live on :class:`crm.Store`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ROLES: tuple[str, ...] = ("agent", "qa", "supervisor", "admin")
"""The roles, in ascending privilege (docs/api.md "Who may call it")."""

MIN_PASSWORD_LENGTH = 8
# Argon2 pre-hashes its input, but a password of megabytes is still no password.
MAX_PASSWORD_LENGTH = 1024
TOKEN_PREFIX = "sbt_"
# token_user writes last_used_at at most this often per token (not a write per request).
TOKEN_TOUCH_SECONDS = 60.0
# Service-level threshold of a queue that queue_day_stats is not given one for.
DEFAULT_SERVICE_LEVEL_SECONDS = 20.0

_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")


class UserExistsError(ValueError):
    """``add_user`` of a name that is already taken."""


def role_rank(role: str) -> int:
    """The privilege of ``role``: its index in :data:`ROLES`. ValueError for an unknown role."""
    try:
        return ROLES.index(role)
    except ValueError:
        raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)})") from None


def check_user_name(name: str) -> str:
    """``name`` if it is a valid user name (1-64 of ``A-Z a-z 0-9 . _ @ -``), else ValueError."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise ValueError(f"bad user name {name!r}: 1-64 characters of A-Z a-z 0-9 . _ @ -")
    return name


def check_password_rules(password: str) -> str:
    """``password`` if it is acceptable as a new password, else ValueError."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password too short: at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"password too long: at most {MAX_PASSWORD_LENGTH} characters")
    return password


def secret_hash(secret: str) -> str:
    """The SHA-256 (hex) under which a token or session id is stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_token_secret() -> str:
    """A fresh API token secret (``sbt_`` + 32 random bytes, url-safe base64)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: use timezone-aware UTC datetimes")
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class UserData:
    """A user of the API and web panel. ``agent`` links an agent user to an ``agents:`` id."""

    id: int
    name: str
    role: str
    agent: str | None
    created_at: datetime
    disabled: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "created_at", _aware(self.created_at))


@dataclass(frozen=True, slots=True)
class TokenData:
    """An API token as listed (never its secret, which is shown once at creation)."""

    id: int
    user: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "created_at", _aware(self.created_at))
        if self.last_used_at is not None:
            object.__setattr__(self, "last_used_at", _aware(self.last_used_at))


@dataclass(frozen=True, slots=True)
class SessionData:
    """A browser session: ``id`` goes in the (signed) cookie, ``csrf_token`` must come back
    in ``X-CSRF-Token`` on every change. ``user`` is read afresh on every lookup."""

    id: str
    user: UserData
    csrf_token: str
    created_at: datetime
    expires_at: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "created_at", _aware(self.created_at))
        object.__setattr__(self, "expires_at", _aware(self.expires_at))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change made through the API: who (``user`` from ``address``) did ``action`` to
    ``target``, with ``detail`` (stored as JSON; values that JSON lacks are stored as
    their ``str``)."""

    time: datetime
    user: str
    address: str
    action: str
    target: str
    detail: dict[str, Any] = field(default_factory=dict)
    # Database id, set on entries read back from the store.
    id: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", _aware(self.time))


@dataclass(frozen=True, slots=True)
class QueueDayStats:
    """A queue's figures since a moment (the API's "today"), from the queue event log.

    See :meth:`crm.Store.queue_day_stats` for how each number is counted.
    """

    queue: str
    offered: int
    answered: int
    abandoned: int
    answered_in_sl: int
    abandoned_in_sl: int
    total_wait_answered: float
    service_level: float | None
    asa_seconds: float | None
    # Calls whose agent leg ended (COMPLETEAGENT, COMPLETECALLER, TRANSFER), their summed
    # talk time and its average: the wallboard's AHT (the reports' AHT adds after-call work).
    completed: int = 0
    total_talk: float = 0.0
    aht_seconds: float | None = None
