"""offline conversions: rules, destinations, outbox, delivery log

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    op.create_table(
        'conversion_destinations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('config', sa.JSON(), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('managed_by', sa.String(length=8), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['site_id'], ['sites.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('site_id', 'name', name='uq_conversion_destinations_name'),
    )
    op.create_index('ix_conversion_destinations_site_id', 'conversion_destinations',
                    ['site_id'])
    op.create_table(
        'conversion_rules',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=False),
        sa.Column('pool_id', sa.Integer(), nullable=True),
        sa.Column('qualified_only', sa.Boolean(), nullable=False),
        sa.Column('min_duration', sa.Integer(), nullable=True),
        sa.Column('dispositions_included', sa.JSON(), nullable=False),
        sa.Column('dispositions_excluded', sa.JSON(), nullable=False),
        sa.Column('value_source', sa.String(length=16), nullable=False),
        sa.Column('value', sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('unknown_consent', sa.String(length=8), nullable=False),
        sa.Column('actions', sa.JSON(), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('managed_by', sa.String(length=8), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['pool_id'], ['pools.id']),
        sa.ForeignKeyConstraint(['site_id'], ['sites.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_conversion_rules_site_pool', 'conversion_rules', ['site_id', 'pool_id'])
    op.create_table(
        'conversion_deliveries',
        sa.Column('id', BIGINT, nullable=False),
        sa.Column('call_id', BIGINT, nullable=False),
        sa.Column('destination_id', sa.Integer(), nullable=False),
        sa.Column('rule_id', sa.Integer(), nullable=True),
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('value', sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('consent', sa.Boolean(), nullable=False),
        sa.Column('status', sa.String(length=24), nullable=False),
        sa.Column('operation', sa.String(length=16), nullable=False),
        sa.Column('wanted', sa.Boolean(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('claim_token', sa.String(length=32), nullable=True),
        sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('retracted_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['call_id'], ['calls.id']),
        sa.ForeignKeyConstraint(['destination_id'], ['conversion_destinations.id']),
        sa.ForeignKeyConstraint(['rule_id'], ['conversion_rules.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('call_id', 'destination_id',
                            name='uq_conversion_deliveries_call_dest'),
    )
    op.create_index('ix_conversion_deliveries_call_id', 'conversion_deliveries', ['call_id'])
    op.create_index('ix_conversion_deliveries_destination_id', 'conversion_deliveries',
                    ['destination_id'])
    op.create_index('ix_conversion_deliveries_due', 'conversion_deliveries',
                    ['status', 'next_attempt_at'])
    op.create_index('ix_conversion_deliveries_claim', 'conversion_deliveries', ['claim_token'])
    op.create_table(
        'conversion_attempts',
        sa.Column('id', BIGINT, nullable=False),
        sa.Column('delivery_id', BIGINT, nullable=False),
        sa.Column('operation', sa.String(length=16), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('detail', sa.Text(), nullable=True),
        sa.Column('request', sa.JSON(), nullable=False),
        sa.Column('response', sa.JSON(), nullable=False),
        sa.Column('http_status', sa.Integer(), nullable=True),
        sa.Column('elapsed_ms', sa.Integer(), nullable=True),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['delivery_id'], ['conversion_deliveries.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_conversion_attempts_delivery_id', 'conversion_attempts',
                    ['delivery_id'])


def downgrade():
    op.drop_table('conversion_attempts')
    op.drop_table('conversion_deliveries')
    op.drop_table('conversion_rules')
    op.drop_table('conversion_destinations')
