"""visit ad identifiers: GA session id, fbp and ad consent on visits and calls

Revision ID: 0005
Revises: 0004

``ga_client_id`` and ``click_id_at_ms`` (when the click id was first seen, for Meta's fbc)
exist since 0001; this adds what the snippet now captures beside them.
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

TABLES = ('visits', 'calls')


def upgrade():
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('ga_session_id', sa.String(length=32), nullable=True))
            batch_op.add_column(sa.Column('fbp', sa.String(length=255), nullable=True))
            batch_op.add_column(sa.Column('ad_consent', sa.Boolean(), nullable=True))
    # The recorder sets ad ids learnt later on the calls already matched to the session.
    op.create_index('ix_calls_session', 'calls', ['session_id'])


def downgrade():
    op.drop_index('ix_calls_session', table_name='calls')
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('ad_consent')
            batch_op.drop_column('fbp')
            batch_op.drop_column('ga_session_id')
