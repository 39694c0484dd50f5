"""incidents: per-agent SLO objectives, incidents with their timelines and notices, injected faults

Revision ID: 0013_incidents
Revises: 0012_spans
Create Date: 2026-12-02 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0013_incidents'
down_revision: str | None = '0012_spans'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'slo_objectives',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('team_id', sa.String(length=32), nullable=False),
        sa.Column('agent_id', sa.String(length=32), nullable=False),
        sa.Column('objective', sa.String(length=32), nullable=False),
        sa.Column('target', sa.Float(), nullable=False),
        sa.Column('threshold_seconds', sa.Float(), nullable=True),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['agent_id'], ['agents.id']),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('agent_id', 'objective'),
    )
    op.create_table(
        'incidents',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('team_id', sa.String(length=32), nullable=False),
        sa.Column('agent_id', sa.String(length=32), nullable=True),
        sa.Column('objective', sa.String(length=32), nullable=True),
        sa.Column('title', sa.String(length=300), nullable=False),
        sa.Column('severity', sa.String(length=16), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('open_key', sa.String(length=100), nullable=True),
        sa.Column('opened_by', sa.String(length=200), nullable=True),
        sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('acknowledged_by', sa.String(length=200), nullable=True),
        sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('resolved_by', sa.String(length=200), nullable=True),
        sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['agent_id'], ['agents.id']),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('open_key'),
    )
    op.create_index('ix_incidents_agent_id', 'incidents', ['agent_id'], unique=False)
    op.create_index('ix_incidents_team_opened', 'incidents', ['team_id', 'opened_at', 'id'], unique=False)
    op.create_table(
        'incident_entries',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('team_id', sa.String(length=32), nullable=False),
        sa.Column('incident_id', sa.String(length=32), nullable=False),
        sa.Column('kind', sa.String(length=24), nullable=False),
        sa.Column('actor', sa.String(length=200), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['incident_id'], ['incidents.id']),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(
        'ix_incident_entries_incident_at', 'incident_entries', ['incident_id', 'at', 'id'], unique=False
    )
    op.create_table(
        'incident_notices',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('team_id', sa.String(length=32), nullable=False),
        sa.Column('incident_id', sa.String(length=32), nullable=False),
        sa.Column('event', sa.String(length=24), nullable=False),
        sa.Column('target', sa.String(length=24), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['incident_id'], ['incidents.id']),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('incident_id', 'event', 'target'),
    )
    op.create_table(
        'faults',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('kind', sa.String(length=24), nullable=False),
        sa.Column('agent_id', sa.String(length=32), nullable=True),
        sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_faults_ends_at', 'faults', ['ends_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_faults_ends_at', table_name='faults')
    op.drop_table('faults')
    op.drop_table('incident_notices')
    op.drop_index('ix_incident_entries_incident_at', table_name='incident_entries')
    op.drop_table('incident_entries')
    op.drop_index('ix_incidents_team_opened', table_name='incidents')
    op.drop_index('ix_incidents_agent_id', table_name='incidents')
    op.drop_table('incidents')
    op.drop_table('slo_objectives')
