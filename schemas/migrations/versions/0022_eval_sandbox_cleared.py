"""eval sandbox retention: when a finished run's sandbox was cleared

Revision ID: 0022_eval_sandbox_cleared
Revises: 0021_eval_sandbox
Create Date: 2026-12-02 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0022_eval_sandbox_cleared"
down_revision: str | None = "0021_eval_sandbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("eval_runs") as batch:
        batch.add_column(sa.Column("sandbox_cleared_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("eval_runs") as batch:
        batch.drop_column("sandbox_cleared_at")
