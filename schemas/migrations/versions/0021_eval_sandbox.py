"""eval sandbox: a dataset may run its cases' record tools for real, in a sandbox team per run

Revision ID: 0021_eval_sandbox
Revises: 0020_guardrails
Create Date: 2026-12-02 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0021_eval_sandbox"
down_revision: str | None = "0020_guardrails"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("teams") as batch:
        batch.add_column(sa.Column("sandbox_of", sa.String(length=32), nullable=True))
        batch.create_foreign_key("fk_teams_sandbox_of_teams", "teams", ["sandbox_of"], ["id"])
        batch.create_index("ix_teams_sandbox_of", ["sandbox_of"])
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("sandbox", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("eval_runs") as batch:
        batch.add_column(sa.Column("sandbox_team_id", sa.String(length=32), nullable=True))
        batch.create_foreign_key("fk_eval_runs_sandbox_team_id_teams", "teams", ["sandbox_team_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("eval_runs") as batch:
        batch.drop_constraint("fk_eval_runs_sandbox_team_id_teams", type_="foreignkey")
        batch.drop_column("sandbox_team_id")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("sandbox")
    with op.batch_alter_table("teams") as batch:
        batch.drop_index("ix_teams_sandbox_of")
        batch.drop_constraint("fk_teams_sandbox_of_teams", type_="foreignkey")
        batch.drop_column("sandbox_of")
