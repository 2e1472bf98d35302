"""calls, call events, static numbers

Revision ID: 360710cd442e
Revises: 0001
Create Date: 2026-11-22 03:09:00.734292

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():

    op.create_table('static_numbers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=True),
    sa.Column('number', sa.String(length=16), nullable=False),
    sa.Column('destination', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=255), nullable=False),
    sa.Column('medium', sa.String(length=255), nullable=False),
    sa.Column('campaign', sa.String(length=255), nullable=True),
    sa.Column('label', sa.String(length=255), nullable=True),
    sa.Column('publisher', sa.String(length=200), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('record_calls', sa.Boolean(), nullable=False),
    sa.Column('qualification', sa.JSON(), nullable=False),
    sa.Column('revenue', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('payout', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('static_numbers', schema=None) as batch_op:
        batch_op.create_index('uq_static_numbers_live_number', ['number'], unique=True, sqlite_where=sa.text("status = 'active'"), postgresql_where=sa.text("status = 'active'"))

    op.create_table('calls',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('provider_call_id', sa.String(length=128), nullable=False),
    sa.Column('from_number', sa.String(length=64), nullable=False),
    sa.Column('from_valid', sa.Boolean(), nullable=False),
    sa.Column('to_number', sa.String(length=64), nullable=False),
    sa.Column('destination', sa.String(length=16), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('status_rank', sa.Integer(), nullable=False),
    sa.Column('duration', sa.Integer(), nullable=True),
    sa.Column('talk_time', sa.Boolean(), nullable=False),
    sa.Column('dial_status', sa.String(length=16), nullable=True),
    sa.Column('recording_url', sa.Text(), nullable=True),
    sa.Column('site_id', sa.Integer(), nullable=True),
    sa.Column('pool_id', sa.Integer(), nullable=True),
    sa.Column('static_number_id', sa.Integer(), nullable=True),
    sa.Column('session_id', sa.String(length=128), nullable=True),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('explanation', sa.JSON(), nullable=False),
    sa.Column('campaign', sa.String(length=255), nullable=True),
    sa.Column('label', sa.String(length=255), nullable=True),
    sa.Column('publisher', sa.String(length=200), nullable=True),
    sa.Column('caller_country', sa.String(length=2), nullable=True),
    sa.Column('caller_region', sa.String(length=64), nullable=True),
    sa.Column('caller_city', sa.String(length=128), nullable=True),
    sa.Column('repeat_caller', sa.Boolean(), nullable=False),
    sa.Column('first_call_id', sa.BigInteger(), nullable=True),
    sa.Column('first_touch', sa.JSON(), nullable=False),
    sa.Column('qualified', sa.Boolean(), nullable=False),
    sa.Column('qualification_failures', sa.JSON(), nullable=False),
    sa.Column('disposition', sa.String(length=32), nullable=True),
    sa.Column('disposition_value', sa.Numeric(precision=12, scale=2), nullable=True),
    sa.Column('revenue', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('payout', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('landing_url', sa.Text(), nullable=True),
    sa.Column('landing_path', sa.Text(), nullable=True),
    sa.Column('referrer', sa.Text(), nullable=True),
    sa.Column('referrer_domain', sa.String(length=255), nullable=True),
    sa.Column('source', sa.String(length=255), nullable=True),
    sa.Column('medium', sa.String(length=255), nullable=True),
    sa.Column('utm_source', sa.String(length=255), nullable=True),
    sa.Column('utm_medium', sa.String(length=255), nullable=True),
    sa.Column('utm_campaign', sa.String(length=255), nullable=True),
    sa.Column('utm_term', sa.String(length=255), nullable=True),
    sa.Column('utm_content', sa.String(length=255), nullable=True),
    sa.Column('utm_id', sa.String(length=255), nullable=True),
    sa.Column('utm_source_platform', sa.String(length=255), nullable=True),
    sa.Column('utm_creative_format', sa.String(length=255), nullable=True),
    sa.Column('utm_marketing_tactic', sa.String(length=255), nullable=True),
    sa.Column('gclid', sa.String(length=255), nullable=True),
    sa.Column('gbraid', sa.String(length=255), nullable=True),
    sa.Column('wbraid', sa.String(length=255), nullable=True),
    sa.Column('msclkid', sa.String(length=255), nullable=True),
    sa.Column('fbclid', sa.String(length=255), nullable=True),
    sa.Column('ttclid', sa.String(length=255), nullable=True),
    sa.Column('li_fat_id', sa.String(length=255), nullable=True),
    sa.Column('dclid', sa.String(length=255), nullable=True),
    sa.Column('click_id_at_ms', sa.BigInteger(), nullable=True),
    sa.Column('ga_client_id', sa.String(length=64), nullable=True),
    sa.Column('keyword', sa.String(length=255), nullable=True),
    sa.Column('device_type', sa.String(length=16), nullable=True),
    sa.Column('browser', sa.String(length=64), nullable=True),
    sa.Column('browser_version', sa.String(length=32), nullable=True),
    sa.Column('os', sa.String(length=64), nullable=True),
    sa.Column('os_version', sa.String(length=32), nullable=True),
    sa.Column('country', sa.String(length=2), nullable=True),
    sa.Column('region', sa.String(length=16), nullable=True),
    sa.Column('city', sa.String(length=128), nullable=True),
    sa.ForeignKeyConstraint(['pool_id'], ['pools.id'], ),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], ),
    sa.ForeignKeyConstraint(['static_number_id'], ['static_numbers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('provider', 'provider_call_id', name='uq_calls_provider_id')
    )
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index('ix_calls_caller', ['from_number', 'started_at'], unique=False)
        batch_op.create_index('ix_calls_site_started', ['site_id', 'started_at'], unique=False)
        batch_op.create_index('ix_calls_started', ['started_at'], unique=False)

    op.create_table('call_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('call_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('event_key', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('provider', 'event_key', name='uq_call_events_key')
    )
    with op.batch_alter_table('call_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_call_events_call_id'), ['call_id'], unique=False)

    with op.batch_alter_table('pools', schema=None) as batch_op:
        batch_op.add_column(sa.Column('record_calls', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('qualification', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('revenue', sa.Numeric(precision=12, scale=2), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('payout', sa.Numeric(precision=12, scale=2), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('publisher', sa.String(length=200), nullable=True))
    op.create_index('ix_static_numbers_number', 'static_numbers', ['number'])
    op.create_index('ix_pool_numbers_number', 'pool_numbers', ['number'])


def downgrade():
    op.drop_index('ix_pool_numbers_number', table_name='pool_numbers')
    op.drop_index('ix_static_numbers_number', table_name='static_numbers')

    with op.batch_alter_table('pools', schema=None) as batch_op:
        batch_op.drop_column('publisher')
        batch_op.drop_column('payout')
        batch_op.drop_column('revenue')
        batch_op.drop_column('qualification')
        batch_op.drop_column('record_calls')

    with op.batch_alter_table('call_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_call_events_call_id'))

    op.drop_table('call_events')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index('ix_calls_started')
        batch_op.drop_index('ix_calls_site_started')
        batch_op.drop_index('ix_calls_caller')

    op.drop_table('calls')
    with op.batch_alter_table('static_numbers', schema=None) as batch_op:
        batch_op.drop_index('uq_static_numbers_live_number', sqlite_where=sa.text("status = 'active'"), postgresql_where=sa.text("status = 'active'"))

    op.drop_table('static_numbers')

