"""test conversations: a flag on the scratch conversations of an agent's test runs

A test run's side-effecting tools are simulated and its conversation stays out of the
lists; existing conversations are not tests.

Revision ID: 0010_test_conversations
Revises: 0009_llm_providers
Create Date: 2026-12-02 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0010_test_conversations'
down_revision: str | None = '0009_llm_providers'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('conversations') as batch:
        batch.add_column(sa.Column('is_test', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('conversations') as batch:
        batch.drop_column('is_test')
