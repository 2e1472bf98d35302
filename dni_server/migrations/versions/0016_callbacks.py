"""web callbacks: a visitor's request to be called back, its evidence and attempts

Revision ID: 0016
Revises: 0015

One table, ``callbacks`` (attribution.callbacks.models): the number (E.164), the consent
text shown, the page, a keyed hash of IP and user agent, the calling rule and zones that
decide its hours, its status, next attempt, attempts and the resulting call's id.
"""
import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'callbacks',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=False),
        sa.Column('pool_id', sa.Integer(), nullable=True),
        sa.Column('session_id', sa.String(length=128), nullable=False),
        sa.Column('phone', sa.String(length=16), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=True),
        sa.Column('consent_text', sa.Text(), nullable=False),
        sa.Column('page_url', sa.Text(), nullable=True),
        sa.Column('client_hash', sa.String(length=64), nullable=False),
        sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('wanted_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('calling_rule', sa.String(length=16), nullable=False),
        sa.Column('time_zones', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('attempt_log', sa.JSON(), nullable=False),
        sa.Column('last_outcome', sa.String(length=32), nullable=True),
        sa.Column('carrier', sa.String(length=16), nullable=True),
        sa.Column('business_call_id', sa.String(length=128), nullable=True),
        sa.Column('visitor_call_id', sa.String(length=128), nullable=True),
        sa.Column('claim', sa.String(length=32), nullable=True),
        sa.Column('call_id', sa.BigInteger(), nullable=True),
        sa.Column('flagged', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['site_id'], ['sites.id']),
        sa.ForeignKeyConstraint(['pool_id'], ['pools.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    # The worker's question: which callbacks are due (status first, then time).
    op.create_index('ix_callbacks_due', 'callbacks', ['status', 'next_attempt_at'])
    op.create_index('ix_callbacks_site_created', 'callbacks', ['site_id', 'created_at'])
    op.create_index('ix_callbacks_session', 'callbacks', ['session_id'])


def downgrade():
    op.drop_index('ix_callbacks_session', table_name='callbacks')
    op.drop_index('ix_callbacks_site_created', table_name='callbacks')
    op.drop_index('ix_callbacks_due', table_name='callbacks')
    op.drop_table('callbacks')
