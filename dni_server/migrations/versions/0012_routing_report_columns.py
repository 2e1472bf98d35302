"""routing report columns: each routing log's site, local day and publisher, and its offers as rows

Revision ID: 0012
Revises: 0011

``call_routing.site_id``, ``local_day`` and ``publisher`` copy the call's (``calls``), so
the pay-per-call report filters routing logs by day and site on their own table; and
``call_routing_offers`` holds each log's ``offers`` a row each, so the report counts offers
without parsing every log's JSON (``routing.reports``). Both are written with the log
(``routing.calls.record``); here they are backfilled.
"""
import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

COPIED = ('site_id', 'local_day', 'publisher')
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    with op.batch_alter_table('call_routing', schema=None) as batch_op:
        batch_op.add_column(sa.Column('site_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('local_day', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('publisher', sa.String(length=200), nullable=True))
    # One statement, correlated on the calls' unique (provider, provider_call_id).
    sets = ', '.join(
        f'{name} = (SELECT calls.{name} FROM calls WHERE calls.provider = '
        'call_routing.provider AND calls.provider_call_id = call_routing.provider_call_id)'
        for name in COPIED)
    op.execute(f'UPDATE call_routing SET {sets}')
    op.create_index('ix_call_routing_report', 'call_routing',
                    ['local_day', 'site_id', 'publisher', 'plan_id'])
    op.create_table(
        'call_routing_offers',
        sa.Column('id', ROW_ID, nullable=False),
        sa.Column('routing_id', ROW_ID, sa.ForeignKey('call_routing.id', ondelete='CASCADE'),
                  nullable=False),
        sa.Column('buyer_id', sa.Integer(), nullable=True),
        sa.Column('target', sa.String(length=255), nullable=True),
        sa.Column('outcome', sa.String(length=32), nullable=True),
        sa.Column('ring_seconds', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_call_routing_offers_routing_id', 'call_routing_offers', ['routing_id'])
    if op.get_bind().dialect.name == 'postgresql':
        offers = ('json_to_recordset(call_routing.offers) AS o(buyer integer, target text, '
                  'outcome text, ring_seconds double precision)')
        fields = 'o.buyer, o.target, o.outcome, o.ring_seconds'
    else:
        offers = 'json_each(call_routing.offers) AS o'
        fields = ', '.join(f"json_extract(o.value, '$.{name}')"
                           for name in ('buyer', 'target', 'outcome', 'ring_seconds'))
    op.execute('INSERT INTO call_routing_offers (routing_id, buyer_id, target, outcome, '
               f'ring_seconds) SELECT call_routing.id, {fields} FROM call_routing, {offers}')


def downgrade():
    op.drop_index('ix_call_routing_offers_routing_id', table_name='call_routing_offers')
    op.drop_table('call_routing_offers')
    op.drop_index('ix_call_routing_report', table_name='call_routing')
    with op.batch_alter_table('call_routing', schema=None) as batch_op:
        batch_op.drop_column('publisher')
        batch_op.drop_column('local_day')
        batch_op.drop_column('site_id')
