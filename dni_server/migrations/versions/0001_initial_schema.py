"""initial schema

Revision ID: 5d65da15fde6
Revises: 
Create Date: 2026-11-22 02:44:22.710879

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():

    op.create_table('page_views',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('session_id', sa.String(length=128), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('path', sa.Text(), nullable=True),
    sa.Column('viewed_at_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('session_id', 'viewed_at_ms', 'url', name='uq_page_views')
    )
    with op.batch_alter_table('page_views', schema=None) as batch_op:
        batch_op.create_index('ix_page_views_session', ['session_id', 'viewed_at_ms'], unique=False)

    op.create_table('sites',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('domains', sa.JSON(), nullable=False),
    sa.Column('keyword_params', sa.JSON(), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    op.create_table('pools',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('target', sa.String(length=16), nullable=False),
    sa.Column('destination', sa.String(length=16), nullable=False),
    sa.Column('fallback', sa.String(length=16), nullable=False),
    sa.Column('lease_seconds', sa.Integer(), nullable=False),
    sa.Column('max_lease_seconds', sa.Integer(), nullable=False),
    sa.Column('cooldown_seconds', sa.Integer(), nullable=False),
    sa.Column('attribution_window_seconds', sa.Integer(), nullable=False),
    sa.Column('exhaustion_policy', sa.String(length=16), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('rules', sa.JSON(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('pools', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pools_site_id'), ['site_id'], unique=False)

    op.create_table('visits',
    sa.Column('session_id', sa.String(length=128), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('visitor_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
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
    sa.Column('user_agent', sa.Text(), nullable=True),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.Column('country', sa.String(length=2), nullable=True),
    sa.Column('region', sa.String(length=16), nullable=True),
    sa.Column('city', sa.String(length=128), nullable=True),
    sa.Column('fallback_reason', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], ),
    sa.PrimaryKeyConstraint('session_id')
    )
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.create_index('ix_visits_site_created', ['site_id', 'created_at'], unique=False)
        batch_op.create_index('ix_visits_visitor', ['visitor_id'], unique=False)

    op.create_table('leases',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('pool_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=16), nullable=False),
    sa.Column('session_id', sa.String(length=128), nullable=False),
    sa.Column('started_at_ms', sa.BigInteger(), nullable=False),
    sa.Column('last_renewed_at_ms', sa.BigInteger(), nullable=False),
    sa.Column('expires_at_ms', sa.BigInteger(), nullable=False),
    sa.Column('ended_at_ms', sa.BigInteger(), nullable=True),
    sa.Column('end_reason', sa.String(length=16), nullable=True),
    sa.ForeignKeyConstraint(['pool_id'], ['pools.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('pool_id', 'number', 'started_at_ms', 'session_id', name='uq_leases_start')
    )
    with op.batch_alter_table('leases', schema=None) as batch_op:
        batch_op.create_index('ix_leases_number_start', ['number', 'started_at_ms'], unique=False)
        batch_op.create_index('ix_leases_pool_open', ['pool_id', 'ended_at_ms'], unique=False)
        batch_op.create_index('ix_leases_session', ['session_id'], unique=False)

    op.create_table('pool_exhaustions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('pool_id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.String(length=128), nullable=False),
    sa.Column('at_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['pool_id'], ['pools.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('pool_id', 'session_id', 'at_ms', name='uq_pool_exhaustions')
    )
    with op.batch_alter_table('pool_exhaustions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pool_exhaustions_pool_id'), ['pool_id'], unique=False)

    op.create_table('pool_numbers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pool_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['pool_id'], ['pools.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('pool_numbers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pool_numbers_pool_id'), ['pool_id'], unique=False)
        batch_op.create_index('uq_pool_numbers_live_number', ['number'], unique=True, sqlite_where=sa.text("status != 'retired'"), postgresql_where=sa.text("status != 'retired'"))




def downgrade():

    with op.batch_alter_table('pool_numbers', schema=None) as batch_op:
        batch_op.drop_index('uq_pool_numbers_live_number', sqlite_where=sa.text("status != 'retired'"), postgresql_where=sa.text("status != 'retired'"))
        batch_op.drop_index(batch_op.f('ix_pool_numbers_pool_id'))

    op.drop_table('pool_numbers')
    with op.batch_alter_table('pool_exhaustions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pool_exhaustions_pool_id'))

    op.drop_table('pool_exhaustions')
    with op.batch_alter_table('leases', schema=None) as batch_op:
        batch_op.drop_index('ix_leases_session')
        batch_op.drop_index('ix_leases_pool_open')
        batch_op.drop_index('ix_leases_number_start')

    op.drop_table('leases')
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.drop_index('ix_visits_visitor')
        batch_op.drop_index('ix_visits_site_created')

    op.drop_table('visits')
    with op.batch_alter_table('pools', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pools_site_id'))

    op.drop_table('pools')
    op.drop_table('sites')
    with op.batch_alter_table('page_views', schema=None) as batch_op:
        batch_op.drop_index('ix_page_views_session')

    op.drop_table('page_views')

