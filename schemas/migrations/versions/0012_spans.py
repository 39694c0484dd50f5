"""trace spans kept in the app database (the embedded default exporter)

Revision ID: 0012_spans
Revises: 0011_team_members
Create Date: 2026-12-02 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0012_spans'
down_revision: str | None = '0011_team_members'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('spans',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('trace_id', sa.String(length=32), nullable=False),
    sa.Column('span_id', sa.String(length=16), nullable=False),
    sa.Column('parent_span_id', sa.String(length=16), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('service', sa.String(length=64), nullable=False),
    sa.Column('start_ns', sa.BigInteger(), nullable=False),
    sa.Column('end_ns', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('status_message', sa.Text(), nullable=True),
    sa.Column('attributes', sa.JSON(), nullable=False),
    sa.Column('conversation_id', sa.String(length=32), nullable=True),
    sa.Column('turn', sa.Integer(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_spans'))
    )
    with op.batch_alter_table('spans', schema=None) as batch_op:
        batch_op.create_index('ix_spans_trace_id', ['trace_id'], unique=False)
        batch_op.create_index('ix_spans_started_at', ['started_at'], unique=False)
        batch_op.create_index('ix_spans_conversation_id_turn', ['conversation_id', 'turn'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('spans', schema=None) as batch_op:
        batch_op.drop_index('ix_spans_conversation_id_turn')
        batch_op.drop_index('ix_spans_started_at')
        batch_op.drop_index('ix_spans_trace_id')
    op.drop_table('spans')
