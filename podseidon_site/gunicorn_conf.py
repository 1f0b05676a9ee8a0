"""gunicorn settings for the web role (console, API).

Run as ``gunicorn -c python:podseidon_site.gunicorn_conf``.

Overridable through ``GUNICORN_*`` environment variables. Metrics are aggregated across workers
(see podseidon_site/metrics.py) and served at /metrics and on the metrics port.
"""

import os
import sys
import tempfile

from podseidon_site.config import ConfigError, load_config

try:
    _config = load_config()
except ConfigError as error:
    sys.stderr.write(f"podseidon: invalid configuration: {error}\n")
    raise SystemExit(2) from None

os.environ.setdefault("PODSEIDON_ROLE", "web")
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    os.path.join(tempfile.gettempdir(), f"podseidon-web-metrics-{os.getpid()}"),
)

wsgi_app = "podseidon_site.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000").split(",")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 10
accesslog = "-"
errorlog = "-"
# Path without the query string: tokens must never reach the logs.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss'
metrics_port = int(os.environ.get("PODSEIDON_METRICS_PORT", str(_config.metrics.port)))


def on_starting(server) -> None:
    from podseidon_site.metrics import prepare_multiprocess_dir

    prepare_multiprocess_dir(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def when_ready(server) -> None:
    if metrics_port:
        from podseidon_site.metrics import start_metrics_server

        start_metrics_server(metrics_port)


def child_exit(server, worker) -> None:
    from podseidon_site.metrics import worker_exited

    worker_exited(worker.pid)
