"""The schema of release 0.1.0 (the store before Alembic).

Revision ID: 0001
Revises:
Create Date: 2026-12-06

Every table, column, index and constraint ``crm/models.py`` had in 0.1.0, frozen here as its
own :func:`metadata` (not ``crm.models.Base.metadata``, which moves on with later revisions).
:mod:`crm.migrate` also uses it to bring a database made before Alembic up to exactly this
revision before stamping it (missing tables created, missing nullable columns added).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from crm.models import UtcDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def metadata() -> sa.MetaData:
    """The 0.1.0 tables."""
    md = sa.MetaData()
    sa.Table(
        "agent_states",
        md,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("time", UtcDateTime(), nullable=False),
        sa.Column("agent", sa.String(length=255), nullable=False),
        sa.Column("old_state", sa.String(length=16), nullable=False),
        sa.Column("new_state", sa.String(length=16), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_agent_states_agent_time", "agent", "time"),
    )
    sa.Table(
        "call_records",
        md,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.String(length=255), nullable=False),
        sa.Column("caller", sa.String(length=255), nullable=False),
        sa.Column("callee", sa.String(length=255), nullable=False),
        sa.Column("start", UtcDateTime(), nullable=False),
        sa.Column("answer", UtcDateTime(), nullable=True),
        sa.Column("end", UtcDateTime(), nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("billable_seconds", sa.Float(), nullable=False),
        sa.Column("hangup_cause", sa.String(length=64), nullable=False),
        sa.Column("disposition", sa.String(length=16), nullable=False),
        sa.Column("hangup_side", sa.String(length=16), nullable=False),
        sa.Column("sip_status", sa.Integer(), nullable=True),
        sa.Column("record_id", sa.String(length=64), nullable=True),
        sa.Column("linked_id", sa.String(length=64), nullable=True),
        sa.Column("caller_loss", sa.Float(), nullable=True),
        sa.Column("caller_jitter_ms", sa.Float(), nullable=True),
        sa.Column("caller_mos", sa.Float(), nullable=True),
        sa.Column("callee_loss", sa.Float(), nullable=True),
        sa.Column("callee_jitter_ms", sa.Float(), nullable=True),
        sa.Column("callee_mos", sa.Float(), nullable=True),
        sa.Column("ivr_keys", sa.String(length=64), nullable=True),
        sa.Column("dialled", sa.String(length=255), nullable=True),
        sa.Column("direction", sa.String(length=16), nullable=True),
        sa.Column("system_answer", UtcDateTime(), nullable=True),
        sa.Column("queue", sa.String(length=255), nullable=True),
        sa.Column("agent", sa.String(length=255), nullable=True),
        sa.Column("wait_seconds", sa.Float(), nullable=True),
        sa.Column("queue_call_id", sa.String(length=64), nullable=True),
        sa.Column("callback_id", sa.Integer(), nullable=True),
        sa.Column("trunk", sa.String(length=255), nullable=True),
        sa.Column("trunk_attempts", sa.String(length=1024), nullable=True),
        sa.Column("caller_id_sent", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_call_records_agent", "agent"),
        sa.Index("ix_call_records_call_id", "call_id"),
        sa.Index("ix_call_records_linked_id", "linked_id"),
        sa.Index("ix_call_records_queue", "queue"),
        sa.Index("ix_call_records_queue_call_id", "queue_call_id"),
        sa.Index("ix_call_records_record_id", "record_id"),
        sa.Index("ix_call_records_start", "start"),
        sa.Index("ix_call_records_trunk", "trunk"),
    )
    sa.Table(
        "callback_requests",
        md,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("queue", sa.String(length=255), nullable=True),
        sa.Column("caller", sa.String(length=255), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=64), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.Index(
            "uq_callback_requests_pending_number",
            "number",
            unique=True,
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        ),
    )
    sa.Table(
        "customers",
        md,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("phone", sa.String(length=64), nullable=False),
        sa.Column("phone_digits", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("company", sa.String(length=255), nullable=True),
        sa.Column("grade", sa.String(length=1), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_customers_phone_digits", "phone_digits"),
    )
    sa.Table(
        "extension_settings",
        md,
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("dnd", sa.Boolean(), nullable=False),
        sa.Column("forward_all", sa.String(length=64), nullable=True),
        sa.Column("forward_busy", sa.String(length=64), nullable=True),
        sa.Column("forward_no_answer", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("number"),
    )
    sa.Table(
        "last_agents",
        md,
        sa.Column("caller", sa.String(length=255), nullable=False),
        sa.Column("agent", sa.String(length=255), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("caller"),
    )
    sa.Table(
        "queue_events",
        md,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("time", UtcDateTime(), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("queue", sa.String(length=255), nullable=False),
        sa.Column("agent", sa.String(length=255), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_queue_events_time", "time"),
    )
    sa.Table(
        "registrations",
        md,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("aor", sa.String(length=255), nullable=False),
        sa.Column("contact_uri", sa.Text(), nullable=False),
        sa.Column("received", sa.String(length=255), nullable=False),
        sa.Column("transport", sa.String(length=16), nullable=False),
        sa.Column("call_id", sa.String(length=255), nullable=False),
        sa.Column("cseq", sa.Integer(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("user_agent", sa.String(length=255), nullable=True),
        sa.Column("instance_id", sa.String(length=255), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("aor", "contact_uri", name="uq_registrations_aor_contact"),
        sa.Index("ix_registrations_expires_at", "expires_at"),
    )
    sa.Table(
        "survey_results",
        md,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("survey_record_id", sa.String(length=64), nullable=False),
        sa.Column("caller", sa.String(length=255), nullable=False),
        sa.Column("agent", sa.String(length=255), nullable=False),
        sa.Column("flow", sa.String(length=255), nullable=False),
        sa.Column("result", sa.String(length=32), nullable=False),
        sa.Column("digit", sa.String(length=1), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_survey_results_agent", "agent"),
        sa.Index("ix_survey_results_record_id", "record_id"),
    )
    sa.Table(
        "voicemails",
        md,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("mailbox", sa.String(length=64), nullable=False),
        sa.Column("caller", sa.String(length=255), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("heard", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_voicemails_mailbox", "mailbox"),
        sa.Index("ix_voicemails_record_id", "record_id"),
    )
    return md


def upgrade() -> None:
    metadata().create_all(op.get_bind())


def downgrade() -> None:
    metadata().drop_all(op.get_bind())
