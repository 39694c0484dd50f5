"""conversation event log

Revision ID: 0002_events
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002_events'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every committed insert is announced to the API processes that LISTEN on this channel,
# with the whole event when it fits in a notification (PostgreSQL's limit is 8000 bytes),
# so a tailer that has seen the previous id hands it on without reading the table.
# Notifications are delivered in commit order, which per conversation is id order.
_NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION steward_notify_event() RETURNS trigger AS $$
DECLARE
    payload text;
BEGIN
    payload := json_build_object(
        'c', NEW.conversation_id, 's', NEW.seq, 'k', NEW.kind, 't', NEW.turn, 'd', NEW.data
    )::text;
    IF octet_length(payload) > 7900 THEN
        payload := json_build_object('c', NEW.conversation_id, 's', NEW.seq)::text;
    END IF;
    PERFORM pg_notify('steward_events', payload);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""
_NOTIFY_TRIGGER = """
CREATE TRIGGER events_notify AFTER INSERT ON events
FOR EACH ROW EXECUTE FUNCTION steward_notify_event()
"""


def upgrade() -> None:
    op.create_table('events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('team_id', sa.String(length=32), nullable=False),
    sa.Column('conversation_id', sa.String(length=32), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('turn', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_events_conversation_id_conversations')),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_events_team_id_teams')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events')),
    sa.UniqueConstraint('conversation_id', 'seq', name=op.f('uq_events_conversation_id_seq'))
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_created_at', ['created_at'], unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(_NOTIFY_FUNCTION)
        op.execute(_NOTIFY_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP TRIGGER IF EXISTS events_notify ON events')
        op.execute('DROP FUNCTION IF EXISTS steward_notify_event()')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_created_at')
    op.drop_table('events')
