"""replays: regression replays of recorded conversations, their conversations and turns

Revision ID: 0016_replays
Revises: 0015_client_tools
Create Date: 2026-12-02 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0016_replays'
down_revision: str | None = '0015_client_tools'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'replays',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('team_id', sa.String(length=32), nullable=False),
        sa.Column('agent_id', sa.String(length=32), nullable=False),
        sa.Column('candidate_version', sa.Integer(), nullable=True),
        sa.Column('candidate_version_id', sa.String(length=32), nullable=True),
        sa.Column('selection', sa.JSON(), nullable=False),
        sa.Column('evaluators', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('created_by', sa.String(length=200), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['agent_id'], ['agents.id']),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_replays_agent_id', 'replays', ['agent_id'], unique=False)
    op.create_index('ix_replays_team_created', 'replays', ['team_id', 'created_at', 'id'], unique=False)
    op.create_table(
        'replay_conversations',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('team_id', sa.String(length=32), nullable=False),
        sa.Column('replay_id', sa.String(length=32), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('source_conversation_id', sa.String(length=32), nullable=False),
        sa.Column('scratch_conversation_id', sa.String(length=32), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('verdict', sa.String(length=16), nullable=True),
        sa.Column('turns_total', sa.Integer(), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['replay_id'], ['replays.id']),
        sa.ForeignKeyConstraint(['scratch_conversation_id'], ['conversations.id']),
        sa.ForeignKeyConstraint(['source_conversation_id'], ['conversations.id']),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('replay_id', 'position'),
    )
    op.create_index('ix_replay_conversations_replay_id', 'replay_conversations', ['replay_id'], unique=False)
    op.create_table(
        'replay_turns',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('team_id', sa.String(length=32), nullable=False),
        sa.Column('replay_conversation_id', sa.String(length=32), nullable=False),
        sa.Column('recorded_turn', sa.Integer(), nullable=False),
        sa.Column('candidate_turn', sa.Integer(), nullable=False),
        sa.Column('messages', sa.JSON(), nullable=False),
        sa.Column('recorded', sa.JSON(), nullable=False),
        sa.Column('candidate', sa.JSON(), nullable=False),
        sa.Column('differences', sa.JSON(), nullable=False),
        sa.Column('evaluations', sa.JSON(), nullable=False),
        sa.Column('verdict', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['replay_conversation_id'], ['replay_conversations.id']),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('replay_conversation_id', 'recorded_turn'),
    )


def downgrade() -> None:
    op.drop_table('replay_turns')
    op.drop_index('ix_replay_conversations_replay_id', table_name='replay_conversations')
    op.drop_table('replay_conversations')
    op.drop_index('ix_replays_team_created', table_name='replays')
    op.drop_index('ix_replays_agent_id', table_name='replays')
    op.drop_table('replays')
