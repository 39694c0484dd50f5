"""team members: users, memberships, web sessions, invitation and reset links, sign-in failures, team audit; key expiry, last use and creator

Revision ID: 0011_team_members
Revises: 0010_test_conversations
Create Date: 2026-12-02 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0011_team_members'
down_revision: str | None = '0010_test_conversations'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'users',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column('display_name', sa.String(length=200), nullable=False),
        sa.Column('password_hash', sa.String(length=200), nullable=True),
        sa.Column('oidc_subject', sa.String(length=320), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
        sa.UniqueConstraint('email', name=op.f('uq_users_email')),
        sa.UniqueConstraint('oidc_subject', name=op.f('uq_users_oidc_subject')),
    )
    op.create_table(
        'memberships',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('team_id', sa.String(length=32), nullable=False),
        sa.Column('user_id', sa.String(length=32), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_memberships_team_id_teams')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_memberships_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_memberships')),
        sa.UniqueConstraint('team_id', 'user_id', name=op.f('uq_memberships_team_id_user_id')),
    )
    op.create_index('ix_memberships_team_id', 'memberships', ['team_id'], unique=False)
    op.create_index('ix_memberships_user_id', 'memberships', ['user_id'], unique=False)
    op.create_table(
        'web_sessions',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.String(length=32), nullable=True),
        sa.Column('key_id', sa.String(length=32), nullable=True),
        sa.Column('team_id', sa.String(length=32), nullable=False),
        sa.Column('user_agent', sa.String(length=300), nullable=False),
        sa.Column('ip', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_web_sessions_user_id_users')),
        sa.ForeignKeyConstraint(['key_id'], ['api_keys.id'], name=op.f('fk_web_sessions_key_id_api_keys')),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_web_sessions_team_id_teams')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_web_sessions')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_web_sessions_token_hash')),
    )
    op.create_index('ix_web_sessions_user_id', 'web_sessions', ['user_id'], unique=False)
    op.create_table(
        'member_tokens',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('team_id', sa.String(length=32), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=True),
        sa.Column('user_id', sa.String(length=32), nullable=True),
        sa.Column('created_by', sa.String(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_member_tokens_team_id_teams')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_member_tokens_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_member_tokens')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_member_tokens_token_hash')),
    )
    op.create_index('ix_member_tokens_team_id', 'member_tokens', ['team_id'], unique=False)
    op.create_table(
        'sign_in_failures',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('scope', sa.String(length=400), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_sign_in_failures')),
    )
    op.create_index('ix_sign_in_failures_scope_at', 'sign_in_failures', ['scope', 'at'], unique=False)
    op.create_table(
        'team_audit',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('team_id', sa.String(length=32), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('actor', sa.String(length=200), nullable=False),
        sa.Column('actor_id', sa.String(length=32), nullable=True),
        sa.Column('action', sa.String(length=32), nullable=False),
        sa.Column('subject', sa.String(length=400), nullable=False),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_team_audit_team_id_teams')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_team_audit')),
    )
    op.create_index('ix_team_audit_team_at', 'team_audit', ['team_id', 'at'], unique=False)
    with op.batch_alter_table('api_keys') as batch:
        batch.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('created_by', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('api_keys') as batch:
        batch.drop_column('created_by')
        batch.drop_column('last_used_at')
        batch.drop_column('expires_at')
    op.drop_index('ix_team_audit_team_at', table_name='team_audit')
    op.drop_table('team_audit')
    op.drop_index('ix_sign_in_failures_scope_at', table_name='sign_in_failures')
    op.drop_table('sign_in_failures')
    op.drop_index('ix_member_tokens_team_id', table_name='member_tokens')
    op.drop_table('member_tokens')
    op.drop_index('ix_web_sessions_user_id', table_name='web_sessions')
    op.drop_table('web_sessions')
    op.drop_index('ix_memberships_user_id', table_name='memberships')
    op.drop_index('ix_memberships_team_id', table_name='memberships')
    op.drop_table('memberships')
    op.drop_table('users')
