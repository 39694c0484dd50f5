"""MCP servers a team's agents may call

`mcp_servers` holds each team's Model Context Protocol servers (streamable HTTP): the URL,
the auth sealed as channel credentials are, the health of the last contact and the tools
the last refresh listed.

Revision ID: 0018_mcp
Revises: 0017_actions
Create Date: 2026-12-02 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0018_mcp'
down_revision: str | None = '0017_actions'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'mcp_servers',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('team_id', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('url', sa.String(length=500), nullable=False),
        sa.Column('auth_kind', sa.String(length=16), nullable=False),
        sa.Column('auth_header', sa.String(length=100), nullable=True),
        sa.Column('secret', sa.Text(), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('checked_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('tools', sa.JSON(), nullable=False),
        sa.Column('refreshed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_mcp_servers_team_id_teams')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_mcp_servers')),
    )
    op.create_index('ix_mcp_servers_team_id', 'mcp_servers', ['team_id'], unique=False)
    op.create_index(
        'uq_mcp_servers_team_name_live',
        'mcp_servers',
        ['team_id', 'name'],
        unique=True,
        sqlite_where=sa.text('deleted_at IS NULL'),
        postgresql_where=sa.text('deleted_at IS NULL'),
    )


def downgrade() -> None:
    op.drop_index(
        'uq_mcp_servers_team_name_live',
        table_name='mcp_servers',
        sqlite_where=sa.text('deleted_at IS NULL'),
        postgresql_where=sa.text('deleted_at IS NULL'),
    )
    op.drop_index('ix_mcp_servers_team_id', table_name='mcp_servers')
    op.drop_table('mcp_servers')
