"""Shared fixtures (redis_client, make_app, app, client, admin, live_service, geoip_db) live in
the repository's root conftest.py, so that snippet/tests can use them too."""
