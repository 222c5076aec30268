"""Customers (issue 14, part C1): several numbers, address, tags, source, owner and pool,
shared flag, custom fields, follow-ups, appointments and the outbound blacklist.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

Existing customers keep working: each gets its ``phone`` as a ``primary`` row of
``customer_numbers`` (normalised as crm/numbers.py does), no owner (the public pool) and no
tags.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from crm.models import UtcDateTime
from crm.numbers import normalise, tail

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _customer_id() -> sa.Column[int]:
    return sa.Column(
        "customer_id",
        sa.Integer(),
        sa.ForeignKey("customers.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("address", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("tags", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(sa.Column("source", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("owner", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("owned_since", UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("shared", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("custom", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("updated_at", UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("last_followup_at", UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_customers_source"), ["source"], unique=False)
        batch_op.create_index(batch_op.f("ix_customers_owner"), ["owner"], unique=False)

    numbers = op.create_table(
        "customer_numbers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _customer_id(),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("digits", sa.String(length=32), nullable=False),
        sa.Column("tail", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("customer_numbers", schema=None) as batch_op:
        for column in ("customer_id", "digits", "tail"):
            batch_op.create_index(batch_op.f(f"ix_customer_numbers_{column}"), [column])

    op.create_table(
        "customer_followups",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _customer_id(),
        sa.Column("time", UtcDateTime(timezone=True), nullable=False),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("next_at", UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("customer_followups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customer_followups_customer_id"), ["customer_id"])

    op.create_table(
        "customer_appointments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _customer_id(),
        sa.Column("at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("remind_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("reminded", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("customer_appointments", schema=None) as batch_op:
        for column in ("customer_id", "remind_at"):
            batch_op.create_index(batch_op.f(f"ix_customer_appointments_{column}"), [column])

    op.create_table(
        "outbound_blacklist",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("digits", sa.String(length=32), nullable=False),
        sa.Column("tail", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("added_by", sa.String(length=64), nullable=False),
        sa.Column("at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("digits"),
    )
    with op.batch_alter_table("outbound_blacklist", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbound_blacklist_tail"), ["tail"])

    # Every existing customer's phone becomes its primary number.
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, phone FROM customers")).all()
    values = [
        {"customer_id": cid, "number": phone, "digits": d, "tail": tail(d), "kind": "primary"}
        for cid, phone in rows
        if (d := normalise(phone))
    ]
    if values:
        op.bulk_insert(numbers, values)


def downgrade() -> None:
    op.drop_table("outbound_blacklist")
    op.drop_table("customer_appointments")
    op.drop_table("customer_followups")
    op.drop_table("customer_numbers")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customers_owner"))
        batch_op.drop_index(batch_op.f("ix_customers_source"))
        for column in (
            "last_followup_at",
            "updated_at",
            "custom",
            "shared",
            "owned_since",
            "owner",
            "source",
            "tags",
            "address",
        ):
            batch_op.drop_column(column)
