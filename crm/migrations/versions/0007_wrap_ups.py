"""Wrap-ups: the code and notes an agent enters after a call (issue 13).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

A new table only: an older store gains it empty.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from crm.models import UtcDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = ("record_id", "agent", "at")


def upgrade() -> None:
    op.create_table(
        "wrap_ups",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=True),
        sa.Column("agent", sa.String(length=255), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=True),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("wrap_ups", schema=None) as batch_op:
        for column in _INDEXES:
            batch_op.create_index(batch_op.f(f"ix_wrap_ups_{column}"), [column], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("wrap_ups", schema=None) as batch_op:
        for column in reversed(_INDEXES):
            batch_op.drop_index(batch_op.f(f"ix_wrap_ups_{column}"))
    op.drop_table("wrap_ups")
