"""team LLM providers, and the provider an agent's draft names

`llm_providers` holds each team's endpoints (their API keys sealed, as channel credentials
are); `agents.provider_id` names the draft's provider (None: the built-in one). Versions
frozen before this migration have no `provider_id` in their definition, which reads as
None, so nothing is rewritten.

Revision ID: 0009_llm_providers
Revises: 0008_prompt_templates
Create Date: 2026-12-02 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0009_llm_providers'
down_revision: str | None = '0008_prompt_templates'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'llm_providers',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('team_id', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=24), nullable=False),
        sa.Column('base_url', sa.String(length=500), nullable=True),
        sa.Column('api_version', sa.String(length=32), nullable=True),
        sa.Column('secret', sa.Text(), nullable=True),
        sa.Column('key_hint', sa.String(length=4), nullable=True),
        sa.Column('default_model', sa.String(length=200), nullable=True),
        sa.Column('last_check', sa.JSON(), nullable=True),
        sa.Column('checked_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_llm_providers_team_id_teams')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_llm_providers')),
    )
    op.create_index('ix_llm_providers_team_id', 'llm_providers', ['team_id'], unique=False)
    op.create_index(
        'uq_llm_providers_team_name_live',
        'llm_providers',
        ['team_id', 'name'],
        unique=True,
        sqlite_where=sa.text('deleted_at IS NULL'),
        postgresql_where=sa.text('deleted_at IS NULL'),
    )
    with op.batch_alter_table('agents') as batch:
        batch.add_column(sa.Column('provider_id', sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('agents') as batch:
        batch.drop_column('provider_id')
    op.drop_index(
        'uq_llm_providers_team_name_live',
        table_name='llm_providers',
        sqlite_where=sa.text('deleted_at IS NULL'),
        postgresql_where=sa.text('deleted_at IS NULL'),
    )
    op.drop_index('ix_llm_providers_team_id', table_name='llm_providers')
    op.drop_table('llm_providers')
