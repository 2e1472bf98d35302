"""conversion rules that fire on a pay-per-call buyer's conversion

Revision ID: 0011
Revises: 0010

``conversion_rules.buyer_converted_only``: the rule's calls count only once a buyer
converted them (``attribution.conversions.rules``).
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('conversion_rules', schema=None) as batch_op:
        batch_op.add_column(sa.Column('buyer_converted_only', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade():
    with op.batch_alter_table('conversion_rules', schema=None) as batch_op:
        batch_op.drop_column('buyer_converted_only')
