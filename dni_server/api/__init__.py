"""HTTP blueprints: the public snippet API, the admin API, and (later) carrier webhooks."""
