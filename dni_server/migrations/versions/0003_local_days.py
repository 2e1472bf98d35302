"""local days for reports

Revision ID: 37a763586bd4
Revises: 0002
Create Date: 2026-11-22 03:39:52.951651

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():

    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('local_day', sa.Date(), nullable=True))
        batch_op.create_index('ix_calls_day', ['local_day'], unique=False)
        batch_op.create_index('ix_calls_site_day', ['site_id', 'local_day'], unique=False)

    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.add_column(sa.Column('local_day', sa.Date(), nullable=True))
        batch_op.create_index('ix_visits_site_day', ['site_id', 'local_day'], unique=False)
    backfill_local_days()


def backfill_local_days():
    """Give rows written before this revision their local day in their site's zone."""
    import datetime
    import zoneinfo

    bind = op.get_bind()
    zones = {sid: tz for sid, tz in bind.execute(sa.text("SELECT id, timezone FROM sites"))}

    def day(moment, zone_name):
        if moment is None:
            return None
        if isinstance(moment, str):  # SQLite hands back text
            moment = datetime.datetime.fromisoformat(moment)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zoneinfo.ZoneInfo("UTC"))
        return moment.astimezone(zoneinfo.ZoneInfo(zone_name or "UTC")).date()

    for table, key, stamp in (("calls", "id", "started_at"), ("visits", "session_id",
                                                              "created_at")):
        rows = bind.execute(sa.text(f"SELECT {key}, site_id, {stamp} FROM {table}")).all()
        for row_key, site_id, moment in rows:
            bind.execute(sa.text(f"UPDATE {table} SET local_day = :day WHERE {key} = :key"),
                         {"day": day(moment, zones.get(site_id)), "key": row_key})


def downgrade():

    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.drop_index('ix_visits_site_day')
        batch_op.drop_column('local_day')

    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index('ix_calls_site_day')
        batch_op.drop_index('ix_calls_day')
        batch_op.drop_column('local_day')


