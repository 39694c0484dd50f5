"""budgets: usage per model call, team prices per model, the team budget, agents.budgets

Revision ID: 0014_budgets
Revises: 0013_incidents
Create Date: 2026-12-02 07:00:00

Versions frozen before this migration have no `budgets` in their definition, which reads as
no budgets (`FROZEN_DEFAULTS`). Calls made before it have no usage rows: usage starts here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0014_budgets'
down_revision: str | None = '0013_incidents'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'llm_usage',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('team_id', sa.String(length=32), nullable=False),
        sa.Column('agent_id', sa.String(length=32), nullable=False),
        sa.Column('version_id', sa.String(length=32), nullable=True),
        sa.Column('conversation_id', sa.String(length=32), nullable=False),
        sa.Column('turn', sa.Integer(), nullable=False),
        sa.Column('round', sa.Integer(), nullable=False),
        sa.Column('model', sa.String(length=200), nullable=False),
        sa.Column('prompt_tokens', sa.Integer(), nullable=False),
        sa.Column('completion_tokens', sa.Integer(), nullable=False),
        sa.Column('cost_usd', sa.Float(), nullable=False),
        sa.Column('day', sa.String(length=10), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_llm_usage_team_id_teams')),
        sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_llm_usage_agent_id_agents')),
        sa.ForeignKeyConstraint(
            ['conversation_id'], ['conversations.id'], name=op.f('fk_llm_usage_conversation_id_conversations')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_llm_usage')),
        sa.UniqueConstraint('conversation_id', 'turn', 'round', name=op.f('uq_llm_usage_conversation_id_turn_round')),
    )
    op.create_index('ix_llm_usage_team_day', 'llm_usage', ['team_id', 'day'], unique=False)
    op.create_index('ix_llm_usage_agent_day', 'llm_usage', ['agent_id', 'day'], unique=False)
    op.create_index('ix_llm_usage_conversation_id', 'llm_usage', ['conversation_id'], unique=False)
    op.create_table(
        'model_prices',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('team_id', sa.String(length=32), nullable=False),
        sa.Column('model', sa.String(length=200), nullable=False),
        sa.Column('prompt_per_mtok', sa.Float(), nullable=False),
        sa.Column('completion_per_mtok', sa.Float(), nullable=False),
        sa.Column('updated_by', sa.String(length=200), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_model_prices_team_id_teams')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_model_prices')),
        sa.UniqueConstraint('team_id', 'model', name=op.f('uq_model_prices_team_id_model')),
    )
    op.create_table(
        'team_budgets',
        sa.Column('team_id', sa.String(length=32), nullable=False),
        sa.Column('settings', sa.JSON(), nullable=False),
        sa.Column('updated_by', sa.String(length=200), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_team_budgets_team_id_teams')),
        sa.PrimaryKeyConstraint('team_id', name=op.f('pk_team_budgets')),
    )
    with op.batch_alter_table('agents') as batch:
        batch.add_column(sa.Column('budgets', sa.JSON(), nullable=False, server_default='{}'))


def downgrade() -> None:
    with op.batch_alter_table('agents') as batch:
        batch.drop_column('budgets')
    op.drop_table('team_budgets')
    op.drop_table('model_prices')
    op.drop_index('ix_llm_usage_conversation_id', table_name='llm_usage')
    op.drop_index('ix_llm_usage_agent_day', table_name='llm_usage')
    op.drop_index('ix_llm_usage_team_day', table_name='llm_usage')
    op.drop_table('llm_usage')
