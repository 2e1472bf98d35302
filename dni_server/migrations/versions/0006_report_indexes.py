"""indexes for the attribution report

Covering indexes, so a report over a million calls reads narrow index entries in the order
it groups them instead of the wide call rows: by source and medium, by day, and every
caller in a date range (unique callers). ix_calls_day is a prefix of ix_calls_report_day.

Revision ID: 0006
Revises: 0005
"""
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

REPORT_COLUMNS = ['site_id', 'pool_id', 'qualified', 'repeat_caller', 'answered_at',
                  'duration', 'revenue', 'payout']
CALL_INDEXES = {
    'ix_calls_report_source': ['source', 'medium', 'from_number', 'local_day', *REPORT_COLUMNS],
    'ix_calls_report_day': ['local_day', 'from_number', 'source', 'medium', *REPORT_COLUMNS],
    'ix_calls_report_caller': ['from_number', 'local_day', 'site_id', 'pool_id', 'qualified',
                               'repeat_caller'],
}
VISIT_INDEXES = {
    'ix_visits_report_source': ['source', 'medium', 'local_day', 'site_id'],
    'ix_visits_report_day': ['local_day', 'source', 'medium', 'site_id'],
}


def upgrade():
    for name, columns in CALL_INDEXES.items():
        op.create_index(name, 'calls', columns)
    op.drop_index('ix_calls_day', table_name='calls')
    for name, columns in VISIT_INDEXES.items():
        op.create_index(name, 'visits', columns)


def downgrade():
    for name in VISIT_INDEXES:
        op.drop_index(name, table_name='visits')
    op.create_index('ix_calls_day', 'calls', ['local_day'])
    for name in CALL_INDEXES:
        op.drop_index(name, table_name='calls')
