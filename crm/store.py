"""The store: one database behind an async SQLAlchemy engine.

Theory of operation: :meth:`Store.open` builds an async engine (aiosqlite for SQLite, asyncpg
for PostgreSQL), checks or brings the schema to this release's Alembic revision
(:mod:`crm.migrate`) and returns a :class:`Store`. Every method opens a short session, does
one unit of work and commits, so the event loop is never blocked: aiosqlite runs SQLite in its
own thread and asyncpg is natively async. Callers pass and receive frozen dataclasses
(:class:`CallRecordData`, :class:`BindingData`), never ORM objects, so no lazy load can ever
hit the database from the wrong place.

SQLite is opened in WAL mode (readers do not block the writer) with ``synchronous=NORMAL``
(durable across process crashes; the last transactions may be lost on power failure, which is
acceptable for CDRs and bindings that phones refresh anyway).

Bindings are upserted on (aor, contact_uri) — RFC 3261 §10.3 step 8: a REGISTER with the same
contact updates the binding — with the backend's native ``INSERT ... ON CONFLICT``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar, cast

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    delete,
    event,
    false,
    func,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from crm.migrate import require_head, upgrade_engine
from crm.models import (
    AgentStateRow,
    ApiTokenRow,
    AuditRow,
    Base,
    BlacklistRow,
    CallbackRequest,
    CallRecord,
    Customer,
    CustomerAppointment,
    CustomerFollowup,
    CustomerNumber,
    ExtensionSetting,
    LastAgent,
    QueueEventRow,
    RecordingRow,
    Registration,
    SessionRow,
    SurveyResult,
    UserRow,
    Voicemail,
    WrapUp,
)
from crm.numbers import MIN_SUFFIX, normalise, numbers_match, tail
from crm.recordings import RecordingData, RecordingState
from crm.users import (
    DEFAULT_SERVICE_LEVEL_SECONDS,
    TOKEN_TOUCH_SECONDS,
    AuditEntry,
    QueueDayStats,
    SessionData,
    TokenData,
    UserData,
    UserExistsError,
    check_password_rules,
    check_user_name,
    new_token_secret,
    role_rank,
    secret_hash,
)

_D = TypeVar("_D")
_M = TypeVar("_M", bound=Base)

log = structlog.get_logger("crm.store")


class Disposition(StrEnum):
    """Outcome of a call, as call-center reports name it (Asterisk's CDR vocabulary). A
    queue call no agent answered (abandoned, timed out, turned into a callback) is
    NO ANSWER although Switchboard answered the caller to play the queue (docs/records.md)."""

    ANSWERED = "ANSWERED"
    NO_ANSWER = "NO ANSWER"
    BUSY = "BUSY"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


# Who placed the call, seen from the call centre (docs/records.md).
DIRECTIONS = ("inbound", "outbound", "internal")


class HangupSide(StrEnum):
    """Who ended the call."""

    CALLER = "caller"
    CALLEE = "callee"
    SYSTEM = "system"


class HangupCause(StrEnum):
    """Why the call ended (Q.850-style names). The store accepts any string."""

    NORMAL_CLEARING = "normal_clearing"
    NO_ANSWER = "no_answer"
    USER_BUSY = "user_busy"
    ORIGINATOR_CANCEL = "originator_cancel"
    MEDIA_TIMEOUT = "media_timeout"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: use timezone-aware UTC datetimes")
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class CallRecordData:
    """A call detail record. ``duration`` and ``billable_seconds`` are derived from the times.

    ``duration`` = end - start; ``billable_seconds`` = end - answer, or 0 if never answered.
    ``answer`` is when the called *party* answered (for a queue call: the agent), while
    ``system_answer`` is when Switchboard answered the caller itself (IVR, queue). The
    columns are described in ``docs/records.md``.
    """

    call_id: str
    caller: str
    callee: str
    start: datetime
    end: datetime
    hangup_cause: str
    disposition: Disposition
    hangup_side: HangupSide
    answer: datetime | None = None
    sip_status: int | None = None
    record_id: str | None = None
    linked_id: str | None = None
    caller_loss: float | None = None
    caller_jitter_ms: float | None = None
    caller_mos: float | None = None
    callee_loss: float | None = None
    callee_jitter_ms: float | None = None
    callee_mos: float | None = None
    ivr_keys: str | None = None
    dialled: str | None = None
    direction: str | None = None  # inbound, outbound, internal (see docs/records.md)
    system_answer: datetime | None = None
    queue: str | None = None
    agent: str | None = None
    wait_seconds: float | None = None
    queue_call_id: str | None = None
    callback_id: int | None = None
    trunk: str | None = None
    trunk_attempts: str | None = None
    caller_id_sent: str | None = None
    duration: float = field(init=False)
    billable_seconds: float = field(init=False)
    # Database id, set on records read back from the store.
    id: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        start, end = _utc(self.start), _utc(self.end)
        answer = _utc(self.answer) if self.answer is not None else None
        if end < start:
            raise ValueError("call record ends before it starts")
        if answer is not None and not start <= answer <= end:
            raise ValueError("call record answer time is outside start..end")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        object.__setattr__(self, "answer", answer)
        if self.system_answer is not None:
            object.__setattr__(self, "system_answer", _utc(self.system_answer))
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise ValueError(f"unknown call direction {self.direction!r}")
        object.__setattr__(self, "disposition", Disposition(self.disposition))
        object.__setattr__(self, "hangup_side", HangupSide(self.hangup_side))
        object.__setattr__(self, "duration", (end - start).total_seconds())
        billable = (end - answer).total_seconds() if answer is not None else 0.0
        object.__setattr__(self, "billable_seconds", billable)


@dataclass(frozen=True, slots=True)
class ExtensionSettingsData:
    """Do-not-disturb and forwarding of one extension (set from the phone by feature codes)."""

    number: str
    dnd: bool = False
    forward_all: str | None = None
    forward_busy: str | None = None
    forward_no_answer: str | None = None


@dataclass(frozen=True, slots=True)
class BindingData:
    """A registrar binding: where the phone(s) of ``aor`` can be reached, until ``expires_at``."""

    aor: str
    contact_uri: str
    received: str
    transport: str
    call_id: str
    cseq: int
    expires_at: datetime
    user_agent: str | None = None
    instance_id: str | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "expires_at", _utc(self.expires_at))


@dataclass(frozen=True, slots=True)
class VoicemailData:
    """A voicemail message: the WAV at ``path`` (checksum ``sha256``) left on call
    ``record_id``."""

    record_id: str
    mailbox: str
    caller: str
    path: str
    sha256: str
    seconds: float
    created_at: datetime
    heard: bool = False
    id: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "created_at", _utc(self.created_at))


SURVEY_RESULTS = (
    "satisfied",
    "neutral",
    "unsatisfied",
    "hung up without rating",
    "invalid key",
    "no rating entered",
)


@dataclass(frozen=True, slots=True)
class SurveyResultData:
    """How the caller of call ``record_id`` rated ``agent`` (one of :data:`SURVEY_RESULTS`)."""

    record_id: str
    survey_record_id: str
    caller: str
    agent: str
    flow: str
    result: str
    created_at: datetime
    digit: str | None = None
    id: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.result not in SURVEY_RESULTS:
            raise ValueError(f"unknown survey result {self.result!r}")
        object.__setattr__(self, "created_at", _utc(self.created_at))


@dataclass(frozen=True, slots=True)
class WrapUpData:
    """What ``agent`` noted in wrap-up after call ``record_id`` (None: no call known)."""

    record_id: str | None
    agent: str
    code: str | None
    notes: str
    at: datetime
    id: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", _utc(self.at))


@dataclass(frozen=True, slots=True)
class CallbackRequestData:
    """A request to call ``number`` back (for ``queue``, if any)."""

    number: str
    caller: str
    created_at: datetime
    queue: str | None = None
    record_id: str | None = None
    status: str = "pending"
    attempts: int = 0
    outcome: str | None = None
    id: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "created_at", _utc(self.created_at))


def phone_digits(number: str) -> str:
    """A phone number's digits only (caller IDs and stored numbers compare on these)."""
    return "".join(ch for ch in number if ch.isdigit())


CUSTOMER_GRADES = ("A", "B", "C", "D", "E")
# What a customer's number is; the one in ``CustomerData.phone`` is "primary".
NUMBER_KINDS = ("primary", "mobile", "home", "work", "fax", "other")


class CrmError(Exception):
    """A customer operation refused. ``status`` is the HTTP status an API answers with
    (400 bad input, 403 not allowed, 404 unknown, 409 conflicts with what is stored)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class DuplicateNumberError(CrmError):
    """A number belongs to another customer already (409); ``customer_id`` and ``name``
    say whose."""

    def __init__(self, number: str, customer_id: int, name: str) -> None:
        super().__init__(409, f"number {number} belongs to customer {customer_id} ({name})")
        self.number = number
        self.customer_id = customer_id
        self.name = name


@dataclass(frozen=True, slots=True)
class CustomerNumberData:
    """One more number of a customer, as typed; ``digits`` is its normalised form
    (crm/numbers.py)."""

    number: str
    kind: str = "mobile"
    id: int | None = field(default=None, compare=False)
    digits: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        digits = normalise(self.number)
        if not digits:
            raise ValueError(f"phone number {self.number!r} has no digits")
        if len(self.number) > 64:
            raise ValueError("phone number longer than 64 characters")
        if self.kind not in NUMBER_KINDS:
            raise ValueError(f"number kind must be one of {', '.join(NUMBER_KINDS)}")
        object.__setattr__(self, "digits", digits)


def clean_tags(tags: Sequence[str]) -> tuple[str, ...]:
    """Tags as stored: lower case, trimmed, no empties or repeats, in the order given."""
    out: list[str] = []
    for tag in tags:
        t = tag.strip().lower()
        if "," in t or ";" in t:
            raise ValueError(f"tag {tag!r}: no commas or semicolons in a tag")
        if len(t) > 64:
            raise ValueError(f"tag {tag!r} is longer than 64 characters")
        if t and t not in out:
            out.append(t)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class CustomerData:
    """A customer (docs/crm.md); ``grade`` is A (best) to E, or None. ``phone`` is the
    primary number, ``numbers`` the others. ``owner`` None: in the public pool. ``custom``
    holds the values of the custom fields the config declares (crm.customers checks them)."""

    name: str
    phone: str
    email: str | None = None
    company: str | None = None
    grade: str | None = None
    language: str | None = None
    notes: str | None = None
    created_at: datetime | None = None
    id: int | None = field(default=None, compare=False)
    address: str | None = None
    tags: tuple[str, ...] = ()
    source: str | None = None
    owner: str | None = None
    shared: bool = False
    custom: dict[str, Any] = field(default_factory=dict)
    numbers: tuple[CustomerNumberData, ...] = ()
    updated_at: datetime | None = None
    last_followup_at: datetime | None = None
    owned_since: datetime | None = None

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("customer name must not be empty")
        if len(self.name) > 255:
            raise ValueError("customer name longer than 255 characters")
        if self.grade is not None and self.grade not in CUSTOMER_GRADES:
            raise ValueError(f"customer grade must be A..E, not {self.grade!r}")
        if not phone_digits(self.phone):
            raise ValueError(f"customer phone {self.phone!r} has no digits")
        if len(self.phone) > 64:
            raise ValueError("customer phone longer than 64 characters")
        object.__setattr__(self, "tags", clean_tags(self.tags))
        for name in ("created_at", "updated_at", "last_followup_at", "owned_since"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _utc(value))

    @property
    def all_numbers(self) -> tuple[CustomerNumberData, ...]:
        """The primary number first, then the others."""
        return (CustomerNumberData(self.phone, "primary"), *self.numbers)

    def as_variables(self) -> dict[str, str]:
        """The customer as IVR lookup results (``customer.name``, ``customer.grade``...)."""
        out = {"id": str(self.id or ""), "name": self.name, "phone": self.phone}
        for key in ("email", "company", "grade", "language"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True, slots=True)
class FollowupData:
    """A contact with a customer: who, when, what, and when to follow up next."""

    customer_id: int
    time: datetime
    user: str
    note: str
    next_at: datetime | None = None
    id: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", _utc(self.time))
        if self.next_at is not None:
            object.__setattr__(self, "next_at", _utc(self.next_at))


@dataclass(frozen=True, slots=True)
class AppointmentData:
    """An appointment with a customer at ``at``; its reminder is due at ``remind_at``."""

    customer_id: int
    at: datetime
    remind_at: datetime
    user: str
    note: str = ""
    reminded: bool = False
    id: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", _utc(self.at))
        object.__setattr__(self, "remind_at", _utc(self.remind_at))
        if self.remind_at > self.at:
            raise ValueError("an appointment's reminder must not be after the appointment")


@dataclass(frozen=True, slots=True)
class BlacklistEntry:
    """A number outbound calls must not dial."""

    number: str
    reason: str
    added_by: str
    at: datetime
    id: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", _utc(self.at))
        if not normalise(self.number):
            raise ValueError(f"phone number {self.number!r} has no digits")

    @property
    def digits(self) -> str:
        return normalise(self.number)


@dataclass(frozen=True, slots=True)
class CustomerQuery:
    """A customer search (:meth:`Store.search_customers`); every given filter must hold.

    ``text``: a case-insensitive substring of the name or company. ``number``: matches one of
    the customer's numbers however it was typed (crm/numbers.py). ``grade``, ``tag``,
    ``owner``, ``source``: equal. ``pool``: True only unowned customers, False only owned
    ones. ``custom``: custom field values, equal (numbers compared as numbers).
    ``visible_to``: only what that agent user may see (shared, the pool, their own)."""

    text: str | None = None
    number: str | None = None
    grade: str | None = None
    tag: str | None = None
    owner: str | None = None
    source: str | None = None
    pool: bool | None = None
    custom: Mapping[str, str | float] = field(default_factory=dict)
    visible_to: str | None = None


@dataclass(frozen=True, slots=True)
class QueueEventData:
    """A queue event (``data`` fields as in Asterisk's ``queue_log``)."""

    time: datetime
    call_id: str
    queue: str
    agent: str
    event: str
    data: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", _utc(self.time))

    def queue_log_line(self) -> str:
        """``epoch|callid|queue|agent|event|data...`` with NONE for empty fields."""
        parts = [str(int(self.time.timestamp())), self.call_id or "NONE", self.queue or "NONE"]
        return "|".join([*parts, self.agent or "NONE", self.event, *self.data])


@dataclass(frozen=True, slots=True)
class AgentStateData:
    time: datetime
    agent: str
    old_state: str
    new_state: str
    event: str
    reason: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", _utc(self.time))


# The tables as Core objects, for bulk writes without the ORM's per-row work.
_CALL_RECORDS = cast(Table, CallRecord.__table__)
_REGISTRATIONS = cast(Table, Registration.__table__)

# Columns of call_records filled straight from CallRecordData attributes.
_RECORD_FIELDS = (
    "call_id",
    "caller",
    "callee",
    "start",
    "answer",
    "end",
    "duration",
    "billable_seconds",
    "sip_status",
    "record_id",
    "linked_id",
    "caller_loss",
    "caller_jitter_ms",
    "caller_mos",
    "callee_loss",
    "callee_jitter_ms",
    "callee_mos",
    "ivr_keys",
    "dialled",
    "direction",
    "system_answer",
    "queue",
    "agent",
    "wait_seconds",
    "queue_call_id",
    "callback_id",
    "trunk",
    "trunk_attempts",
    "caller_id_sent",
)

_BINDING_FIELDS = (
    "aor",
    "contact_uri",
    "received",
    "transport",
    "call_id",
    "cseq",
    "expires_at",
    "user_agent",
    "instance_id",
    "path",
)


def _record_from_row(row: CallRecord) -> CallRecordData:
    return CallRecordData(
        id=row.id,
        call_id=row.call_id,
        caller=row.caller,
        callee=row.callee,
        start=row.start,
        answer=row.answer,
        end=row.end,
        hangup_cause=row.hangup_cause,
        disposition=Disposition(row.disposition),
        hangup_side=HangupSide(row.hangup_side),
        sip_status=row.sip_status,
        record_id=row.record_id,
        linked_id=row.linked_id,
        caller_loss=row.caller_loss,
        caller_jitter_ms=row.caller_jitter_ms,
        caller_mos=row.caller_mos,
        callee_loss=row.callee_loss,
        callee_jitter_ms=row.callee_jitter_ms,
        callee_mos=row.callee_mos,
        ivr_keys=row.ivr_keys,
        dialled=row.dialled,
        direction=row.direction,
        system_answer=row.system_answer,
        queue=row.queue,
        agent=row.agent,
        wait_seconds=row.wait_seconds,
        queue_call_id=row.queue_call_id,
        callback_id=row.callback_id,
        trunk=row.trunk,
        trunk_attempts=row.trunk_attempts,
        caller_id_sent=row.caller_id_sent,
    )


def _binding_from_row(row: Registration) -> BindingData:
    return BindingData(**{name: getattr(row, name) for name in _BINDING_FIELDS})


class Store:
    """Async access to the database. Create with ``await Store.open(url)``."""

    def __init__(self, engine: AsyncEngine, hasher: PasswordHasher | None = None) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # Argon2id with argon2-cffi's defaults in production; tests pass a cheap one.
        self._hasher = hasher if hasher is not None else PasswordHasher()
        self._dummy_hash: str | None = None

    @property
    def engine(self) -> AsyncEngine:
        """The engine, for other services that add their own tables to :class:`Base`."""
        return self._engine

    @classmethod
    async def open(cls, url: str, *, hasher: PasswordHasher | None = None) -> Store:
        """Connect to ``url`` (``sqlite+aiosqlite://...`` or ``postgresql+asyncpg://...``).
        ``hasher`` hashes user passwords (default: ``PasswordHasher()``, argon2-cffi's
        recommended cost).

        A SQLite store is created or upgraded to this release's schema here (an embedded
        store has one user). A PostgreSQL store must already be at this release's revision:
        :class:`~crm.migrate.StoreNeedsUpgrade` otherwise — it is only changed by the
        explicit ``switchboard db upgrade`` (:func:`crm.migrate.upgrade`)."""
        parsed = make_url(url)
        kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() == "postgresql":
            kwargs["pool_pre_ping"] = True
        elif parsed.get_backend_name() == "sqlite":
            db = parsed.database
            if db and db != ":memory:" and not db.startswith("file:"):
                # A fresh install points at var/switchboard.db: create the folder, not the user.
                Path(db).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, **kwargs)
        try:
            if engine.dialect.name == "sqlite":
                event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
                await upgrade_engine(engine)
            else:
                await require_head(engine)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, hasher)

    async def close(self) -> None:
        """Release every connection."""
        await self._engine.dispose()

    # --- call detail records ---------------------------------------------------------------

    async def add_call_record(self, rec: CallRecordData) -> None:
        """Append one call detail record."""
        await self.add_call_records([rec])

    async def add_call_records(self, records: list[CallRecordData]) -> None:
        """Append call detail records in one transaction and one executemany (the server
        batches them; plain Core, no ORM unit of work per row)."""
        if not records:
            return
        rows = [
            {
                **{name: getattr(rec, name) for name in _RECORD_FIELDS},
                "hangup_cause": str(rec.hangup_cause),
                "disposition": rec.disposition.value,
                "hangup_side": rec.hangup_side.value,
            }
            for rec in records
        ]
        async with self._engine.begin() as conn:
            await conn.execute(_CALL_RECORDS.insert(), rows)

    async def list_call_records(self, limit: int = 100) -> list[CallRecordData]:
        """The most recent call records, newest first."""
        stmt = select(CallRecord).order_by(CallRecord.start.desc(), CallRecord.id.desc())
        async with self._sessions() as session:
            rows = (await session.scalars(stmt.limit(limit))).all()
        return [_record_from_row(r) for r in rows]

    async def get_call_record(self, call_id: str) -> CallRecordData | None:
        """The latest call record whose caller leg had SIP Call-ID ``call_id``, if any."""
        stmt = (
            select(CallRecord)
            .where(CallRecord.call_id == call_id)
            .order_by(CallRecord.id.desc())
            .limit(1)
        )
        async with self._sessions() as session:
            row = (await session.scalars(stmt)).first()
        return _record_from_row(row) if row is not None else None

    async def call_record_by_id(self, record_id: str) -> CallRecordData | None:
        """The call record whose ``record_id`` (Switchboard's id of the call) is given."""
        stmt = (
            select(CallRecord)
            .where(CallRecord.record_id == record_id)
            .order_by(CallRecord.id.desc())
            .limit(1)
        )
        async with self._sessions() as session:
            row = (await session.scalars(stmt)).first()
        return _record_from_row(row) if row is not None else None

    # --- registrar bindings ----------------------------------------------------------------

    async def save_binding(self, binding: BindingData) -> None:
        """Insert or refresh the binding of ``binding.contact_uri`` to ``binding.aor``."""
        values = {name: getattr(binding, name) for name in _BINDING_FIELDS}
        dialect = self._engine.dialect.name
        async with self._sessions.begin() as session:
            if dialect in ("sqlite", "postgresql"):
                insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
                stmt = insert(Registration).values(**values)
                update = {k: stmt.excluded[k] for k in values if k not in ("aor", "contact_uri")}
                await session.execute(
                    stmt.on_conflict_do_update(index_elements=["aor", "contact_uri"], set_=update)
                )
                return
            # Other backends: read-modify-write inside the transaction.
            existing = (
                await session.scalars(
                    select(Registration).where(
                        Registration.aor == binding.aor,
                        Registration.contact_uri == binding.contact_uri,
                    )
                )
            ).first()
            if existing is None:
                session.add(Registration(**values))
            else:
                for k, v in values.items():
                    setattr(existing, k, v)

    async def apply_binding_changes(
        self, saves: list[BindingData], deletes: list[tuple[str, str]]
    ) -> None:
        """Upsert ``saves`` and remove ``deletes`` ((aor, contact_uri) pairs) in one
        transaction: the registrar's write-behind flush. One statement, many rows."""
        if not saves and not deletes:
            return
        dialect = self._engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            for b in saves:
                await self.save_binding(b)
            for aor, uri in deletes:
                await self.delete_binding(aor, uri)
            return
        insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
        async with self._sessions.begin() as session:
            for aor, uri in deletes:
                await session.execute(
                    delete(Registration).where(
                        Registration.aor == aor, Registration.contact_uri == uri
                    )
                )
            if saves:
                stmt = insert(_REGISTRATIONS)  # Core: no ORM bulk machinery per row
                update = {
                    k: stmt.excluded[k] for k in _BINDING_FIELDS if k not in ("aor", "contact_uri")
                }
                stmt = stmt.on_conflict_do_update(
                    index_elements=["aor", "contact_uri"], set_=update
                )
                rows = [{name: getattr(b, name) for name in _BINDING_FIELDS} for b in saves]
                await session.execute(stmt, rows)

    async def save_extension_settings(self, rows: list[ExtensionSettingsData]) -> None:
        """Insert or replace the settings of these extensions (one transaction)."""
        if not rows:
            return
        async with self._sessions.begin() as session:
            for row in rows:
                await session.merge(
                    ExtensionSetting(
                        number=row.number,
                        dnd=row.dnd,
                        forward_all=row.forward_all,
                        forward_busy=row.forward_busy,
                        forward_no_answer=row.forward_no_answer,
                    )
                )

    async def load_extension_settings(self) -> list[ExtensionSettingsData]:
        async with self._sessions() as session:
            rows = (await session.scalars(select(ExtensionSetting))).all()
        return [
            ExtensionSettingsData(
                number=r.number,
                dnd=bool(r.dnd),
                forward_all=r.forward_all,
                forward_busy=r.forward_busy,
                forward_no_answer=r.forward_no_answer,
            )
            for r in rows
        ]

    # --- ACD: queue events, agent states, last agents -----------------------------------------

    async def add_acd_log(self, events: list[QueueEventData], states: list[AgentStateData]) -> None:
        """Append queue events and agent state changes (one transaction, in order)."""
        if not events and not states:
            return
        async with self._sessions.begin() as session:
            session.add_all(
                QueueEventRow(
                    time=e.time,
                    call_id=e.call_id,
                    queue=e.queue,
                    agent=e.agent,
                    event=e.event,
                    data="|".join(e.data),
                )
                for e in events
            )
            session.add_all(
                AgentStateRow(
                    time=t.time,
                    agent=t.agent,
                    old_state=t.old_state,
                    new_state=t.new_state,
                    event=t.event,
                    reason=t.reason,
                )
                for t in states
            )

    async def list_queue_events(
        self,
        since: datetime | None = None,
        queue: str | None = None,
        until: datetime | None = None,
    ) -> list[QueueEventData]:
        """Queue events with ``since <= time < until`` in the order they happened."""
        stmt = select(QueueEventRow).order_by(QueueEventRow.time, QueueEventRow.id)
        stmt = stmt.where(*_time_range(QueueEventRow.time, since, until))
        if queue is not None:
            stmt = stmt.where(QueueEventRow.queue == queue)
        async with self._sessions() as session:
            rows = (await session.scalars(stmt)).all()
        return [
            QueueEventData(
                r.time,
                r.call_id,
                r.queue,
                r.agent,
                r.event,
                tuple(r.data.split("|")) if r.data else (),
            )
            for r in rows
        ]

    async def recent_talk_times(
        self, since: datetime, per_queue: int = 50
    ) -> dict[str, list[float]]:
        """Talk seconds of each queue's last ``per_queue`` completed calls since ``since``,
        oldest first: the calltime field of COMPLETEAGENT / COMPLETECALLER events."""
        stmt = (
            select(QueueEventRow.queue, QueueEventRow.data)
            .where(QueueEventRow.event.in_(("COMPLETEAGENT", "COMPLETECALLER")))
            .where(QueueEventRow.time >= _utc(since))
            .order_by(QueueEventRow.time, QueueEventRow.id)
        )
        out: dict[str, list[float]] = {}
        async with self._sessions() as session:
            for queue, data in (await session.execute(stmt)).all():
                fields = data.split("|")
                try:
                    talk = float(fields[1])
                except (IndexError, ValueError):
                    continue  # not written by us: skip rather than guess
                out.setdefault(queue, []).append(talk)
        return {q: talks[-per_queue:] for q, talks in out.items()}

    async def list_agent_states(self, agent: str | None = None) -> list[AgentStateData]:
        stmt = select(AgentStateRow).order_by(AgentStateRow.time, AgentStateRow.id)
        if agent is not None:
            stmt = stmt.where(AgentStateRow.agent == agent)
        async with self._sessions() as session:
            rows = (await session.scalars(stmt)).all()
        return [
            AgentStateData(r.time, r.agent, r.old_state, r.new_state, r.event, r.reason)
            for r in rows
        ]

    async def agent_states_between(self, since: datetime, until: datetime) -> list[AgentStateData]:
        """Agent state changes with ``since <= time < until`` in order, preceded by each
        agent's last change before ``since`` (the state they were in at ``since``)."""
        before = (
            select(func.max(AgentStateRow.id))
            .where(AgentStateRow.time < _utc(since))
            .group_by(AgentStateRow.agent)
        )
        stmt = (
            select(AgentStateRow)
            .where(
                or_(
                    AgentStateRow.id.in_(before),
                    and_(*_time_range(AgentStateRow.time, since, until)),
                )
            )
            .order_by(AgentStateRow.time, AgentStateRow.id)
        )
        async with self._sessions() as session:
            rows = (await session.scalars(stmt)).all()
        return [
            AgentStateData(r.time, r.agent, r.old_state, r.new_state, r.event, r.reason)
            for r in rows
        ]

    async def last_agent_states(self) -> dict[str, tuple[AgentStateData, datetime | None]]:
        """Each agent's latest state row, with the time of their latest login (the last
        row leaving LOGGED_OUT; None if there is none): what a restart restores."""
        last_ids = select(func.max(AgentStateRow.id)).group_by(AgentStateRow.agent)
        login_times = (
            select(AgentStateRow.agent, func.max(AgentStateRow.time))
            .where(AgentStateRow.old_state == "LOGGED_OUT")
            .where(AgentStateRow.new_state != "LOGGED_OUT")
            .group_by(AgentStateRow.agent)
        )
        async with self._sessions() as session:
            rows = (
                await session.scalars(select(AgentStateRow).where(AgentStateRow.id.in_(last_ids)))
            ).all()
            logins = {
                agent: at if at.tzinfo else at.replace(tzinfo=UTC)
                for agent, at in (await session.execute(login_times)).all()
            }
        return {
            r.agent: (
                AgentStateData(r.time, r.agent, r.old_state, r.new_state, r.event, r.reason),
                logins.get(r.agent),
            )
            for r in rows
        }

    async def save_last_agents(self, rows: dict[str, tuple[str, datetime]]) -> None:
        """Insert or replace the last agent of these callers."""
        if not rows:
            return
        async with self._sessions.begin() as session:
            for caller, (agent, at) in rows.items():
                await session.merge(LastAgent(caller=caller, agent=agent, at=_utc(at)))

    async def load_last_agents(self, since: datetime) -> dict[str, tuple[str, datetime]]:
        """Callers handled since ``since`` and by whom."""
        stmt = select(LastAgent).where(LastAgent.at >= _utc(since))
        async with self._sessions() as session:
            rows = (await session.scalars(stmt)).all()
        return {r.caller: (r.agent, r.at) for r in rows}

    # --- customers (docs/crm.md) -------------------------------------------------------------

    async def add_customer(self, customer: CustomerData) -> int:
        """Store a customer even if its number is another's; return its id (the IVR's and
        tests' short form of :meth:`create_customer`)."""
        created = await self.create_customer(customer, allow_duplicate=True)
        assert created.id is not None
        return created.id

    async def create_customer(
        self, customer: CustomerData, *, allow_duplicate: bool = False, now: datetime | None = None
    ) -> CustomerData:
        """Store a new customer with its numbers; return it as stored. A number that belongs
        to another customer raises :class:`DuplicateNumberError` unless ``allow_duplicate``."""
        ids = await self.add_customers([customer], allow_duplicate=allow_duplicate, now=now)
        got = await self.get_customer(ids[0])
        assert got is not None
        return got

    async def add_customers(
        self,
        customers: Sequence[CustomerData],
        *,
        allow_duplicate: bool = True,
        now: datetime | None = None,
        chunk: int = 5000,
    ) -> list[int]:
        """Insert many customers in one transaction, ``chunk`` rows per executemany (the
        import's path); return their ids in order. With ``allow_duplicate`` False a number
        already stored raises :class:`DuplicateNumberError` and nothing is stored."""
        if not customers:
            return []
        stamp = _utc(now) if now is not None else datetime.now(UTC)
        if not allow_duplicate:
            owners = await self.customers_by_numbers(
                [n.number for c in customers for n in c.all_numbers]
            )
            for c in customers:
                for n in c.all_numbers:
                    hit = owners.get(n.digits)
                    if hit is not None:
                        raise DuplicateNumberError(n.number, hit[0], hit[1])
        ids: list[int] = []
        postgres = self._engine.dialect.name == "postgresql"
        async with self._engine.begin() as conn:
            for start in range(0, len(customers), chunk):
                part = customers[start : start + chunk]
                rows = [_customer_columns(c, stamp) for c in part]
                # One executemany per chunk, no RETURNING (SQLAlchemy would insert row by
                # row to return ids in order): PostgreSQL hands out the ids first from the
                # sequence; SQLite gives rowids max+1, max+2... and the transaction holds
                # the write lock from the first insert on, so they are contiguous.
                if postgres:
                    reserved = await conn.execute(
                        select(func.nextval("customers_id_seq")).select_from(
                            func.generate_series(1, len(rows))
                        )
                    )
                    new_ids = [int(r[0]) for r in reserved.all()]
                    for row, cid in zip(rows, new_ids, strict=True):
                        row["id"] = cid
                    await conn.execute(_CUSTOMERS.insert(), rows)
                else:
                    await conn.execute(_CUSTOMERS.insert(), rows)
                    last = int(await conn.scalar(select(func.max(_CUSTOMERS.c.id))) or 0)
                    new_ids = list(range(last - len(rows) + 1, last + 1))
                numbers = [
                    _number_columns(cid, n)
                    for cid, c in zip(new_ids, part, strict=True)
                    for n in c.all_numbers
                ]
                await conn.execute(_CUSTOMER_NUMBERS.insert(), numbers)
                ids.extend(new_ids)
        return ids

    async def get_customer(self, customer_id: int) -> CustomerData | None:
        """The customer with this id, with its numbers, or None."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(_CUSTOMERS).where(_CUSTOMERS.c.id == customer_id))
            ).first()
            if row is None:
                return None
            found = await _customers_from_rows(conn, [row])
        return found[0]

    async def update_customer(
        self, customer: CustomerData, *, allow_duplicate: bool = False, now: datetime | None = None
    ) -> CustomerData | None:
        """Replace the stored customer ``customer.id`` (its numbers too) with ``customer``;
        None when there is none. ``created_at`` is kept; ``updated_at`` becomes ``now``."""
        if customer.id is None:
            raise ValueError("update_customer needs the customer's id")
        if not allow_duplicate:
            owners = await self.customers_by_numbers([n.number for n in customer.all_numbers])
            for n in customer.all_numbers:
                hit = owners.get(n.digits)
                if hit is not None and hit[0] != customer.id:
                    raise DuplicateNumberError(n.number, hit[0], hit[1])
        stamp = _utc(now) if now is not None else datetime.now(UTC)
        values = _customer_columns(customer, stamp)
        del values["created_at"]
        values["updated_at"] = stamp
        async with self._engine.begin() as conn:
            done = await conn.execute(
                update(_CUSTOMERS).where(_CUSTOMERS.c.id == customer.id).values(**values)
            )
            if not done.rowcount:
                return None
            await conn.execute(
                delete(_CUSTOMER_NUMBERS).where(_CUSTOMER_NUMBERS.c.customer_id == customer.id)
            )
            await conn.execute(
                _CUSTOMER_NUMBERS.insert(),
                [_number_columns(customer.id, n) for n in customer.all_numbers],
            )
        return await self.get_customer(customer.id)

    async def delete_customer(self, customer_id: int) -> bool:
        """Delete a customer with its numbers, follow-ups and appointments."""
        async with self._engine.begin() as conn:
            for table in (_CUSTOMER_NUMBERS, _FOLLOWUPS, _APPOINTMENTS):
                await conn.execute(delete(table).where(table.c.customer_id == customer_id))
            done = await conn.execute(delete(_CUSTOMERS).where(_CUSTOMERS.c.id == customer_id))
        return bool(done.rowcount)

    async def find_customer_by_number(self, number: str) -> CustomerData | None:
        """The customer one of whose numbers matches ``number`` however either was typed
        (crm/numbers.py): an exact match first, then the longest stored form, then the
        oldest customer. None when there is none. Two indexed queries (the ACD and the
        IVR ask on every queue call)."""
        digits = normalise(number)
        if not digits:
            return None
        n = _CUSTOMER_NUMBERS
        # The candidates with their customer's row: one indexed query, then the numbers.
        stmt = (
            select(_CUSTOMERS, n.c.digits.label("matched"))
            .join(n, _CUSTOMERS.c.id == n.c.customer_id)
            .where(n.c.tail == tail(digits))
            .limit(100)
        )
        async with self._engine.connect() as conn:
            hits = [r for r in (await conn.execute(stmt)).all() if numbers_match(r.matched, digits)]
            if not hits:
                return None
            best = min(
                hits, key=lambda r: (r.matched != digits, -len(r.matched), r.created_at, r.id)
            )
            found = await _customers_from_rows(conn, [best])
        return found[0]

    async def customers_by_numbers(self, numbers: Sequence[str]) -> dict[str, tuple[int, str]]:
        """For each of ``numbers`` (normalised) that matches a stored customer's number:
        ``digits → (customer id, name)`` (the oldest customer when several match)."""
        wanted = {d for d in (normalise(x) for x in numbers) if d}
        by_tail: dict[str, list[str]] = {}
        for d in wanted:
            by_tail.setdefault(tail(d), []).append(d)
        out: dict[str, tuple[int, str]] = {}
        n = _CUSTOMER_NUMBERS
        tails = sorted(by_tail)
        async with self._engine.connect() as conn:
            for start in range(0, len(tails), 500):
                stmt = (
                    select(n.c.tail, n.c.digits, n.c.customer_id, _CUSTOMERS.c.name)
                    .join(_CUSTOMERS, _CUSTOMERS.c.id == n.c.customer_id)
                    .where(n.c.tail.in_(tails[start : start + 500]))
                    .order_by(n.c.customer_id)
                )
                for t, stored, cid, name in (await conn.execute(stmt)).all():
                    for d in by_tail[t]:
                        if d not in out and numbers_match(stored, d):
                            out[d] = (int(cid), str(name))
        return out

    async def search_customers(
        self, query: CustomerQuery, *, offset: int = 0, limit: int = 50
    ) -> tuple[list[CustomerData], int]:
        """Customers matching ``query`` (:class:`CustomerQuery`), by name then id: one page
        and the number of all matches."""
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must not be negative")
        c = _CUSTOMERS
        conds = _customer_conditions(query)
        stmt = select(c).where(*conds).order_by(func.lower(c.c.name), c.c.id)
        count = select(func.count()).select_from(c).where(*conds)
        async with self._engine.connect() as conn:
            total = int((await conn.scalar(count)) or 0)
            rows = (await conn.execute(stmt.offset(offset).limit(limit))).all() if limit else []
            found = await _customers_from_rows(conn, rows)
        return found, total

    async def count_owned(self, owner: str) -> int:
        """How many customers ``owner`` owns (the pool's claim limit counts these)."""
        async with self._engine.connect() as conn:
            got = await conn.scalar(
                select(func.count()).select_from(_CUSTOMERS).where(_CUSTOMERS.c.owner == owner)
            )
        return int(got or 0)

    async def add_followup(self, followup: FollowupData) -> FollowupData:
        """Record a follow-up; the customer's ``last_followup_at`` becomes its time (when
        later). CrmError 404 for an unknown customer."""
        values = _columns(followup)
        c = _CUSTOMERS
        async with self._engine.begin() as conn:
            known = await conn.scalar(select(c.c.id).where(c.c.id == followup.customer_id))
            if known is None:
                raise CrmError(404, f"no customer {followup.customer_id}")
            await conn.execute(
                update(c)
                .where(
                    c.c.id == followup.customer_id,
                    or_(c.c.last_followup_at.is_(None), c.c.last_followup_at < followup.time),
                )
                .values(last_followup_at=followup.time)
            )
            result = await conn.execute(_FOLLOWUPS.insert().returning(_FOLLOWUPS.c.id), values)
            new_id = int(result.scalar_one())
        return dataclasses.replace(followup, id=new_id)

    async def list_followups(self, customer_id: int) -> list[FollowupData]:
        """A customer's follow-ups, newest first."""
        stmt = (
            select(_FOLLOWUPS)
            .where(_FOLLOWUPS.c.customer_id == customer_id)
            .order_by(_FOLLOWUPS.c.time.desc(), _FOLLOWUPS.c.id.desc())
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_followup_from_row(r) for r in rows]

    async def add_appointment(self, appointment: AppointmentData) -> AppointmentData:
        """Store an appointment; CrmError 404 for an unknown customer."""
        async with self._engine.begin() as conn:
            known = await conn.scalar(
                select(_CUSTOMERS.c.id).where(_CUSTOMERS.c.id == appointment.customer_id)
            )
            if known is None:
                raise CrmError(404, f"no customer {appointment.customer_id}")
            result = await conn.execute(
                _APPOINTMENTS.insert().returning(_APPOINTMENTS.c.id), _columns(appointment)
            )
            new_id = int(result.scalar_one())
        return dataclasses.replace(appointment, id=new_id)

    async def list_appointments(self, customer_id: int) -> list[AppointmentData]:
        """A customer's appointments, soonest first."""
        stmt = (
            select(_APPOINTMENTS)
            .where(_APPOINTMENTS.c.customer_id == customer_id)
            .order_by(_APPOINTMENTS.c.at, _APPOINTMENTS.c.id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_appointment_from_row(r) for r in rows]

    async def due_reminders(
        self, now: datetime, *, user: str | None = None
    ) -> list[AppointmentData]:
        """Appointments whose reminder is due at ``now`` and not yet marked reminded (of
        ``user``), by reminder time."""
        a = _APPOINTMENTS
        conds = [a.c.remind_at <= _utc(now), a.c.reminded == false()]
        if user is not None:
            conds.append(a.c.user == user)
        stmt = select(a).where(*conds).order_by(a.c.remind_at, a.c.id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_appointment_from_row(r) for r in rows]

    async def mark_reminded(self, appointment_ids: Sequence[int]) -> int:
        """Mark reminders as sent; returns how many were changed."""
        if not appointment_ids:
            return 0
        async with self._engine.begin() as conn:
            done = await conn.execute(
                update(_APPOINTMENTS)
                .where(_APPOINTMENTS.c.id.in_(list(appointment_ids)))
                .values(reminded=True)
            )
        return int(done.rowcount)

    async def claim_customer(
        self, customer_id: int, user: str, *, limit: int, now: datetime
    ) -> CustomerData:
        """Take a customer from the public pool for ``user``. CrmError 404 unknown, 409
        owned by someone (or already by ``user``), 409 when ``user`` owns ``limit``
        customers already."""
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(select(_CUSTOMERS.c.owner).where(_CUSTOMERS.c.id == customer_id))
            ).first()
            if row is None:
                raise CrmError(404, f"no customer {customer_id}")
            if row[0] is not None:
                raise CrmError(409, f"customer {customer_id} is owned by {row[0]}, not in the pool")
            owned = await conn.scalar(
                select(func.count()).select_from(_CUSTOMERS).where(_CUSTOMERS.c.owner == user)
            )
            if int(owned or 0) >= limit:
                raise CrmError(409, f"{user} owns {owned} customers: the claim limit is {limit}")
            done = await conn.execute(
                update(_CUSTOMERS)
                .where(_CUSTOMERS.c.id == customer_id, _CUSTOMERS.c.owner.is_(None))
                .values(owner=user, owned_since=_utc(now), updated_at=_utc(now))
            )
            if not done.rowcount:  # claimed by someone else meanwhile
                raise CrmError(409, f"customer {customer_id} was just claimed by someone else")
        got = await self.get_customer(customer_id)
        assert got is not None
        return got

    async def release_customer(self, customer_id: int, now: datetime) -> CustomerData | None:
        """Put a customer back into the public pool (no owner); None when unknown."""
        async with self._engine.begin() as conn:
            done = await conn.execute(
                update(_CUSTOMERS)
                .where(_CUSTOMERS.c.id == customer_id)
                .values(owner=None, owned_since=None, updated_at=_utc(now))
            )
        return await self.get_customer(customer_id) if done.rowcount else None

    async def return_stale_to_pool(self, now: datetime, days: float) -> list[int]:
        """The pool's daily job: every customer owned for more than ``days`` days with no
        follow-up in the last ``days`` days goes back to the pool. Returns their ids."""
        cutoff = _utc(now) - timedelta(days=days)
        c = _CUSTOMERS
        stale = and_(
            c.c.owner.is_not(None),
            func.coalesce(c.c.owned_since, c.c.created_at) < cutoff,
            or_(c.c.last_followup_at.is_(None), c.c.last_followup_at < cutoff),
        )
        async with self._engine.begin() as conn:
            ids = [int(r[0]) for r in (await conn.execute(select(c.c.id).where(stale))).all()]
            if ids:
                await conn.execute(
                    update(c)
                    .where(c.c.id.in_(ids))
                    .values(owner=None, owned_since=None, updated_at=_utc(now))
                )
        if ids:
            log.info("customers_returned_to_pool", count=len(ids))
        return ids

    async def add_blacklist(self, entry: BlacklistEntry) -> BlacklistEntry:
        """Add a number to the outbound blacklist; CrmError 409 when it (however typed) is
        there already."""
        existing = await self.blacklist_entry(entry.number)
        if existing is not None:
            raise CrmError(
                409, f"{entry.number} is on the blacklist already (as {existing.number})"
            )
        digits = entry.digits
        values = {**_columns(entry), "digits": digits, "tail": tail(digits)}
        try:
            async with self._engine.begin() as conn:
                result = await conn.execute(_BLACKLIST.insert().returning(_BLACKLIST.c.id), values)
                new_id = int(result.scalar_one())
        except IntegrityError:
            raise CrmError(409, f"{entry.number} is on the blacklist already") from None
        return dataclasses.replace(entry, id=new_id)

    async def remove_blacklist(self, number: str) -> bool:
        """Take the entry ``number`` matches (however typed) off the blacklist; False when
        there is none."""
        entry = await self.blacklist_entry(number)
        if entry is None:
            return False
        async with self._engine.begin() as conn:
            done = await conn.execute(delete(_BLACKLIST).where(_BLACKLIST.c.id == entry.id))
        return bool(done.rowcount)

    async def list_blacklist(
        self, *, offset: int = 0, limit: int = 50
    ) -> tuple[list[BlacklistEntry], int]:
        """The blacklist, newest first: one page and the total."""
        b = _BLACKLIST
        async with self._engine.connect() as conn:
            total = int((await conn.scalar(select(func.count()).select_from(b))) or 0)
            stmt = select(b).order_by(b.c.at.desc(), b.c.id.desc()).offset(offset).limit(limit)
            rows = (await conn.execute(stmt)).all()
        return [_blacklist_from_row(r) for r in rows], total

    async def blacklist_entry(self, number: str) -> BlacklistEntry | None:
        """The blacklist entry ``number`` matches (crm/numbers.py), or None."""
        digits = normalise(number)
        if not digits:
            return None
        stmt = select(_BLACKLIST).where(_BLACKLIST.c.tail == tail(digits))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        hits = [r for r in rows if numbers_match(r.digits, digits)]
        if not hits:
            return None
        return _blacklist_from_row(min(hits, key=lambda r: (r.digits != digits, r.id)))

    async def is_blacklisted(self, number: str) -> bool:
        """Whether outbound calls must not dial ``number``."""
        return await self.blacklist_entry(number) is not None

    # --- IVR results: voicemail, surveys, callback requests --------------------------------

    async def add_voicemail(self, vm: VoicemailData) -> int:
        """Store a voicemail message; return its id."""
        async with self._sessions.begin() as session:
            row = Voicemail(**_columns(vm))
            session.add(row)
            await session.flush()
            return row.id

    async def list_voicemails(self, mailbox: str | None = None) -> list[VoicemailData]:
        """Voicemail messages, oldest first, optionally of one mailbox."""
        stmt = select(Voicemail).order_by(Voicemail.created_at, Voicemail.id)
        if mailbox is not None:
            stmt = stmt.where(Voicemail.mailbox == mailbox)
        async with self._sessions() as session:
            return [_voicemail_from_row(r) for r in (await session.scalars(stmt)).all()]

    async def get_voicemail(self, vm_id: int) -> VoicemailData | None:
        """One voicemail message by id."""
        async with self._sessions() as session:
            row = await session.get(Voicemail, vm_id)
            return _voicemail_from_row(row) if row is not None else None

    async def mailbox_messages(self, mailbox: str) -> list[VoicemailData]:
        """A mailbox as its owner hears it: new (unheard) messages oldest first, then the
        heard (saved) ones oldest first."""
        stmt = (
            select(Voicemail)
            .where(Voicemail.mailbox == mailbox)
            .order_by(Voicemail.heard, Voicemail.created_at, Voicemail.id)
        )
        async with self._sessions() as session:
            return [_voicemail_from_row(r) for r in (await session.scalars(stmt)).all()]

    async def voicemail_counts(self, mailbox: str | None = None) -> dict[str, tuple[int, int]]:
        """(new, saved) message counts per mailbox that has messages (or of ``mailbox``,
        (0, 0) when it has none)."""
        stmt = select(Voicemail.mailbox, Voicemail.heard, func.count()).group_by(
            Voicemail.mailbox, Voicemail.heard
        )
        if mailbox is not None:
            stmt = stmt.where(Voicemail.mailbox == mailbox)
        counts: dict[str, tuple[int, int]] = {} if mailbox is None else {mailbox: (0, 0)}
        async with self._sessions() as session:
            for box, heard, n in (await session.execute(stmt)).all():
                new, saved = counts.get(box, (0, 0))
                counts[box] = (new, saved + n) if heard else (new + n, saved)
        return counts

    async def mark_voicemail_heard(self, vm_id: int, heard: bool = True) -> bool:
        """Set a message's ``heard`` flag; False when there is no such message."""
        async with self._sessions.begin() as session:
            row = await session.get(Voicemail, vm_id)
            if row is None:
                return False
            row.heard = heard
            return True

    async def delete_voicemail(self, vm_id: int) -> VoicemailData | None:
        """Remove a message's row and return it (its file is the caller's to remove);
        None when there is no such message."""
        async with self._sessions.begin() as session:
            row = await session.get(Voicemail, vm_id)
            if row is None:
                return None
            gone = _voicemail_from_row(row)
            await session.delete(row)
            return gone

    async def add_survey_result(self, res: SurveyResultData) -> int:
        """Store one survey outcome; return its id."""
        async with self._sessions.begin() as session:
            row = SurveyResult(**_columns(res))
            session.add(row)
            await session.flush()
            return row.id

    async def list_survey_results(self, agent: str | None = None) -> list[SurveyResultData]:
        """Survey outcomes, oldest first, optionally for one agent/extension."""
        stmt = select(SurveyResult).order_by(SurveyResult.created_at, SurveyResult.id)
        if agent is not None:
            stmt = stmt.where(SurveyResult.agent == agent)
        async with self._sessions() as session:
            rows = (await session.scalars(stmt)).all()
        return [_data_from_row(SurveyResultData, r) for r in rows]

    async def add_wrap_up(self, wrap: WrapUpData) -> int:
        """Store one wrap-up (code and notes); return its id."""
        async with self._sessions.begin() as session:
            row = WrapUp(**_columns(wrap))
            session.add(row)
            await session.flush()
            return row.id

    async def list_wrap_ups(
        self, agent: str | None = None, record_id: str | None = None
    ) -> list[WrapUpData]:
        """Wrap-ups, oldest first, optionally of one agent and/or one call."""
        stmt = select(WrapUp).order_by(WrapUp.at, WrapUp.id)
        if agent is not None:
            stmt = stmt.where(WrapUp.agent == agent)
        if record_id is not None:
            stmt = stmt.where(WrapUp.record_id == record_id)
        async with self._sessions() as session:
            rows = (await session.scalars(stmt)).all()
        return [_data_from_row(WrapUpData, r) for r in rows]

    async def survey_results_between(
        self, since: datetime, until: datetime
    ) -> list[SurveyResultData]:
        """Survey outcomes with ``since <= created_at < until``, oldest first."""
        stmt = (
            select(SurveyResult)
            .where(*_time_range(SurveyResult.created_at, since, until))
            .order_by(SurveyResult.created_at, SurveyResult.id)
        )
        async with self._sessions() as session:
            rows = (await session.scalars(stmt)).all()
        return [_data_from_row(SurveyResultData, r) for r in rows]

    async def call_records_overlapping(
        self, since: datetime, until: datetime
    ) -> list[CallRecordData]:
        """Call records that were in progress at some time in ``[since, until)``
        (``start < until`` and ``end > since``, or a zero-length call at ``since``),
        oldest first: what reports split across intervals."""
        stmt = (
            select(CallRecord)
            .where(CallRecord.start < _utc(until), CallRecord.end >= _utc(since))
            .order_by(CallRecord.start, CallRecord.id)
        )
        async with self._sessions() as session:
            rows = (await session.scalars(stmt)).all()
        return [_record_from_row(r) for r in rows]

    async def add_callback_request(self, req: CallbackRequestData) -> tuple[int, bool]:
        """Create a pending callback request; return ``(id, created)``. A number that already
        has a pending request gets that request's id and ``created=False`` — the caller keeps
        the place they had, and nobody is called back twice."""
        try:
            async with self._sessions.begin() as session:
                row = CallbackRequest(
                    **_columns(req, exclude=("id", "status", "attempts", "outcome")),
                    status="pending",
                    attempts=0,
                )
                session.add(row)
                await session.flush()
                return row.id, True
        except IntegrityError:
            stmt = select(CallbackRequest.id).where(
                CallbackRequest.number == req.number, CallbackRequest.status == "pending"
            )
            async with self._sessions() as session:
                existing = (await session.scalars(stmt)).first()
            if existing is None:  # finished between the two statements: try once more
                return await self.add_callback_request(req)
            return existing, False

    async def list_callback_requests(self, status: str | None = None) -> list[CallbackRequestData]:
        """Callback requests in the order they were made (their place in line)."""
        stmt = select(CallbackRequest).order_by(CallbackRequest.created_at, CallbackRequest.id)
        if status is not None:
            stmt = stmt.where(CallbackRequest.status == status)
        async with self._sessions() as session:
            return [_callback_from_row(r) for r in (await session.scalars(stmt)).all()]

    async def finish_callback_request(
        self, request_id: int, status: str, outcome: str, attempts: int
    ) -> None:
        """Close a callback request (``done``, ``failed`` or ``cancelled``)."""
        if status not in ("done", "failed", "cancelled"):
            raise ValueError(f"callback request cannot end as {status!r}")
        async with self._sessions.begin() as session:
            row = await session.get(CallbackRequest, request_id)
            if row is None:
                raise KeyError(request_id)
            row.status = status
            row.outcome = outcome
            row.attempts = attempts
            row.updated_at = datetime.now(UTC)

    async def delete_binding(self, aor: str, contact_uri: str) -> None:
        """Remove one binding (REGISTER with Expires: 0 for that contact)."""
        async with self._sessions.begin() as session:
            await session.execute(
                delete(Registration).where(
                    Registration.aor == aor, Registration.contact_uri == contact_uri
                )
            )

    async def delete_bindings(self, aor: str) -> None:
        """Remove every binding of ``aor`` (REGISTER with ``Contact: *``, RFC 3261 §10.2.2)."""
        async with self._sessions.begin() as session:
            await session.execute(delete(Registration).where(Registration.aor == aor))

    async def load_bindings(
        self, aor: str | None = None, now: datetime | None = None
    ) -> list[BindingData]:
        """Bindings not yet expired at ``now`` (default: the current time), optionally of one
        AOR, ordered by AOR then contact."""
        moment = _utc(now) if now is not None else datetime.now(UTC)
        stmt = select(Registration).where(Registration.expires_at > moment)
        if aor is not None:
            stmt = stmt.where(Registration.aor == aor)
        stmt = stmt.order_by(Registration.aor, Registration.contact_uri)
        async with self._sessions() as session:
            rows = (await session.scalars(stmt)).all()
        return [_binding_from_row(r) for r in rows]

    async def purge_expired_bindings(self, now: datetime | None = None) -> int:
        """Delete bindings expired at ``now``; return how many were removed."""
        moment = _utc(now) if now is not None else datetime.now(UTC)
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(Registration).where(Registration.expires_at <= moment)
            )
        return int(getattr(result, "rowcount", 0) or 0)

    # --- recordings (crm/recordings.py) ----------------------------------------------------

    async def add_recording(self, data: RecordingData) -> RecordingData:
        """Store a new recording row; return it with its id. Committed before returning:
        the recorder adds the row before it keeps the first frame, so a crash leaves a row
        to repair. ValueError when ``recording_id`` is taken."""
        try:
            async with self._sessions.begin() as session:
                row = RecordingRow(**_recording_columns(data))
                session.add(row)
                await session.flush()
                return _recording_from_row(row)
        except IntegrityError:
            raise ValueError(f"recording {data.recording_id} exists") from None

    async def finish_recording(
        self,
        recording_id: str,
        *,
        state: RecordingState | str,
        ended: datetime,
        duration: float,
        size: int,
        sha256: str | None,
        pauses: Sequence[tuple[float, float]],
        error: str | None = None,
        agent: str | None = None,
        queue: str | None = None,
        extension: str | None = None,
        customer_id: int | None = None,
        callee: str | None = None,
        direction: str | None = None,
        rate: int | None = None,
    ) -> RecordingData | None:
        """Record how a recording ended (its file complete, cut short or failed); None when
        there is no such recording. Of the optional values only those given (not None)
        change the row: what the recorder learnt during the call (the agent who took it,
        the queue, the matched customer)."""
        values: dict[str, Any] = {
            "state": RecordingState(state).value,
            "ended": _utc(ended),
            "duration": float(duration),
            "size": int(size),
            "sha256": sha256,
            "pauses": _pauses_json(pauses),
        }
        optional = {
            "error": error,
            "agent": agent,
            "queue": queue,
            "extension": extension,
            "customer_id": customer_id,
            "callee": callee,
            "direction": direction,
            "rate": rate,
        }
        values.update({k: v for k, v in optional.items() if v is not None})
        async with self._sessions.begin() as session:
            row = (
                await session.scalars(
                    select(RecordingRow).where(RecordingRow.recording_id == recording_id)
                )
            ).first()
            if row is None:
                return None
            for key, value in values.items():
                setattr(row, key, value)
            await session.flush()
            return _recording_from_row(row)

    async def get_recording(self, recording_id: str) -> RecordingData | None:
        """One recording by its ``recording_id``."""
        stmt = select(RecordingRow).where(RecordingRow.recording_id == recording_id)
        async with self._sessions() as session:
            row = (await session.scalars(stmt)).first()
        return _recording_from_row(row) if row is not None else None

    async def recordings_in_state(self, state: RecordingState | str) -> list[RecordingData]:
        """Every recording in ``state``, oldest first (at start: the rows a crash left in
        ``recording``)."""
        stmt = (
            select(RecordingRow)
            .where(RecordingRow.state == RecordingState(state).value)
            .order_by(RecordingRow.started, RecordingRow.id)
        )
        async with self._sessions() as session:
            rows = (await session.scalars(stmt)).all()
        return [_recording_from_row(r) for r in rows]

    async def search_recordings(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        agent: str | None = None,
        extension: str | None = None,
        number: str | None = None,
        queue: str | None = None,
        customer_id: int | None = None,
        disposition: str | None = None,
        state: RecordingState | str | None = None,
        own_agent: str | None = None,
        extensions: Sequence[str] | None = None,
        queues: Sequence[str] | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[RecordingData], int]:
        """Recordings with ``since <= started < until``, newest first: one page and the
        number of all matching recordings.

        ``number``: a substring of caller, callee or dialled (``%`` and ``_`` match
        themselves). ``agent``, ``extension``, ``queue``, ``customer_id``, ``state``: equal.
        ``disposition`` (a :class:`Disposition` value; ValueError otherwise): the recorded
        call's record (``call_records.record_id`` = ``call_id``) has it, so a call still in
        progress has none.

        Scope: ``own_agent`` / ``extensions`` restrict to an agent user's own recordings
        (the recording's agent is ``own_agent``, OR its extension is one of ``extensions``
        and no other agent took the call); when either is given and nothing matches them,
        nothing is found. ``queues`` (when not None) restricts to recordings of those
        queues (a supervisor's)."""
        r = RecordingRow
        conds = _time_range(r.started, since, until)
        if number:
            conds.append(_contains_any(number, r.caller, r.callee, r.dialled))
        if agent is not None:
            conds.append(r.agent == agent)
        if extension is not None:
            conds.append(r.extension == extension)
        if queue is not None:
            conds.append(r.queue == queue)
        if customer_id is not None:
            conds.append(r.customer_id == customer_id)
        if state is not None:
            conds.append(r.state == RecordingState(state).value)
        if disposition is not None:
            conds.append(
                select(CallRecord.id)
                .where(
                    CallRecord.record_id == r.call_id,
                    CallRecord.disposition == Disposition(disposition).value,
                )
                .exists()
            )
        if extensions is not None or own_agent is not None:
            own: list[ColumnElement[bool]] = []
            if extensions:
                # a shared desk (hot-desking) shows no colleague's queue calls
                other: ColumnElement[bool] = r.agent.is_(None)
                if own_agent is not None:
                    other = or_(other, r.agent == own_agent)
                own.append(and_(r.extension.in_(extensions), other))
            if own_agent is not None:
                own.append(r.agent == own_agent)
            conds.append(or_(*own) if own else false())
        if queues is not None:
            conds.append(r.queue.in_(queues) if queues else false())
        order = (r.started.desc(), r.id.desc())
        rows, total = await self._page(RecordingRow, conds, order, offset, limit)
        return [_recording_from_row(row) for row in rows], total

    async def recordings_older_than(self, before: datetime, limit: int) -> list[RecordingData]:
        """At most ``limit`` recordings started before ``before``, oldest first, for the
        retention job. Rows still in state ``recording`` are left out: their file may be
        being written (a crashed one is repaired at the next start, then ages out)."""
        stmt = (
            select(RecordingRow)
            .where(
                RecordingRow.started < _utc(before),
                RecordingRow.state != RecordingState.RECORDING.value,
            )
            .order_by(RecordingRow.started, RecordingRow.id)
            .limit(limit)
        )
        async with self._sessions() as session:
            rows = (await session.scalars(stmt)).all()
        return [_recording_from_row(r) for r in rows]

    async def delete_recording(self, recording_id: str) -> bool:
        """Remove a recording's row (its file is the caller's to remove); False when there
        is no such recording."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(RecordingRow).where(RecordingRow.recording_id == recording_id)
            )
        return int(getattr(result, "rowcount", 0) or 0) > 0

    # --- users, API tokens, sessions (docs/api.md "Who may call it") -----------------------

    async def _hash_password(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def _verify_password(self, password_hash: str, password: str) -> bool:
        try:
            return await asyncio.to_thread(self._hasher.verify, password_hash, password)
        except (VerificationError, InvalidHashError):
            return False  # VerifyMismatchError is a VerificationError

    async def _dummy_password_hash(self) -> str:
        # A hash with this store's parameters to verify against when the user does not
        # exist, so a wrong name costs as long as a wrong password.
        if self._dummy_hash is None:
            self._dummy_hash = await self._hash_password(secrets.token_urlsafe(16))
        return self._dummy_hash

    async def add_user(
        self, name: str, role: str, password: str, agent: str | None = None
    ) -> UserData:
        """Create a user. ValueError: bad name (1-64 of ``A-Z a-z 0-9 . _ @ -``), unknown
        role, password shorter than 8; :class:`UserExistsError` when the name is taken."""
        check_user_name(name)
        role_rank(role)
        check_password_rules(password)
        password_hash = await self._hash_password(password)
        try:
            async with self._sessions.begin() as session:
                row = UserRow(
                    name=name,
                    role=role,
                    agent=agent,
                    password_hash=password_hash,
                    created_at=datetime.now(UTC),
                    disabled=False,
                )
                session.add(row)
                await session.flush()
                return _user_from_row(row)
        except IntegrityError:
            raise UserExistsError(f"user {name!r} already exists") from None

    async def get_user(self, name: str) -> UserData | None:
        async with self._sessions() as session:
            row = (await session.scalars(select(UserRow).where(UserRow.name == name))).first()
        return _user_from_row(row) if row is not None else None

    async def list_users(self) -> list[UserData]:
        """Every user, by name."""
        async with self._sessions() as session:
            rows = (await session.scalars(select(UserRow).order_by(UserRow.name))).all()
        return [_user_from_row(r) for r in rows]

    async def check_password(self, name: str, password: str) -> UserData | None:
        """The user if ``password`` is theirs and they are enabled, else None. Takes about
        as long for an unknown name (a dummy hash is verified). A hash made with older
        parameters is replaced by one with the current parameters."""
        async with self._sessions() as session:
            row = (await session.scalars(select(UserRow).where(UserRow.name == name))).first()
        if row is None:
            await self._verify_password(await self._dummy_password_hash(), password)
            return None
        if not await self._verify_password(row.password_hash, password):
            return None
        if row.disabled:
            return None
        if self._hasher.check_needs_rehash(row.password_hash):
            new_hash = await self._hash_password(password)
            async with self._sessions.begin() as session:
                await session.execute(
                    update(UserRow)
                    .where(UserRow.id == row.id, UserRow.password_hash == row.password_hash)
                    .values(password_hash=new_hash)
                )
            log.info("user_password_rehashed", user=name)
        return _user_from_row(row)

    async def set_password(self, name: str, password: str) -> bool:
        """Give ``name`` a new password and end their sessions (tokens stay). False when
        there is no such user; ValueError for a password shorter than 8."""
        check_password_rules(password)
        password_hash = await self._hash_password(password)
        return await self._update_user(name, password_hash=password_hash)

    async def set_role(self, name: str, role: str, agent: str | None = None) -> bool:
        """Set ``name``'s role and linked agent (None clears it) and end their sessions.
        False when there is no such user; ValueError for an unknown role."""
        role_rank(role)
        return await self._update_user(name, role=role, agent=agent)

    async def set_disabled(self, name: str, disabled: bool = True) -> bool:
        """Disable (or enable again) ``name``: a disabled user cannot log in and their
        tokens and sessions stop working; their sessions are ended. False: no such user."""
        return await self._update_user(name, disabled=disabled)

    async def _update_user(self, name: str, **values: Any) -> bool:
        async with self._sessions.begin() as session:
            user_id = (
                await session.scalars(select(UserRow.id).where(UserRow.name == name))
            ).first()
            if user_id is None:
                return False
            await session.execute(update(UserRow).where(UserRow.id == user_id).values(**values))
            await session.execute(delete(SessionRow).where(SessionRow.user_id == user_id))
            return True

    async def has_admin(self) -> bool:
        """Whether an enabled admin user exists."""
        stmt = (
            select(UserRow.id).where(UserRow.role == "admin", UserRow.disabled.is_(False)).limit(1)
        )
        async with self._sessions() as session:
            return (await session.scalars(stmt)).first() is not None

    async def create_token(
        self, user: str, name: str = "", now: datetime | None = None
    ) -> tuple[TokenData, str]:
        """A new API token for ``user``: its data and its secret (shown once; only the
        secret's SHA-256 is stored). LookupError when there is no such user."""
        moment = _utc(now) if now is not None else datetime.now(UTC)
        secret = new_token_secret()
        async with self._sessions.begin() as session:
            user_id = (
                await session.scalars(select(UserRow.id).where(UserRow.name == user))
            ).first()
            if user_id is None:
                raise LookupError(f"no user {user!r}")
            row = ApiTokenRow(
                token_hash=secret_hash(secret),
                user_id=user_id,
                name=name,
                created_at=moment,
                last_used_at=None,
                revoked=False,
            )
            session.add(row)
            await session.flush()
            token = TokenData(row.id, user, name, row.created_at, None, False)
        return token, secret

    async def token_user(self, secret: str, now: datetime | None = None) -> UserData | None:
        """The user a token secret belongs to; None when the token is unknown or revoked
        or the user is disabled. Records the use (``last_used_at``) at most once a minute
        per token, so a busy script does not cost a write per request."""
        moment = _utc(now) if now is not None else datetime.now(UTC)
        stmt = (
            select(ApiTokenRow, UserRow)
            .join(UserRow, ApiTokenRow.user_id == UserRow.id)
            .where(ApiTokenRow.token_hash == secret_hash(secret))
        )
        async with self._sessions() as session:
            found = (await session.execute(stmt)).first()
        if found is None:
            return None
        token, user = found
        if token.revoked or user.disabled:
            return None
        stale = moment - timedelta(seconds=TOKEN_TOUCH_SECONDS)
        if token.last_used_at is None or token.last_used_at <= stale:
            async with self._sessions.begin() as session:
                # Guarded: of concurrent requests, one writes.
                await session.execute(
                    update(ApiTokenRow)
                    .where(ApiTokenRow.id == token.id)
                    .where(
                        or_(ApiTokenRow.last_used_at.is_(None), ApiTokenRow.last_used_at <= stale)
                    )
                    .values(last_used_at=moment)
                )
        return _user_from_row(user)

    async def list_tokens(self) -> list[TokenData]:
        """Every token (revoked ones too), oldest first."""
        stmt = (
            select(ApiTokenRow, UserRow.name)
            .join(UserRow, ApiTokenRow.user_id == UserRow.id)
            .order_by(ApiTokenRow.id)
        )
        async with self._sessions() as session:
            rows = (await session.execute(stmt)).all()
        return [
            TokenData(t.id, user, t.name, t.created_at, t.last_used_at, bool(t.revoked))
            for t, user in rows
        ]

    async def revoke_token(self, token_id: int) -> bool:
        """Revoke a token (for good). False when there is no such token; True when it is
        revoked now or was already."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(ApiTokenRow).where(ApiTokenRow.id == token_id).values(revoked=True)
            )
        return int(getattr(result, "rowcount", 0) or 0) > 0

    async def create_session(
        self, user_name: str, minutes: float, now: datetime | None = None
    ) -> SessionData:
        """A new browser session for ``user_name`` lasting ``minutes``. The id and the CSRF
        token are 32 random bytes each; only the id's SHA-256 is stored. LookupError when
        there is no such user or the user is disabled."""
        moment = _utc(now) if now is not None else datetime.now(UTC)
        session_id = secrets.token_urlsafe(32)
        csrf_token = secrets.token_urlsafe(32)
        async with self._sessions.begin() as session:
            user = (await session.scalars(select(UserRow).where(UserRow.name == user_name))).first()
            if user is None or user.disabled:
                raise LookupError(f"no enabled user {user_name!r}")
            row = SessionRow(
                id=secret_hash(session_id),
                user_id=user.id,
                csrf_token=csrf_token,
                created_at=moment,
                expires_at=moment + timedelta(minutes=minutes),
            )
            session.add(row)
            await session.flush()
            return SessionData(
                session_id, _user_from_row(user), csrf_token, row.created_at, row.expires_at
            )

    async def get_session(self, session_id: str, now: datetime | None = None) -> SessionData | None:
        """The session, with its user as they are now (a role change applies at once);
        None when unknown, expired at ``now`` or the user is disabled."""
        moment = _utc(now) if now is not None else datetime.now(UTC)
        stmt = (
            select(SessionRow, UserRow)
            .join(UserRow, SessionRow.user_id == UserRow.id)
            .where(SessionRow.id == secret_hash(session_id), SessionRow.expires_at > moment)
        )
        async with self._sessions() as session:
            found = (await session.execute(stmt)).first()
        if found is None:
            return None
        row, user = found
        if user.disabled:
            return None
        return SessionData(
            session_id, _user_from_row(user), row.csrf_token, row.created_at, row.expires_at
        )

    async def delete_session(self, session_id: str) -> None:
        """End a session (logout); nothing happens for an unknown id."""
        async with self._sessions.begin() as session:
            await session.execute(
                delete(SessionRow).where(SessionRow.id == secret_hash(session_id))
            )

    async def purge_expired_sessions(self, now: datetime | None = None) -> int:
        """Delete sessions expired at ``now``; return how many were removed."""
        moment = _utc(now) if now is not None else datetime.now(UTC)
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(SessionRow).where(SessionRow.expires_at <= moment)
            )
        return int(getattr(result, "rowcount", 0) or 0)

    # --- the audit log ----------------------------------------------------------------------

    async def add_audit(self, entry: AuditEntry) -> int:
        """Append an audit entry; return its id."""
        async with self._sessions.begin() as session:
            row = AuditRow(
                time=entry.time,
                user=entry.user,
                address=entry.address,
                action=entry.action,
                target=entry.target,
                detail=json.dumps(entry.detail, default=str, separators=(",", ":")),
            )
            session.add(row)
            await session.flush()
            return row.id

    async def list_audit(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        user: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[AuditEntry], int]:
        """Audit entries with ``since <= time < until`` (of ``user``), newest first: one
        page and the number of all matching entries."""
        conds: list[ColumnElement[bool]] = _time_range(AuditRow.time, since, until)
        if user is not None:
            conds.append(AuditRow.user == user)
        order = (AuditRow.time.desc(), AuditRow.id.desc())
        rows, total = await self._page(AuditRow, conds, order, offset, limit)
        return [
            AuditEntry(
                id=r.id,
                time=r.time,
                user=r.user,
                address=r.address,
                action=r.action,
                target=r.target,
                detail=json.loads(r.detail) if r.detail else {},
            )
            for r in rows
        ], total

    async def _page(
        self,
        model: type[_M],
        conds: list[ColumnElement[bool]],
        order: tuple[Any, ...],
        offset: int,
        limit: int,
    ) -> tuple[Sequence[_M], int]:
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must not be negative")
        stmt = select(model).where(*conds).order_by(*order).offset(offset).limit(limit)
        count = select(func.count()).select_from(model).where(*conds)
        async with self._sessions() as session:
            total = (await session.scalar(count)) or 0
            rows = (await session.scalars(stmt)).all() if limit else []
        return rows, int(total)

    # --- searches for the API --------------------------------------------------------------

    async def search_call_records(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        number: str | None = None,
        agent: str | None = None,
        queue: str | None = None,
        disposition: str | None = None,
        extensions: Sequence[str] | None = None,
        own_agent: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[CallRecordData], int]:
        """Call records with ``since <= start < until``, newest first: one page and the
        number of all matching records.

        ``number``: a substring of caller, callee or dialled. ``agent``, ``queue``,
        ``disposition`` (a :class:`Disposition` value; ValueError otherwise): equal.
        ``extensions`` / ``own_agent`` restrict to an agent user's own calls: the record's
        agent is ``own_agent``, OR caller or callee is one of ``extensions`` and no other
        agent handled the call (a shared desk shows no colleague's queue calls); when either
        is given and nothing matches them (no extensions and no agent), nothing is found.
        """
        conds = _time_range(CallRecord.start, since, until)
        if number:
            conds.append(
                _contains_any(number, CallRecord.caller, CallRecord.callee, CallRecord.dialled)
            )
        if agent is not None:
            conds.append(CallRecord.agent == agent)
        if queue is not None:
            conds.append(CallRecord.queue == queue)
        if disposition is not None:
            conds.append(CallRecord.disposition == Disposition(disposition).value)
        if extensions is not None or own_agent is not None:
            own: list[ColumnElement[bool]] = []
            if extensions:
                # a direct call at the agent's extension, but never another agent's call:
                # desks are shared (hot-desking), the agent column is who handled it
                at_desk = or_(CallRecord.caller.in_(extensions), CallRecord.callee.in_(extensions))
                other: ColumnElement[bool] = CallRecord.agent.is_(None)
                if own_agent is not None:
                    other = or_(other, CallRecord.agent == own_agent)
                own.append(and_(at_desk, other))
            if own_agent is not None:
                own.append(CallRecord.agent == own_agent)
            conds.append(or_(*own) if own else false())
        order = (CallRecord.start.desc(), CallRecord.id.desc())
        rows, total = await self._page(CallRecord, conds, order, offset, limit)
        return [_record_from_row(r) for r in rows], total

    async def search_queue_events(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        queue: str | None = None,
        agent: str | None = None,
        event: str | None = None,
        queues: Sequence[str] | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[QueueEventData], int]:
        """Queue events with ``since <= time < until``, oldest first (a log): one page and
        the number of all matching events. ``queue``, ``agent``, ``event``: equal;
        ``queues`` (when not None) restricts to those queues (an agent's served queues)."""
        conds = _time_range(QueueEventRow.time, since, until)
        if queue is not None:
            conds.append(QueueEventRow.queue == queue)
        if agent is not None:
            conds.append(QueueEventRow.agent == agent)
        if event is not None:
            conds.append(QueueEventRow.event == event)
        if queues is not None:
            conds.append(QueueEventRow.queue.in_(queues) if queues else false())
        order = (QueueEventRow.time, QueueEventRow.id)
        rows, total = await self._page(QueueEventRow, conds, order, offset, limit)
        return [_queue_event_from_row(r) for r in rows], total

    async def agent_state_history(
        self,
        agent: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[AgentStateData], int]:
        """``agent``'s state changes with ``since <= time < until``, newest first: one page
        and the number of all matching changes."""
        conds = [AgentStateRow.agent == agent, *_time_range(AgentStateRow.time, since, until)]
        order = (AgentStateRow.time.desc(), AgentStateRow.id.desc())
        rows, total = await self._page(AgentStateRow, conds, order, offset, limit)
        return [
            AgentStateData(r.time, r.agent, r.old_state, r.new_state, r.event, r.reason)
            for r in rows
        ], total

    async def queue_day_stats(
        self,
        since: datetime,
        thresholds: Mapping[str, float],
        short_abandon_seconds: float = 0,
        until: datetime | None = None,
    ) -> dict[str, QueueDayStats]:
        """Each queue's figures from the queue event log with ``since <= time < until``:
        every queue that has events, and every queue in ``thresholds`` (zeros if quiet).

        The events as :mod:`acd.engine` writes them (Asterisk ``queue_log`` layout):

        - offered = ENTERQUEUE events.
        - answered = CONNECT events; ``data[0]`` is the hold time (whole seconds waited
          before the agent answered). answered_in_sl = those with hold <= the queue's
          threshold (``thresholds[queue]``, 20 s when absent). total_wait_answered = the
          sum of the hold times; asa_seconds = total_wait_answered / answered (None
          when nothing was answered).
        - abandoned = ABANDON events (``data`` = position, original position, wait) whose
          wait is > ``short_abandon_seconds``: callers who hang up within that are not
          counted as lost (nor as offered calls' failures). abandoned_in_sl = those of them
          with wait <= the threshold.
        - completed = COMPLETEAGENT and COMPLETECALLER (``data`` = hold, talk, position) and
          TRANSFER (``data`` = target, context, hold, talk, position) events; total_talk =
          the sum of their talk seconds; aht_seconds = total_talk / completed (None when
          none completed). After-call work is not in the queue log: the reports' AHT adds it.
        - EXITWITHTIMEOUT, EXITWITHKEY (and a CALLBACKREQUEST) are offered but neither
          answered nor abandoned. CALLBACKCONNECT (the callback's call reached an agent)
          is not counted as answered: the caller is no longer waiting on the line.

        service_level = answered_in_sl / (answered + abandoned), None when both are 0:
        calls that hung up before an agent answered count against the queue, short
        abandons do not. Alternatives not chosen: answered_in_sl / answered (Asterisk's
        ``ServicelevelPerf``: ignores abandons, so a queue everyone hangs up on looks
        perfect); answered_in_sl / offered (punishes calls that left by key or timeout
        to an overflow the operator designed); (answered_in_sl + abandoned_in_sl) /
        (answered + abandoned) (treats quick abandons as served: Asterisk's
        ``ServicelevelPerf2``).

        Rows whose numeric field does not parse (not written by us) are skipped. The rows
        are streamed (a day is tens of thousands at most) since the fields live in the
        ``data`` text.
        """
        stmt = (
            select(QueueEventRow.queue, QueueEventRow.event, QueueEventRow.data)
            .where(*_time_range(QueueEventRow.time, since, until))
            .where(QueueEventRow.event.in_((*_DAY_EVENTS, *_TALK_FIELD)))
        )
        acc: dict[str, list[float]] = {q: [0, 0, 0, 0, 0, 0.0] for q in thresholds}
        talk: dict[str, list[float]] = {}
        async with self._sessions() as session:
            result = await session.stream(stmt)
            async for queue, kind, data in result:
                a = acc.setdefault(queue, [0, 0, 0, 0, 0, 0.0])
                limit = float(thresholds.get(queue, DEFAULT_SERVICE_LEVEL_SECONDS))
                if kind == "ENTERQUEUE":
                    a[0] += 1
                    continue
                fields_ = data.split("|") if data else []
                if kind in _TALK_FIELD:
                    try:
                        seconds = float(fields_[_TALK_FIELD[kind]])
                    except (IndexError, ValueError):
                        continue
                    t = talk.setdefault(queue, [0, 0.0])
                    t[0] += 1
                    t[1] += seconds
                    continue
                index = 0 if kind == "CONNECT" else 2
                try:
                    seconds = float(fields_[index])
                except (IndexError, ValueError):
                    continue
                if kind == "CONNECT":
                    a[1] += 1
                    a[3] += seconds <= limit
                    a[5] += seconds
                elif seconds > short_abandon_seconds:
                    a[2] += 1
                    a[4] += seconds <= limit
        out: dict[str, QueueDayStats] = {}
        for queue, (offered, answered, abandoned, in_sl, ab_in_sl, wait) in acc.items():
            handled = answered + abandoned
            completed, talked = talk.get(queue, (0, 0.0))
            out[queue] = QueueDayStats(
                queue=queue,
                offered=int(offered),
                answered=int(answered),
                abandoned=int(abandoned),
                answered_in_sl=int(in_sl),
                abandoned_in_sl=int(ab_in_sl),
                total_wait_answered=float(wait),
                service_level=in_sl / handled if handled else None,
                asa_seconds=wait / answered if answered else None,
                completed=int(completed),
                total_talk=float(talked),
                aht_seconds=talked / completed if completed else None,
            )
        return out


# The queue log events ``queue_day_stats`` counts, and where the talk time is in the data
# of the events that end an agent's part of a call.
_DAY_EVENTS = ("ENTERQUEUE", "CONNECT", "ABANDON")
_TALK_FIELD = {"COMPLETEAGENT": 1, "COMPLETECALLER": 1, "TRANSFER": 3}


def _columns(data: Any, exclude: tuple[str, ...] = ("id",)) -> dict[str, Any]:
    """The fields of a store dataclass as column values (same names as the ORM columns)."""
    return {f.name: getattr(data, f.name) for f in fields(data) if f.name not in exclude}


def _data_from_row(cls: type[_D], row: Any) -> _D:
    """A store dataclass from an ORM row with the same column names (``id`` included)."""
    return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})  # type: ignore[arg-type]


_CUSTOMERS = cast(Table, Customer.__table__)
_CUSTOMER_NUMBERS = cast(Table, CustomerNumber.__table__)
_FOLLOWUPS = cast(Table, CustomerFollowup.__table__)
_APPOINTMENTS = cast(Table, CustomerAppointment.__table__)
_BLACKLIST = cast(Table, BlacklistRow.__table__)
_CUSTOMER_SCALARS = (
    "name",
    "phone",
    "email",
    "company",
    "grade",
    "language",
    "notes",
    "created_at",
    "address",
    "source",
    "owner",
    "shared",
    "updated_at",
    "last_followup_at",
    "owned_since",
)


def _customer_columns(c: CustomerData, now: datetime) -> dict[str, Any]:
    values = {name: getattr(c, name) for name in _CUSTOMER_SCALARS}
    values["created_at"] = c.created_at or now
    values["phone_digits"] = phone_digits(c.phone)
    values["tags"] = "," + ",".join(c.tags) + "," if c.tags else ""
    values["custom"] = dict(c.custom) if c.custom else None
    if c.owner is not None and c.owned_since is None:
        values["owned_since"] = now
    return values


def _number_columns(customer_id: int, n: CustomerNumberData) -> dict[str, Any]:
    digits = n.digits
    return {
        "customer_id": customer_id,
        "number": n.number,
        "digits": digits,
        "tail": tail(digits),
        "kind": n.kind,
    }


async def _customers_from_rows(conn: Any, rows: Sequence[Any]) -> list[CustomerData]:
    """Customers from ``customers`` rows, with their numbers (one more query)."""
    if not rows:
        return []
    ids = [r.id for r in rows]
    n = _CUSTOMER_NUMBERS
    numbers: dict[int, list[CustomerNumberData]] = {}
    stmt = select(n).where(n.c.customer_id.in_(ids), n.c.kind != "primary").order_by(n.c.id)
    for r in (await conn.execute(stmt)).all():
        numbers.setdefault(r.customer_id, []).append(CustomerNumberData(r.number, r.kind, r.id))
    out = []
    for r in rows:
        values = {name: getattr(r, name) for name in _CUSTOMER_SCALARS}
        values["shared"] = bool(r.shared)
        out.append(
            CustomerData(
                **values,
                id=r.id,
                tags=tuple(t for t in (r.tags or "").split(",") if t),
                custom=dict(r.custom or {}),
                numbers=tuple(numbers.get(r.id, ())),
            )
        )
    return out


def _customer_conditions(q: CustomerQuery) -> list[ColumnElement[bool]]:
    c = _CUSTOMERS
    conds: list[ColumnElement[bool]] = []
    if q.text:
        needle = q.text.strip().lower()
        conds.append(
            or_(
                func.lower(c.c.name).contains(needle, autoescape=True),
                func.lower(c.c.company).contains(needle, autoescape=True),
            )
        )
    if q.number is not None:
        digits = normalise(q.number)
        n = _CUSTOMER_NUMBERS
        match = or_(n.c.digits == digits, literal(digits).endswith(n.c.digits))
        if len(digits) >= MIN_SUFFIX:
            match = or_(match, n.c.digits.endswith(digits))
        conds.append(
            c.c.id.in_(select(n.c.customer_id).where(n.c.tail == tail(digits), match))
            if digits
            else false()
        )
    if q.grade is not None:
        conds.append(c.c.grade == q.grade)
    if q.tag:
        conds.append(c.c.tags.contains("," + q.tag.strip().lower() + ",", autoescape=True))
    if q.owner is not None:
        conds.append(c.c.owner == q.owner)
    if q.source is not None:
        conds.append(c.c.source == q.source)
    if q.pool is True:
        conds.append(c.c.owner.is_(None))
    elif q.pool is False:
        conds.append(c.c.owner.is_not(None))
    for name, value in q.custom.items():
        column = c.c.custom[name]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            conds.append(column.as_float() == float(value))
        else:
            conds.append(column.as_string() == str(value))
    if q.visible_to is not None:
        conds.append(or_(c.c.shared == true(), c.c.owner.is_(None), c.c.owner == q.visible_to))
    return conds


def _followup_from_row(r: Any) -> FollowupData:
    return FollowupData(r.customer_id, r.time, r.user, r.note, r.next_at, r.id)


def _appointment_from_row(r: Any) -> AppointmentData:
    return AppointmentData(r.customer_id, r.at, r.remind_at, r.user, r.note, bool(r.reminded), r.id)


def _blacklist_from_row(r: Any) -> BlacklistEntry:
    return BlacklistEntry(r.number, r.reason, r.added_by, r.at, r.id)


def _voicemail_from_row(r: Voicemail) -> VoicemailData:
    return _data_from_row(VoicemailData, r)


def _callback_from_row(r: CallbackRequest) -> CallbackRequestData:
    return _data_from_row(CallbackRequestData, r)


def _pauses_json(pauses: Sequence[tuple[float, float]]) -> str:
    return json.dumps([[float(a), float(b)] for a, b in pauses], separators=(",", ":"))


def _recording_columns(data: RecordingData) -> dict[str, Any]:
    values = _columns(data)
    values["state"] = RecordingState(data.state).value
    values["pauses"] = _pauses_json(data.pauses)
    return values


def _recording_from_row(r: RecordingRow) -> RecordingData:
    values = {f.name: getattr(r, f.name) for f in fields(RecordingData)}
    values["state"] = RecordingState(r.state)
    values["pauses"] = tuple((float(a), float(b)) for a, b in json.loads(r.pauses or "[]"))
    return RecordingData(**values)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL: readers never block the writer. Ignored (stays "memory") for :memory: databases.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Wait instead of failing with "database is locked" when another writer holds it.
        cursor.execute("PRAGMA busy_timeout=5000")
    finally:
        cursor.close()


def _user_from_row(r: UserRow) -> UserData:
    return UserData(r.id, r.name, r.role, r.agent, r.created_at, bool(r.disabled))


def _queue_event_from_row(r: QueueEventRow) -> QueueEventData:
    data = tuple(r.data.split("|")) if r.data else ()
    return QueueEventData(r.time, r.call_id, r.queue, r.agent, r.event, data)


def _contains_any(text: str, *columns: Any) -> ColumnElement[bool]:
    """Any of ``columns`` contains ``text`` literally (LIKE wildcards in it are escaped)."""
    return or_(*(column.contains(text, autoescape=True) for column in columns))


def _time_range(
    column: Any, since: datetime | None, until: datetime | None
) -> list[ColumnElement[bool]]:
    """``since <= column < until`` (either end open when None)."""
    conds: list[ColumnElement[bool]] = []
    if since is not None:
        conds.append(column >= _utc(since))
    if until is not None:
        conds.append(column < _utc(until))
    return conds
