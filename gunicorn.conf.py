"""gunicorn settings, read by `gunicorn wsgi:app` (bind and workers from the environment).

On the embedded default (no REDIS_URL) the master starts the embedded Redis once, applies
the migrations and seeds the demo site before forking, so the workers share them.
"""

import os
import shutil
import sys
import tempfile

bind = os.environ.get("DNI_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads (gunicorn's gthread worker when above 1): a long report holds one thread, not
# a whole worker, so heartbeats and call webhooks keep being answered meanwhile.
threads = int(os.environ.get("DNI_THREADS", "4"))
timeout = 30
graceful_timeout = 10
# Recycling workers costs a full app import each time (about 2 s of CPU); off unless asked.
max_requests = int(os.environ.get("DNI_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
errorlog = "-"
# The app logs one line per request itself (with its request id); gunicorn's access log
# duplicates it, so it is off unless asked for, and then in the same format.
accesslog = os.environ.get("DNI_ACCESS_LOG") or None  # "-" for stdout; off by default
loglevel = os.environ.get("DNI_LOG_LEVEL", "info")
os.environ.setdefault("DNI_LOG_FORMAT", "json")  # the app and gunicorn's own lines
logger_class = "dni_server.logs.GunicornLogger"

# Prometheus: the workers share counters through files in one directory per instance, set
# before anything imports prometheus_client. A directory given in the environment is
# emptied at start (stale files would add old counts), one made here is removed at exit.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="dni-metrics-")
    os.environ["DNI_METRICS_DIR_OWNED"] = "1"
METRICS_DIR = os.environ["PROMETHEUS_MULTIPROC_DIR"]


def clear_metrics_dir():
    os.makedirs(METRICS_DIR, exist_ok=True)
    for name in os.listdir(METRICS_DIR):
        if name.endswith(".db"):
            os.remove(os.path.join(METRICS_DIR, name))


def post_worker_init(worker):
    """Build the user-agent parser before the first request (about 0.1 s, else the first
    new visitor of every worker waits for it), then move everything the app import made
    (~160,000 objects) out of the garbage collector's reach: they live as long as the
    worker, yet each full collection walked all of them (tens of ms every few thousand
    requests, and a cold cache after it)."""
    import gc

    from attribution import devices

    devices.warm_up()
    gc.collect()
    gc.freeze()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # drops its live gauges, keeps its counts


def on_exit(server):
    if os.environ.get("DNI_METRICS_DIR_OWNED") == "1":
        shutil.rmtree(METRICS_DIR, ignore_errors=True)


def banner_token(token):
    """The admin token as the start banner shows it: only one generated into the instance
    folder; one an operator set stays out of terminals and log collectors."""
    if os.environ.get("DNI_ADMIN_TOKEN", "").strip():
        return "(from DNI_ADMIN_TOKEN)"
    return token or "(none: set DNI_ADMIN_TOKEN)"


def on_starting(server):
    clear_metrics_dir()
    if os.environ.get("REDIS_URL"):
        return
    from dni_server import create_app
    from dni_server.embedded import embedded_redis_url

    # Preparing an app here runs the migrations and seeds the demo site once.
    app = create_app({**os.environ, "DNI_WORKER": "false"})
    os.environ["REDIS_URL"] = embedded_redis_url(app.instance_path)
    os.environ.setdefault("DNI_WORKER", "true")  # the embedded default records in-process
    os.environ.setdefault("DNI_INSTANCE_PATH", app.instance_path)
    host, _, port = bind.rpartition(":")
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "") else host
    # For the person who typed `make run`: plain text, even when the logs are JSON.
    print(
        f"\n  DNI service on http://{shown}:{port}\n"
        f"  demo page:   http://{shown}:{port}/demo\n"
        f"  admin token: {banner_token(app.extensions['dni'].settings.admin_token)}\n"
        f"  data:        {app.instance_path}\n",
        file=sys.stderr, flush=True,
    )
