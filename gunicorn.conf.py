"""Gunicorn settings for production, every one overridable from the environment.

`gunicorn wsgi:app` reads this file from the working folder by itself.
"""

import multiprocessing
import os
import shutil
import tempfile

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
# A sync worker is held by a client as long as it takes to send its body: run behind a proxy
# that buffers bodies whole (deploy/nginx-receiver.conf; tests/e2e/test_slow_clients.py).
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
# Segment waits 5 s for an answer; a worker stuck far longer than that is recycled.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "0"))
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = os.environ.get("GUNICORN_ERROR_LOG", "-")
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# The access log prints the path and the Basic-auth user: both carry the API key.
logger_class = "receiver.logs.RedactingGunicornLogger"
# The path without its query string: /admin/leads?email=... would put an email in the log.
# With LOG_FORMAT=json the logger class writes its own fields instead (receiver/logs.py).
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s" %({x-request-id}o)s'
# Several instances on one host would share the default control socket path: opt in with a path.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "")
control_socket_disable = not control_socket

# GET /metrics sums every worker's values, which prometheus_client keeps in files of this
# folder: a temporary one unless set, emptied at start (a dead server's values would add up).
_created_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _created_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="receiver-metrics-")
_metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
os.makedirs(_metrics_dir, exist_ok=True)
for _name in os.listdir(_metrics_dir):
    if _name.endswith(".db"):
        os.remove(os.path.join(_metrics_dir, _name))


def child_exit(server, worker):
    """A dead worker's gauges stop counting as live; its counters stay in the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _metrics_dir)


def on_exit(server):
    if _created_metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)


def post_worker_init(worker):
    """Each worker process runs one backfill thread (receiver/rules/worker.py): started here,
    after the fork, so that backfills left by a crash resume without a request."""
    from receiver.rules import worker as backfills

    backfills.start_for(worker.wsgi)


def worker_exit(server, worker):
    """A backfill this worker was running is handed back as pending, for another to take up
    at once rather than once its heartbeat is stale."""
    from receiver.rules import worker as backfills

    backfills.stop_all(timeout=5)
