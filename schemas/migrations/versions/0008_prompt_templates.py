"""prompt templates: named Jinja sources per team or agent, and each agent's time zone and variables

Versions frozen before this keep their definitions as they are: a missing `timezone`,
`variables`, `templates` or `default_template` reads as its default (UTC, none, none, none),
which is what those versions rendered. Core statements only (SQLite and PostgreSQL alike).

Revision ID: 0008_prompt_templates
Revises: 0007_agent_versions
Create Date: 2026-12-02 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0008_prompt_templates'
down_revision: str | None = '0007_agent_versions'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'prompt_templates',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('team_id', sa.String(length=32), nullable=False),
        sa.Column('agent_id', sa.String(length=32), nullable=True),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('is_default', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['agent_id'], ['agents.id']),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(
        'uq_prompt_templates_global_name',
        'prompt_templates',
        ['team_id', 'name'],
        unique=True,
        sqlite_where=sa.text('agent_id IS NULL'),
        postgresql_where=sa.text('agent_id IS NULL'),
    )
    op.create_index(
        'uq_prompt_templates_agent_name',
        'prompt_templates',
        ['team_id', 'agent_id', 'name'],
        unique=True,
        sqlite_where=sa.text('agent_id IS NOT NULL'),
        postgresql_where=sa.text('agent_id IS NOT NULL'),
    )
    op.create_index(
        'uq_prompt_templates_global_default',
        'prompt_templates',
        ['team_id'],
        unique=True,
        sqlite_where=sa.text('agent_id IS NULL AND is_default'),
        postgresql_where=sa.text('agent_id IS NULL AND is_default'),
    )
    op.create_index(
        'uq_prompt_templates_agent_default',
        'prompt_templates',
        ['team_id', 'agent_id'],
        unique=True,
        sqlite_where=sa.text('agent_id IS NOT NULL AND is_default'),
        postgresql_where=sa.text('agent_id IS NOT NULL AND is_default'),
    )
    with op.batch_alter_table('agents') as batch:
        batch.add_column(sa.Column('timezone', sa.String(length=64), nullable=False, server_default='UTC'))
        batch.add_column(sa.Column('variables', sa.JSON(), nullable=False, server_default='{}'))


def downgrade() -> None:
    with op.batch_alter_table('agents') as batch:
        batch.drop_column('variables')
        batch.drop_column('timezone')
    for index in (
        'uq_prompt_templates_agent_default',
        'uq_prompt_templates_global_default',
        'uq_prompt_templates_agent_name',
        'uq_prompt_templates_global_name',
    ):
        op.drop_index(index, table_name='prompt_templates')
    op.drop_table('prompt_templates')
