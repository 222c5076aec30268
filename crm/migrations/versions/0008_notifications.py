"""Notifications to users: one row per user and source, delivered on the event stream and
marked read (issue 14); ticket notifications and follow-ups learn whether they were
copied into it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

What an older store already holds counts as handled: its ticket notifications are marked
expanded and its follow-ups and appointments already due are marked reminded, so an upgrade
does not push old urges, SLA warnings and reminders to everyone at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from crm.models import UtcDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("time", UtcDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("delivered_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("read_at", UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user", "source", name="uq_notifications_source"),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notifications_user"), ["user"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_notifications_delivered_at"), ["delivered_at"], unique=False
        )
    with op.batch_alter_table("ticket_notifications", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("expanded", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("customer_followups", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("reminded", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.execute(sa.text("UPDATE ticket_notifications SET expanded = :yes").bindparams(yes=True))
    # Reminders already due when the store is upgraded were never sent before (nothing
    # delivered them): count them as reminded rather than push a backlog of old ones.
    now = datetime.now(UTC)
    for name, column in (("customer_followups", "next_at"), ("customer_appointments", "remind_at")):
        table = sa.table(
            name, sa.column(column, UtcDateTime()), sa.column("reminded", sa.Boolean())
        )
        op.execute(table.update().where(table.c[column] <= now).values(reminded=True))


def downgrade() -> None:
    with op.batch_alter_table("customer_followups", schema=None) as batch_op:
        batch_op.drop_column("reminded")
    with op.batch_alter_table("ticket_notifications", schema=None) as batch_op:
        batch_op.drop_column("expanded")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifications_delivered_at"))
        batch_op.drop_index(batch_op.f("ix_notifications_user"))
    op.drop_table("notifications")
