"""pay-per-call routing: buyers, routing plans, each routed call's log

Revision ID: 0009
Revises: 0008

Pools and static numbers gain a nullable ``routing_plan_id``: when set, the number's calls
are offered to buyers by that plan instead of forwarded to ``destination``.
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'buyers',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('publisher', sa.String(length=200), nullable=True),
        sa.Column('paused', sa.Boolean(), nullable=False),
        sa.Column('spec', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_buyers_publisher', 'buyers', ['publisher'])
    op.create_table(
        'routing_plans',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('publisher', sa.String(length=200), nullable=True),
        sa.Column('spec', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_routing_plans_publisher', 'routing_plans', ['publisher'])
    op.create_table(
        'call_routing',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('provider', sa.String(length=16), nullable=False),
        sa.Column('provider_call_id', sa.String(length=128), nullable=False),
        sa.Column('plan_id', sa.Integer(), sa.ForeignKey('routing_plans.id'), nullable=True),
        sa.Column('ivr', sa.JSON(), nullable=False),
        sa.Column('offers', sa.JSON(), nullable=False),
        sa.Column('skipped', sa.JSON(), nullable=False),
        sa.Column('buyer_id', sa.Integer(), sa.ForeignKey('buyers.id'), nullable=True),
        sa.Column('target', sa.String(length=255), nullable=True),
        sa.Column('converted', sa.Boolean(), nullable=False),
        sa.Column('revenue', sa.Numeric(12, 2), nullable=False),
        sa.Column('outcome', sa.String(length=32), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('provider', 'provider_call_id', name='uq_call_routing_call'),
    )
    op.create_index('ix_call_routing_buyer_id', 'call_routing', ['buyer_id'])
    with op.batch_alter_table('pools', schema=None) as batch_op:
        batch_op.add_column(sa.Column('routing_plan_id', sa.Integer(), nullable=True))
    with op.batch_alter_table('static_numbers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('routing_plan_id', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('static_numbers', schema=None) as batch_op:
        batch_op.drop_column('routing_plan_id')
    with op.batch_alter_table('pools', schema=None) as batch_op:
        batch_op.drop_column('routing_plan_id')
    op.drop_index('ix_call_routing_buyer_id', table_name='call_routing')
    op.drop_table('call_routing')
    op.drop_index('ix_routing_plans_publisher', table_name='routing_plans')
    op.drop_table('routing_plans')
    op.drop_index('ix_buyers_publisher', table_name='buyers')
    op.drop_table('buyers')
