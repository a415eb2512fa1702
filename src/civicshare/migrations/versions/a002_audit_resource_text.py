"""audit_entry.resource holds every dataset a query names: text, not 255 characters

Revision ID: a002
Revises: a001
Create Date: 2026-11-28 00:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a002"
down_revision = "a001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # On PostgreSQL varchar to text rewrites nothing; SQLite never enforced the length.
    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        batch_op.alter_column(
            "resource", existing_type=sa.String(length=255), type_=sa.Text(), existing_nullable=True
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        batch_op.alter_column(
            "resource", existing_type=sa.Text(), type_=sa.String(length=255), existing_nullable=True
        )
