"""custom actions: a team's OpenAPI-described services whose chosen operations agents call as tools

Revision ID: 0017_actions
Revises: 0016_replays
Create Date: 2026-12-02 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0017_actions'
down_revision: str | None = '0016_replays'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'actions',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('team_id', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('spec', sa.JSON(), nullable=False),
        sa.Column('spec_url', sa.String(length=2000), nullable=True),
        sa.Column('base_url', sa.String(length=2000), nullable=False),
        sa.Column('operations', sa.JSON(), nullable=False),
        sa.Column('tools', sa.JSON(), nullable=False),
        sa.Column('auth', sa.JSON(), nullable=False),
        sa.Column('secret', sa.Text(), nullable=True),
        sa.Column('timeout_seconds', sa.Float(), nullable=False),
        sa.Column('max_response_bytes', sa.Integer(), nullable=False),
        sa.Column('follow_redirects', sa.Boolean(), nullable=False),
        sa.Column('check_operation', sa.String(length=200), nullable=True),
        sa.Column('last_check', sa.JSON(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_actions_team_id_teams')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_actions')),
    )
    op.create_index('ix_actions_team_id', 'actions', ['team_id'], unique=False)
    op.create_index(
        'uq_actions_team_name_live',
        'actions',
        ['team_id', 'name'],
        unique=True,
        sqlite_where=sa.text('deleted_at IS NULL'),
        postgresql_where=sa.text('deleted_at IS NULL'),
    )


def downgrade() -> None:
    op.drop_index(
        'uq_actions_team_name_live',
        table_name='actions',
        sqlite_where=sa.text('deleted_at IS NULL'),
        postgresql_where=sa.text('deleted_at IS NULL'),
    )
    op.drop_index('ix_actions_team_id', table_name='actions')
    op.drop_table('actions')
