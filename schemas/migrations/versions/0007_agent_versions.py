"""agent versions: frozen definitions, the live one per agent, the version of each conversation and turn

Every existing agent gets version 1 made from its current row (so it has a live version
after the upgrade) and its conversations are pinned to it. Written with Core statements
only, so it runs alike on SQLite and PostgreSQL.

Revision ID: 0007_agent_versions
Revises: 0006_operator_console
Create Date: 2026-12-02 01:30:00
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op


revision: str = '0007_agent_versions'
down_revision: str | None = '0006_operator_console'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIELDS = ('model', 'system_prompt', 'tools', 'tool_policies', 'approvals', 'temperature', 'max_tool_rounds')


def upgrade() -> None:
    op.create_table(
        'agent_versions',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('team_id', sa.String(length=32), nullable=False),
        sa.Column('agent_id', sa.String(length=32), nullable=False),
        sa.Column('n', sa.Integer(), nullable=False),
        sa.Column('definition', sa.JSON(), nullable=False),
        sa.Column('note', sa.Text(), nullable=False),
        sa.Column('published_by', sa.String(length=200), nullable=False),
        sa.Column('published_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('rolled_back_to', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['agent_id'], ['agents.id']),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('agent_id', 'n'),
    )
    op.create_index('ix_agent_versions_agent_id', 'agent_versions', ['agent_id'], unique=False)
    with op.batch_alter_table('agents') as batch:
        batch.add_column(sa.Column('live_version_id', sa.String(length=32), nullable=True))
    with op.batch_alter_table('conversations') as batch:
        batch.add_column(sa.Column('version_id', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('version', sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column('version_policy', sa.String(length=16), nullable=False, server_default='pinned')
        )
    with op.batch_alter_table('turns') as batch:
        batch.add_column(sa.Column('version', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('version_id', sa.String(length=32), nullable=True))

    agents = sa.table(
        'agents',
        sa.column('id', sa.String()),
        sa.column('team_id', sa.String()),
        sa.column('model', sa.String()),
        sa.column('system_prompt', sa.Text()),
        sa.column('tools', sa.JSON()),
        sa.column('tool_policies', sa.JSON()),
        sa.column('approvals', sa.JSON()),
        sa.column('temperature', sa.Float()),
        sa.column('max_tool_rounds', sa.Integer()),
        sa.column('live_version_id', sa.String()),
    )
    versions = sa.table(
        'agent_versions',
        sa.column('id', sa.String()),
        sa.column('team_id', sa.String()),
        sa.column('agent_id', sa.String()),
        sa.column('n', sa.Integer()),
        sa.column('definition', sa.JSON()),
        sa.column('note', sa.Text()),
        sa.column('published_by', sa.String()),
        sa.column('published_at', sa.DateTime(timezone=True)),
        sa.column('source', sa.String()),
    )
    conversations = sa.table(
        'conversations',
        sa.column('agent_id', sa.String()),
        sa.column('version_id', sa.String()),
        sa.column('version', sa.Integer()),
    )
    bind = op.get_bind()
    now = datetime.now(UTC)
    for row in bind.execute(sa.select(agents)).mappings().all():
        version_id = uuid.uuid4().hex
        definition = {field: row[field] for field in FIELDS}
        bind.execute(
            versions.insert().values(
                id=version_id,
                team_id=row['team_id'],
                agent_id=row['id'],
                n=1,
                definition=definition,
                note='made from the agent as it was when versions arrived',
                published_by='migration',
                published_at=now,
                source='publish',
            )
        )
        bind.execute(agents.update().where(agents.c.id == row['id']).values(live_version_id=version_id))
        bind.execute(
            conversations.update().where(conversations.c.agent_id == row['id']).values(version_id=version_id, version=1)
        )


def downgrade() -> None:
    with op.batch_alter_table('turns') as batch:
        batch.drop_column('version_id')
        batch.drop_column('version')
    with op.batch_alter_table('conversations') as batch:
        batch.drop_column('version_policy')
        batch.drop_column('version')
        batch.drop_column('version_id')
    with op.batch_alter_table('agents') as batch:
        batch.drop_column('live_version_id')
    op.drop_index('ix_agent_versions_agent_id', table_name='agent_versions')
    op.drop_table('agent_versions')
