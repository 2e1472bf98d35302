"""The demo site, seeded on an empty database so a newcomer can watch a number swap."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dni_server.timefmt import now_ms
from pools import catalog
from pools.leases import PoolService
from pools.models import Site

DEMO_SITE_NAME = "Demo site"
DEMO_TARGET = "+18005550100"
DEMO_DESTINATION = "+12125550199"
# US 555-01XX numbers are reserved as fictional and valid to phonenumbers.
DEMO_NUMBERS = [f"+1650555{n:04d}" for n in range(101, 111)]


def demo_site(db: Session) -> Site | None:
    return db.scalar(select(Site).where(Site.name == DEMO_SITE_NAME).order_by(Site.id).limit(1))


def ensure_demo_site(db: Session, pools: PoolService) -> Site | None:
    """Create the demo site and pool if the database has no site at all."""
    if db.scalar(select(func.count()).select_from(Site)):
        return demo_site(db)
    site = catalog.create_site(db, name=DEMO_SITE_NAME, domains=["localhost", "127.0.0.1"])
    catalog.create_pool(
        db, pools, site, name="Demo pool", target=DEMO_TARGET, destination=DEMO_DESTINATION,
        numbers=DEMO_NUMBERS, lease_seconds=300, cooldown_seconds=30, now_ms=now_ms())
    db.commit()
    return site
