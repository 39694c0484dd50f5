"""operator console: who holds a handed-off conversation and why, operator messages, what an API caller has seen

Revision ID: 0006_operator_console
Revises: 0005_schedules
Create Date: 2026-12-02 00:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0006_operator_console'
down_revision: str | None = '0005_schedules'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('conversations') as batch:
        batch.add_column(sa.Column('handed_off_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('handoff_reason', sa.Text(), nullable=True))
        batch.add_column(sa.Column('held_by', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('held_by_key_id', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('held_since', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('caller_seen_seq', sa.Integer(), nullable=False, server_default='0'))
    op.create_index(
        'ix_conversations_team_activity', 'conversations', ['team_id', 'last_activity_at', 'id'], unique=False
    )
    with op.batch_alter_table('messages') as batch:
        batch.add_column(sa.Column('author', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('messages') as batch:
        batch.drop_column('author')
    op.drop_index('ix_conversations_team_activity', table_name='conversations')
    with op.batch_alter_table('conversations') as batch:
        batch.drop_column('caller_seen_seq')
        batch.drop_column('held_since')
        batch.drop_column('held_by_key_id')
        batch.drop_column('held_by')
        batch.drop_column('handoff_reason')
        batch.drop_column('handed_off_at')
