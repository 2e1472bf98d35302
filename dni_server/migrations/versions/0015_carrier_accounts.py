"""carrier accounts, provision orders, provisioned numbers

Revision ID: 0015
Revises: 0014

``carrier_accounts`` keeps the Twilio and Telnyx accounts numbers are bought from (secrets
sealed, ``attribution.conversions.credentials``); ``provision_orders`` one purchase request
per idempotency key; ``provisioned_numbers`` each number bought through them, with its
account, order, carrier ids, state (buying, bought, added, failed, quarantined, released)
and when it changed (``attribution.numbers.models``).
"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    op.create_table(
        'carrier_accounts',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('name', sa.String(100), nullable=False, unique=True),
        sa.Column('carrier', sa.String(16), nullable=False),
        sa.Column('credentials', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        'provision_orders',
        sa.Column('id', BIGINT, primary_key=True),
        sa.Column('request_key', sa.String(128), nullable=False, unique=True),
        sa.Column('pool_id', sa.Integer(), sa.ForeignKey('pools.id'), nullable=False),
        sa.Column('account_id', sa.Integer(), sa.ForeignKey('carrier_accounts.id'),
                  nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('params', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index('ix_provision_orders_pool_id', 'provision_orders', ['pool_id'])
    op.create_index('ix_provision_orders_account_id', 'provision_orders', ['account_id'])
    op.create_table(
        'provisioned_numbers',
        sa.Column('id', BIGINT, primary_key=True),
        sa.Column('account_id', sa.Integer(), sa.ForeignKey('carrier_accounts.id'),
                  nullable=False),
        sa.Column('order_id', BIGINT, sa.ForeignKey('provision_orders.id'), nullable=True),
        sa.Column('pool_id', sa.Integer(), sa.ForeignKey('pools.id'), nullable=True),
        sa.Column('number', sa.String(16), nullable=False),
        sa.Column('state', sa.String(16), nullable=False),
        sa.Column('carrier_ref', sa.String(64), nullable=True),
        sa.Column('carrier_order', sa.String(64), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('bought_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('added_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('quarantined_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('release_after', sa.DateTime(timezone=True), nullable=True),
        sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index('ix_provisioned_numbers_account_id', 'provisioned_numbers', ['account_id'])
    op.create_index('ix_provisioned_numbers_order_id', 'provisioned_numbers', ['order_id'])
    op.create_index('ix_provisioned_numbers_state', 'provisioned_numbers',
                    ['state', 'release_after'])
    op.create_index('ix_provisioned_numbers_number', 'provisioned_numbers', ['number'])


def downgrade():
    op.drop_index('ix_provisioned_numbers_number', table_name='provisioned_numbers')
    op.drop_index('ix_provisioned_numbers_state', table_name='provisioned_numbers')
    op.drop_index('ix_provisioned_numbers_order_id', table_name='provisioned_numbers')
    op.drop_index('ix_provisioned_numbers_account_id', table_name='provisioned_numbers')
    op.drop_table('provisioned_numbers')
    op.drop_index('ix_provision_orders_account_id', table_name='provision_orders')
    op.drop_index('ix_provision_orders_pool_id', table_name='provision_orders')
    op.drop_table('provision_orders')
    op.drop_table('carrier_accounts')
