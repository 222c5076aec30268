"""Tickets (issue 14, part C2): tickets with SLA deadlines, their audit trail, the users
copied on them and the notifications (urges, SLA warnings and breaches) to deliver.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from crm.models import UtcDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ticket_id() -> sa.Column[int]:
    return sa.Column(
        "ticket_id",
        sa.Integer(),
        sa.ForeignKey("tickets.id", ondelete="CASCADE"),
        nullable=False,
    )


def _when(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, UtcDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("number", sa.String(length=16), nullable=True),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column(
            "customer_id",
            sa.Integer(),
            sa.ForeignKey("customers.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("record_id", sa.String(length=64), nullable=True),
        sa.Column("recording_id", sa.String(length=32), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("assignee", sa.String(length=64), nullable=True),
        sa.Column("department", sa.String(length=64), nullable=True),
        sa.Column("urgency", sa.Integer(), nullable=False),
        _when("created_at", nullable=False),
        _when("updated_at", nullable=False),
        _when("first_response_due"),
        _when("resolution_due"),
        _when("first_response_at"),
        _when("resolved_at"),
        _when("closed_at"),
        _when("paused_since"),
        sa.Column("paused_seconds", sa.Float(), nullable=False),
        sa.Column("revisit_outcome", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("number"),
    )
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        for column in ("state", "customer_id", "record_id", "created_by", "assignee", "department"):
            batch_op.create_index(batch_op.f(f"ix_tickets_{column}"), [column])

    op.create_table(
        "ticket_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _ticket_id(),
        _when("time", nullable=False),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=True),
        sa.Column("to_state", sa.String(length=16), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ticket_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ticket_events_ticket_id"), ["ticket_id"])

    op.create_table(
        "ticket_cc",
        _ticket_id(),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("ticket_id", "user"),
    )
    with op.batch_alter_table("ticket_cc", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ticket_cc_user"), ["user"])

    op.create_table(
        "ticket_notifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _ticket_id(),
        _when("time", nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("recipients", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("once_key", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticket_id", "once_key", name="uq_ticket_notifications_once"),
    )
    with op.batch_alter_table("ticket_notifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ticket_notifications_ticket_id"), ["ticket_id"])


def downgrade() -> None:
    op.drop_table("ticket_notifications")
    op.drop_table("ticket_cc")
    op.drop_table("ticket_events")
    op.drop_table("tickets")
