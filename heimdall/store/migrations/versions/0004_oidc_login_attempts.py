"""oidc login attempts

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('oidc_login_attempts',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('state_hash', sa.String(length=64), nullable=False),
    sa.Column('binding_hash', sa.String(length=64), nullable=False),
    sa.Column('nonce_encrypted', sa.Text(), nullable=False),
    sa.Column('code_verifier_encrypted', sa.Text(), nullable=False),
    sa.Column('issuer', sa.Text(), nullable=False),
    sa.Column('client_id', sa.Text(), nullable=False),
    sa.Column('redirect_uri', sa.Text(), nullable=False),
    sa.Column('flow_id', sa.String(length=64), nullable=True),
    sa.Column('next_path', sa.Text(), nullable=True),
    sa.Column('used', sa.Boolean(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oidc_login_attempts')),
    sa.UniqueConstraint('state_hash', name=op.f('uq_oidc_login_attempts_state_hash'))
    )
    with op.batch_alter_table('oidc_login_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oidc_login_attempts_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('oidc_login_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oidc_login_attempts_expires_at'))

    op.drop_table('oidc_login_attempts')
