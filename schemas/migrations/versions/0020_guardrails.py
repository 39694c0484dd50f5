"""guardrails: violations on record, each team's default rails, and the agent draft's `guardrails`

Versions frozen before this migration have no `guardrails` in their definition, which reads
as none (the team's defaults apply).

Revision ID: 0020_guardrails
Revises: 0019_datasets
Create Date: 2026-12-02 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0020_guardrails"
down_revision: str | None = '0019_datasets'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "guardrail_violations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("agent_id", sa.String(length=32), nullable=False),
        sa.Column("version_id", sa.String(length=32), nullable=True),
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("rail", sa.String(length=16), nullable=False),
        sa.Column("check", sa.String(length=16), nullable=False),
        sa.Column("check_index", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("spans", sa.JSON(), nullable=False),
        sa.Column("detail", sa.String(length=300), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_guardrail_violations_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_guardrail_violations_conversation_id_conversations"),
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_guardrail_violations_team_id_teams")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guardrail_violations")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_guardrail_violations_dedupe_key")),
    )
    op.create_index(
        op.f("ix_guardrail_violations_agent_id"), "guardrail_violations", ["agent_id"], unique=False
    )
    op.create_index(
        op.f("ix_guardrail_violations_conversation_id"),
        "guardrail_violations",
        ["conversation_id"],
        unique=False,
    )
    op.create_index(
        "ix_guardrail_violations_team_created",
        "guardrail_violations",
        ["team_id", "created_at", "id"],
        unique=False,
    )
    op.create_table(
        "guardrail_defaults",
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("guardrails", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], name=op.f("fk_guardrail_defaults_team_id_teams")),
        sa.PrimaryKeyConstraint("team_id", name=op.f("pk_guardrail_defaults")),
    )
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("guardrails", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("guardrails")
    op.drop_table("guardrail_defaults")
    op.drop_index("ix_guardrail_violations_team_created", table_name="guardrail_violations")
    op.drop_index(op.f("ix_guardrail_violations_conversation_id"), table_name="guardrail_violations")
    op.drop_index(op.f("ix_guardrail_violations_agent_id"), table_name="guardrail_violations")
    op.drop_table("guardrail_violations")
