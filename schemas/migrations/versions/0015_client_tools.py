"""client tools: tools the caller runs, declared by an agent or sent with a chat completion

`agents.client_tools` and `agents.client_tool_timeout` are draft fields a version freezes
(versions frozen before have none: no client tools, 300 s); `conversations.caller_tools`
holds the `tools` of the chat completion that started the running turn.

Revision ID: 0015_client_tools
Revises: 0014_budgets
Create Date: 2026-12-02 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0015_client_tools'
down_revision: str | None = '0014_budgets'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('agents') as batch:
        batch.add_column(sa.Column('client_tools', sa.JSON(), nullable=False, server_default='[]'))
        batch.add_column(sa.Column('client_tool_timeout', sa.Float(), nullable=False, server_default='300'))
    with op.batch_alter_table('conversations') as batch:
        batch.add_column(sa.Column('caller_tools', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('conversations') as batch:
        batch.drop_column('caller_tools')
    with op.batch_alter_table('agents') as batch:
        batch.drop_column('client_tool_timeout')
        batch.drop_column('client_tools')
