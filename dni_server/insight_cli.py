"""``flask --app wsgi dni insight backfill``: analyse recordings kept before analysis ran.

Each call is claimed as the worker claims recordings (``InsightJobs.backfill_one``), so a
worker running meanwhile never analyses the same one, and the outcome is written the
worker's way: the insight, a keyword's disposition, and the call qualified again.
"""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from attribution.insight.jobs import InsightJobs
from dni_server.cli import dni, find_site

BATCH = 100


@dni.group("insight")
def insight():
    """Conversation insight on call recordings."""


@insight.command("backfill")
@click.option("--site", "site_ref", help="Only this site's calls (id or key).")
@click.option("--reanalyse", is_flag=True,
              help="Analyse every kept recording again (after a keyword list changed).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="At most this many calls.")
@click.option("--dry-run", is_flag=True, help="Count the calls only.")
@with_appcontext
def backfill(site_ref, reanalyse, limit, dry_run):
    """Analyse kept recordings that have no insight yet (CPU work: run it off-peak)."""
    app = current_app._get_current_object()
    services = app.extensions["dni"]
    site_id = find_site(site_ref).id if site_ref else None
    jobs = InsightJobs.from_settings(services.session_factory, services.settings, app.instance_path)
    done, outcomes, after = 0, {}, 0
    while limit is None or done < limit:
        batch = min(BATCH, limit - done) if limit is not None else BATCH
        ids = jobs.backfill_candidates(site_id=site_id, reanalyse=reanalyse, after_id=after,
                                       limit=batch)
        if not ids:
            break
        after = ids[-1]
        for call_id in ids:
            status = "to analyse" if dry_run else jobs.backfill_one(call_id) or "taken by a worker"
            outcomes[status] = outcomes.get(status, 0) + 1
            done += 1
            if not dry_run:
                click.echo(f"call {call_id}: {status}")
    summary = ", ".join(f"{count} {status}" for status, count in sorted(outcomes.items()))
    click.echo(f"{done} calls: {summary}" if done else "no kept recording needs analysis")
