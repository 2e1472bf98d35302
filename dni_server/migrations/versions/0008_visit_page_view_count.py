"""visit page view count: page views seen, stored or not

Revision ID: 0008
Revises: 0007

A session stores at most 200 page views (pools.leases.MAX_PAGE_VIEWS); later ones are
only counted, here.
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.add_column(sa.Column('page_view_count', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.drop_column('page_view_count')
