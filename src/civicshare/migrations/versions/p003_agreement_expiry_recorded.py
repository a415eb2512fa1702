"""agreements remember when their expiry was recorded in the audit log

Revision ID: p003
Revises: p002
Create Date: 2026-11-28 00:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import civicshare.db

revision = "p003"
down_revision = "p002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Agreements that expired before this revision get their record at the hub's next sweep.
    with op.batch_alter_table("agreement", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("expiry_recorded_at", civicshare.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("agreement", schema=None) as batch_op:
        batch_op.drop_column("expiry_recorded_at")
