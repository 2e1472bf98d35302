"""call insight: each call's recording fetched, kept and analysed; per-site keywords

Revision ID: 0010
Revises: 0009

Calls gain the recording's local copy (``recording_path``, a key in the recording store),
its state (``recording_status``: pending, fetching, fetched, failed, deleted; null until a
recording is announced), the worker's attempts, next try, claim and last error, and the
analysis (``insight``). Sites gain their keyword list and how many days recordings are kept.
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('insight', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('recording_path', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('recording_status', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('recording_attempts', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('recording_next_try_at', sa.DateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('recording_claim', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('recording_error', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('recording_fetched_at', sa.DateTime(timezone=True),
                                      nullable=True))
    # The worker's question: which recordings are due (status first, then time).
    op.create_index('ix_calls_recording_due', 'calls',
                    ['recording_status', 'recording_next_try_at'])
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.add_column(sa.Column('insight_keywords', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('recording_retention_days', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.drop_column('recording_retention_days')
        batch_op.drop_column('insight_keywords')
    op.drop_index('ix_calls_recording_due', table_name='calls')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        for name in ('recording_fetched_at', 'recording_error', 'recording_claim',
                     'recording_next_try_at', 'recording_attempts', 'recording_status',
                     'recording_path', 'insight'):
            batch_op.drop_column(name)
