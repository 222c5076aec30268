"""SQLAlchemy 2 ORM models (typed ``Mapped[]`` declarative) for the store.

Only :mod:`crm.store` touches these classes; everyone else uses the plain dataclasses in
:mod:`crm.store`. Other tables (customers, tickets, queue events, recordings, ...) subclass the
same :class:`Base` so ``metadata.create_all`` creates them together.

Timestamps are always UTC. SQLite has no time zone type, so :class:`UtcDateTime` stores naive
UTC and hands back aware UTC datetimes on every backend.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """A datetime column that only accepts and returns timezone-aware UTC values."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store only timezone-aware UTC values")
        value = value.astimezone(UTC)
        # SQLite would drop the offset anyway; strip it so comparisons are on plain UTC text.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base shared by every table in the store."""


class CallRecord(Base):
    """A call detail record: one row per call, written when the call ends."""

    __tablename__ = "call_records"
    __table_args__ = (
        Index("ix_call_records_call_id", "call_id"),
        Index("ix_call_records_start", "start"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # SIP Call-ID of the caller's leg (the one the caller's phone knows).
    call_id: Mapped[str] = mapped_column(String(255))
    caller: Mapped[str] = mapped_column(String(255))
    callee: Mapped[str] = mapped_column(String(255))
    start: Mapped[datetime] = mapped_column(UtcDateTime())
    answer: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    end: Mapped[datetime] = mapped_column(UtcDateTime())
    duration: Mapped[float] = mapped_column(Float)
    billable_seconds: Mapped[float] = mapped_column(Float)
    hangup_cause: Mapped[str] = mapped_column(String(64))
    disposition: Mapped[str] = mapped_column(String(16))
    hangup_side: Mapped[str] = mapped_column(String(16))
    sip_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Switchboard's own id of the call (unique per record) and, for a call that continues
    # another one (a transfer), the record_id of the call it came from.
    record_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    linked_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # Media quality per party as received by Switchboard: loss fraction (0..1), RFC 3550
    # interarrival jitter and an ITU-T G.107 E-model MOS estimate.
    caller_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    caller_jitter_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    caller_mos: Mapped[float | None] = mapped_column(Float, nullable=True)
    callee_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    callee_jitter_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    callee_mos: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The key trail: every digit the caller pressed in the IVR, in order.
    ivr_keys: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # What reports need (docs/records.md). All nullable: rows written before these columns
    # existed, and calls that never met a queue, leave them empty.
    # What the caller dialled (a DID, a queue's number, an extension), before any routing.
    dialled: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # inbound (to a DID/IVR/queue/voicemail entry), outbound (placed by Switchboard: a
    # callback) or internal (extension to extension, feature codes, conference rooms).
    direction: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # When Switchboard itself answered the caller (IVR, queue, voicemail), before ``answer``
    # (the party's answer, from which billable_seconds count).
    system_answer: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # The queue the call was answered in (or last waited in) and the ACD agent id (as in the
    # queue log, not an extension) who answered it.
    queue: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    agent: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    # Seconds between joining the first queue and an agent answering (or the caller leaving).
    wait_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The queue-log call id (queue_events.call_id) of this call's queue visit; for a callback
    # the id of the original call that asked for it.
    queue_call_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # For a callback's call: callback_requests.id of the request it fulfils.
    callback_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The trunk the call left or arrived through, and the trunks tried before it with their
    # final status ("carrier:503,backup:408").
    trunk: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    trunk_attempts: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    # The caller ID presented to the carrier on a call that left through a trunk.
    caller_id_sent: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Registration(Base):
    """A registrar binding (RFC 3261 §10.3): one contact of one address-of-record."""

    __tablename__ = "registrations"
    __table_args__ = (
        UniqueConstraint("aor", "contact_uri", name="uq_registrations_aor_contact"),
        Index("ix_registrations_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    aor: Mapped[str] = mapped_column(String(255))
    contact_uri: Mapped[str] = mapped_column(Text)
    # Source "host:port" the REGISTER actually came from (RFC 3581 rport/received, NAT).
    received: Mapped[str] = mapped_column(String(255))
    transport: Mapped[str] = mapped_column(String(16))
    call_id: Mapped[str] = mapped_column(String(255))
    cseq: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    user_agent: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # RFC 5626 +sip.instance and RFC 3327 Path, kept for outbound/edge proxies.
    instance_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    path: Mapped[str | None] = mapped_column(Text, nullable=True)


class ExtensionSetting(Base):
    """Settings a phone user changes with feature codes: do-not-disturb and forwarding."""

    __tablename__ = "extension_settings"

    number: Mapped[str] = mapped_column(String(64), primary_key=True)
    dnd: Mapped[bool] = mapped_column(Boolean, default=False)
    forward_all: Mapped[str | None] = mapped_column(String(64), nullable=True)
    forward_busy: Mapped[str | None] = mapped_column(String(64), nullable=True)
    forward_no_answer: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Voicemail(Base):
    """A message a caller left after the beep. The audio is a WAV file in the voicemail
    folder; the row keeps its path and SHA-256 so a moved or damaged file is noticed."""

    __tablename__ = "voicemails"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The call the message was left on (call_records.record_id).
    record_id: Mapped[str] = mapped_column(String(64), index=True)
    mailbox: Mapped[str] = mapped_column(String(64), index=True)
    caller: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    heard: Mapped[bool] = mapped_column(Boolean, default=False)


class SurveyResult(Base):
    """The outcome of a post-call satisfaction survey."""

    __tablename__ = "survey_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The call that was rated (call_records.record_id) and the call the survey ran on.
    record_id: Mapped[str] = mapped_column(String(64), index=True)
    survey_record_id: Mapped[str] = mapped_column(String(64))
    caller: Mapped[str] = mapped_column(String(255))
    # Who the caller talked to: the ACD agent id (as in the queue log) for a queue call,
    # else the extension that answered the rated call.
    agent: Mapped[str] = mapped_column(String(255), index=True)
    flow: Mapped[str] = mapped_column(String(255))
    # satisfied | neutral | unsatisfied | hung up without rating | invalid key |
    # no rating entered
    result: Mapped[str] = mapped_column(String(32))
    digit: Mapped[str | None] = mapped_column(String(1), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class WrapUp(Base):
    """What an agent noted in wrap-up after a call: a wrap-up code and free notes."""

    __tablename__ = "wrap_ups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The call wrapped up (call_records.record_id); None when the panel knew no call.
    record_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    agent: Mapped[str] = mapped_column(String(255), index=True)
    code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    notes: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class CallbackRequest(Base):
    """A caller asked to be called back. At most one *pending* request per number (a partial
    unique index): asking again does not queue a second call."""

    __tablename__ = "callback_requests"
    __table_args__ = (
        Index(
            "uq_callback_requests_pending_number",
            "number",
            unique=True,
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(64))
    queue: Mapped[str | None] = mapped_column(String(255), nullable=True)
    caller: Mapped[str] = mapped_column(String(255))
    record_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # pending -> done | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str | None] = mapped_column(String(64), nullable=True)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class Customer(Base):
    """A customer of the call center (docs/crm.md). ``phone`` is the primary number as typed;
    every number, the primary one included, is also a :class:`CustomerNumber` row, which is
    what lookups by caller ID use. ``phone_digits`` (``phone``'s digits) is kept for rows
    and readers from before revision 0004."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    phone: Mapped[str] = mapped_column(String(64))
    phone_digits: Mapped[str] = mapped_column(String(64), index=True)
    email: Mapped[str | None] = mapped_column(String(255), nullable=True)
    company: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # Service grade A (best) .. E: the ACD can turn it into caller priority.
    grade: Mapped[str | None] = mapped_column(String(1), nullable=True)
    language: Mapped[str | None] = mapped_column(String(8), nullable=True)
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    address: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Lower-case tags between commas (",vip,reseller,"), so one LIKE finds a whole tag.
    tags: Mapped[str] = mapped_column(Text, server_default="")
    source: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # The user name that owns the customer; None: in the public pool.
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # Since when ``owner`` has it (the pool's return-after-N-days counts from here too).
    owned_since: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # Every agent may see and edit a shared customer.
    shared: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # The values of the custom fields declared in crm.custom_fields (a JSON object).
    custom: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_followup_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class CustomerNumber(Base):
    """One phone number of a customer: as typed, normalised (crm/numbers.py) and its
    indexed tail (the last 7 digits) that caller-ID lookups search by."""

    __tablename__ = "customer_numbers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[str] = mapped_column(String(64))
    digits: Mapped[str] = mapped_column(String(32), index=True)
    tail: Mapped[str] = mapped_column(String(8), index=True)
    # primary | mobile | home | work | fax | other
    kind: Mapped[str] = mapped_column(String(16))


class CustomerFollowup(Base):
    """A contact with a customer: who, when, what was said, and when to follow up next."""

    __tablename__ = "customer_followups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    time: Mapped[datetime] = mapped_column(UtcDateTime())
    user: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text)
    next_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # Whether the user was notified that ``next_at`` came (revision 0008).
    reminded: Mapped[bool] = mapped_column(Boolean, server_default=false())


class CustomerAppointment(Base):
    """An appointment with a customer; its reminder is due at ``remind_at`` until sent."""

    __tablename__ = "customer_appointments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    remind_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    user: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text)
    reminded: Mapped[bool] = mapped_column(Boolean, server_default=false())


class BlacklistRow(Base):
    """A number outbound calls must not dial (the outbound blacklist), matched as customer
    numbers are (crm/numbers.py)."""

    __tablename__ = "outbound_blacklist"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(64))
    digits: Mapped[str] = mapped_column(String(32), unique=True)
    tail: Mapped[str] = mapped_column(String(8), index=True)
    reason: Mapped[str] = mapped_column(Text)
    added_by: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime())


class QueueEventRow(Base):
    """One line of the queue event log (Asterisk ``queue_log`` vocabulary): every report on
    queues and agents is computed from these and the call records."""

    __tablename__ = "queue_events"
    __table_args__ = (Index("ix_queue_events_time", "time"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(UtcDateTime())
    call_id: Mapped[str] = mapped_column(String(64))  # "" for agent events
    queue: Mapped[str] = mapped_column(String(255))
    agent: Mapped[str] = mapped_column(String(255))
    event: Mapped[str] = mapped_column(String(32))
    data: Mapped[str] = mapped_column(Text)  # the data fields joined by "|"


class AgentStateRow(Base):
    """The agent state log: one row per state change."""

    __tablename__ = "agent_states"
    __table_args__ = (Index("ix_agent_states_agent_time", "agent", "time"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(UtcDateTime())
    agent: Mapped[str] = mapped_column(String(255))
    old_state: Mapped[str] = mapped_column(String(16))
    new_state: Mapped[str] = mapped_column(String(16))
    event: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)


class LastAgent(Base):
    """Which agent last handled a caller (for last-agent routing)."""

    __tablename__ = "last_agents"

    caller: Mapped[str] = mapped_column(String(255), primary_key=True)
    agent: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(UtcDateTime())


class RecordingRow(Base):
    """One recording (``crm.recordings.RecordingData`` has the meaning of each column): the
    file is ``path`` under the recording folder. ``pauses`` is a JSON array of
    ``[start, end]`` offsets in seconds."""

    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recording_id: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    # call_records.record_id of the recorded call segment, and its chain's first record_id.
    call_id: Mapped[str] = mapped_column(String(64), index=True)
    linked_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    started: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    ended: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    path: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(8))
    rate: Mapped[int] = mapped_column(Integer)
    channels: Mapped[int] = mapped_column(Integer)
    # recording | complete | truncated | failed
    state: Mapped[str] = mapped_column(String(16), index=True)
    caller: Mapped[str] = mapped_column(String(255))
    callee: Mapped[str] = mapped_column(String(255))
    dialled: Mapped[str | None] = mapped_column(String(255), nullable=True)
    direction: Mapped[str | None] = mapped_column(String(16), nullable=True)
    extension: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    agent: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    queue: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    customer_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    reason: Mapped[str] = mapped_column(String(32))
    duration: Mapped[float] = mapped_column(Float)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pauses: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class UserRow(Base):
    """A user of the HTTP API and web panel (docs/api.md): one role each, an Argon2 hash."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    # The agents: entry an agent user acts as.
    agent: Mapped[str | None] = mapped_column(String(255), nullable=True)
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class ApiTokenRow(Base):
    """An API bearer token; only the SHA-256 of its secret is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class SessionRow(Base):
    """A browser session. ``id`` is the SHA-256 of the session id in the cookie."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_expires_at", "expires_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AuditRow(Base):
    """One change made through the API (the audit log)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_time", "time"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(UtcDateTime())
    user: Mapped[str] = mapped_column(String(255))
    address: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(255))
    target: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text)  # a JSON object


class TicketRow(Base):
    """A ticket (docs/crm.md "Tickets"): what it is about, who handles it, where it stands
    in the lifecycle (crm/tickets.py ``TRANSITIONS``) and its SLA deadlines."""

    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # "T-000123", from the id (set in the transaction that inserts the row).
    number: Mapped[str | None] = mapped_column(String(16), nullable=True, unique=True)
    type: Mapped[str] = mapped_column(String(64))
    category: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # low | normal | high | urgent
    priority: Mapped[str] = mapped_column(String(16))
    # new | assigned | in_progress | feedback | revisit | closed
    state: Mapped[str] = mapped_column(String(16), index=True)
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text)
    customer_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("customers.id", ondelete="SET NULL"), nullable=True, index=True
    )
    # call_records.record_id of the call it was created from, and that call's recording.
    record_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    recording_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_by: Mapped[str] = mapped_column(String(64), index=True)
    assignee: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    department: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # How often it was urged.
    urgency: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    first_response_due: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    resolution_due: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    first_response_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # Waiting on the customer (state feedback) since then: the SLA clock is stopped.
    paused_since: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # Business seconds spent waiting on the customer so far.
    paused_seconds: Mapped[float] = mapped_column(Float)
    revisit_outcome: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Bumped by every change: a change made from a stale read is refused (409).
    version: Mapped[int] = mapped_column(Integer)


class TicketEventRow(Base):
    """One entry of a ticket's audit trail: who did what when, the state change, a note."""

    __tablename__ = "ticket_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("tickets.id", ondelete="CASCADE"), index=True
    )
    time: Mapped[datetime] = mapped_column(UtcDateTime())
    user: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    note: Mapped[str] = mapped_column(Text)
    # What else changed (assignee, department, priority ...), a JSON object.
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class TicketCcRow(Base):
    """A user copied on a ticket: they see it and may comment until it is closed."""

    __tablename__ = "ticket_cc"

    ticket_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    user: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class TicketNotificationRow(Base):
    """A notification to deliver (urged, SLA warning or breach). ``once_key`` makes the
    escalation job's records idempotent: one per ticket and key; urges have none."""

    __tablename__ = "ticket_notifications"
    __table_args__ = (
        UniqueConstraint("ticket_id", "once_key", name="uq_ticket_notifications_once"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("tickets.id", ondelete="CASCADE"), index=True
    )
    time: Mapped[datetime] = mapped_column(UtcDateTime())
    kind: Mapped[str] = mapped_column(String(32))
    # User names, comma-separated.
    recipients: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    once_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Whether it was copied into ``notifications``, one row per recipient (revision 0008).
    expanded: Mapped[bool] = mapped_column(Boolean, server_default=false())


class NotificationRow(Base):
    """A notification to one user (crm/notifications.py, revision 0008): from a ticket
    notification, an appointment or a follow-up coming due. ``source`` names what it came
    from, once per user; ``delivered_at`` is set when it was pushed on the event stream,
    ``read_at`` when the user marked it read."""

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("user", "source", name="uq_notifications_source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(String(64), index=True)
    time: Mapped[datetime] = mapped_column(UtcDateTime())
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(64))
    ticket_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    customer_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True, index=True)
    read_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


# --- knowledge base (crm/kb.py, revision 0006) -------------------------------------------


class KbCategoryRow(Base):
    """A knowledge-base category: a tree by ``parent_id``. ``read_roles`` / ``edit_roles``
    are comma-separated role names, or NULL to inherit the parent's."""

    __tablename__ = "kb_categories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    parent_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("kb_categories.id", ondelete="RESTRICT"), nullable=True, index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    read_roles: Mapped[str | None] = mapped_column(String(255), nullable=True)
    edit_roles: Mapped[str | None] = mapped_column(String(255), nullable=True)


class KbArticleRow(Base):
    """A markdown article; ``version`` counts its edits (every one is in
    :class:`KbArticleVersionRow`), ``views`` its reads."""

    __tablename__ = "kb_articles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    category_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("kb_categories.id", ondelete="RESTRICT"), index=True
    )
    title: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    keywords: Mapped[str] = mapped_column(Text)  # space separated, lower case
    author: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    version: Mapped[int] = mapped_column(Integer)
    views: Mapped[int] = mapped_column(Integer)


class KbArticleVersionRow(Base):
    """One version of an article as it was saved: who, when, the text."""

    __tablename__ = "kb_article_versions"
    __table_args__ = (UniqueConstraint("article_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    article_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("kb_articles.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    keywords: Mapped[str] = mapped_column(Text)
    category_id: Mapped[int] = mapped_column(Integer)
    editor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime())


class KbViewRow(Base):
    """One read of an article (the hot list counts these within a window)."""

    __tablename__ = "kb_views"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    article_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("kb_articles.id", ondelete="CASCADE"), index=True
    )
    user: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class KbFavouriteRow(Base):
    """A user's favourite article."""

    __tablename__ = "kb_favourites"

    user: Mapped[str] = mapped_column(String(64), primary_key=True)
    article_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("kb_articles.id", ondelete="CASCADE"), primary_key=True
    )
    at: Mapped[datetime] = mapped_column(UtcDateTime())


class KbImageRow(Base):
    """An image an article shows (``/api/kb/images/{id}``), kept in the store."""

    __tablename__ = "kb_images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    article_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("kb_articles.id", ondelete="CASCADE"), nullable=True, index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    uploaded_by: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime())


# --- quality assessment (crm/qa.py, revision 0006) ----------------------------------------


class QaScorecardRow(Base):
    """A scorecard template: ``sections`` is JSON (crm.qa.Scorecard)."""

    __tablename__ = "qa_scorecards"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    sections: Mapped[Any] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class QaTaskRow(Base):
    """An evaluation task: a scorecard, a period, an evaluator and the agents to assess."""

    __tablename__ = "qa_tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    scorecard_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("qa_scorecards.id", ondelete="RESTRICT"), index=True
    )
    evaluator: Mapped[str] = mapped_column(String(64), index=True)
    agents: Mapped[Any] = mapped_column(JSON)
    period_start: Mapped[datetime] = mapped_column(UtcDateTime())
    period_end: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class QaEvaluationRow(Base):
    """One agent's evaluation on one call: ``scores`` maps item keys to points (JSON)."""

    __tablename__ = "qa_evaluations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("qa_tasks.id", ondelete="CASCADE"), nullable=True, index=True
    )
    scorecard_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("qa_scorecards.id", ondelete="RESTRICT"), index=True
    )
    agent: Mapped[str] = mapped_column(String(64), index=True)
    evaluator: Mapped[str] = mapped_column(String(64))
    call_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    recording_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    scores: Mapped[Any] = mapped_column(JSON)
    comment: Mapped[str] = mapped_column(Text)
    total: Mapped[float] = mapped_column(Float)
    auto_failed: Mapped[bool] = mapped_column(Boolean)
    published: Mapped[bool] = mapped_column(Boolean, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
