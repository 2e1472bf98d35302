"""autoscale policies and decisions

Revision ID: 0017
Revises: 0016

``pool_autoscale`` holds each pool's autoscale policy and when the worker decides for it
next; ``autoscale_decisions`` every decision (grow, trim or hold) with its reason, its mode
and what applying it did (``attribution.numbers.autoscale_models``).
"""
import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    op.create_table(
        'pool_autoscale',
        sa.Column('pool_id', sa.Integer(), sa.ForeignKey('pools.id'), primary_key=True),
        sa.Column('policy', sa.JSON(), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('next_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        'autoscale_decisions',
        sa.Column('id', BIGINT, primary_key=True),
        sa.Column('pool_id', sa.Integer(), sa.ForeignKey('pools.id'), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('action', sa.String(8), nullable=False),
        sa.Column('numbers', sa.Integer(), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('expected', sa.Float(), nullable=True),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('mode', sa.String(8), nullable=False),
        sa.Column('applied', sa.Boolean(), nullable=False),
        sa.Column('done', sa.Integer(), nullable=True),
        sa.Column('result', sa.Text(), nullable=True),
    )
    op.create_index('ix_autoscale_decisions_pool_at', 'autoscale_decisions', ['pool_id', 'at'])


def downgrade():
    op.drop_index('ix_autoscale_decisions_pool_at', table_name='autoscale_decisions')
    op.drop_table('autoscale_decisions')
    op.drop_table('pool_autoscale')
