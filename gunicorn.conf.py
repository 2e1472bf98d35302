"""gunicorn settings, read by `gunicorn wsgi:app` (bind and workers from the environment).

On the embedded default (no REDIS_URL) the master starts the embedded Redis once, applies
the migrations and seeds the demo site before forking, so the workers share them.
"""

import os
import sys

bind = os.environ.get("DNI_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("DNI_THREADS", "1"))
timeout = 30
graceful_timeout = 10
# Recycling workers costs a full app import each time (about 2 s of CPU); off unless asked.
max_requests = int(os.environ.get("DNI_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
errorlog = "-"
accesslog = os.environ.get("DNI_ACCESS_LOG") or None  # "-" for stdout; off by default
loglevel = os.environ.get("DNI_LOG_LEVEL", "info")


def on_starting(server):
    if os.environ.get("REDIS_URL"):
        return
    from dni_server import create_app
    from dni_server.embedded import embedded_redis_url

    # Preparing an app here runs the migrations and seeds the demo site once.
    app = create_app({**os.environ, "DNI_WORKER": "false"})
    os.environ["REDIS_URL"] = embedded_redis_url(app.instance_path)
    os.environ.setdefault("DNI_WORKER", "true")  # the embedded default records in-process
    os.environ.setdefault("DNI_INSTANCE_PATH", app.instance_path)
    token = app.extensions["dni"].settings.admin_token
    host, _, port = bind.rpartition(":")
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "") else host
    print(
        f"\n  DNI service on http://{shown}:{port}\n"
        f"  demo page:   http://{shown}:{port}/demo\n"
        f"  admin token: {token}\n"
        f"  data:        {app.instance_path}\n",
        file=sys.stderr, flush=True,
    )
