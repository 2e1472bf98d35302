"""fraud signals on calls, the block list and per-site fraud policies

Revision ID: 0013
Revises: 0012

Calls gain their fraud signals (with the score's named contributions), risk score, the
action taken before ringing and the review of a held call; ``block_list`` keeps numbers and
prefixes kept out (network-wide or per site, with who added them and until when);
``fraud_policies`` keeps each site's thresholds (``attribution.fraud``).
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

CALL_COLUMNS = (
    ('fraud_signals', sa.JSON()),
    ('risk_score', sa.Integer()),
    ('fraud_action', sa.String(24)),
    ('review_state', sa.String(16)),
    ('review_reason', sa.Text()),
    ('reviewed_by', sa.String(200)),
    ('reviewed_at', sa.DateTime(timezone=True)),
)


def upgrade():
    with op.batch_alter_table('calls', schema=None) as batch_op:
        for name, kind in CALL_COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))
        batch_op.create_index('ix_calls_review', ['review_state', 'started_at'])
    op.create_table(
        'block_list',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), primary_key=True),
        sa.Column('value', sa.String(20), nullable=False),
        sa.Column('kind', sa.String(8), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('site_id', sa.Integer(), sa.ForeignKey('sites.id'), nullable=True),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('added_by', sa.String(200), nullable=False),
        sa.Column('source', sa.String(16), nullable=False),
        sa.Column('call_id', sa.BigInteger(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index('ix_block_list_value', 'block_list', ['value'])
    op.create_index('ix_block_list_site', 'block_list', ['site_id'])
    op.create_table(
        'fraud_policies',
        sa.Column('site_id', sa.Integer(), sa.ForeignKey('sites.id'), primary_key=True),
        sa.Column('settings', sa.JSON(), nullable=False),
        sa.Column('updated_by', sa.String(200), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    )


def downgrade():
    op.drop_table('fraud_policies')
    op.drop_index('ix_block_list_site', table_name='block_list')
    op.drop_index('ix_block_list_value', table_name='block_list')
    op.drop_table('block_list')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index('ix_calls_review')
        for name, _kind in reversed(CALL_COLUMNS):
            batch_op.drop_column(name)
