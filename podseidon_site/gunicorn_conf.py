"""gunicorn settings for the web role (console, API).

Run as ``gunicorn -c python:podseidon_site.gunicorn_conf``; overridable through ``GUNICORN_*``
environment variables. Metrics are aggregated across workers (see podseidon_site/metrics.py) and
served at /metrics and on the metrics port.
"""

import os

from podseidon_site import gunicorn_common as common

_config = common.load_or_exit()
os.environ.setdefault("PODSEIDON_ROLE", "web")
common.use_multiprocess_metrics("web")

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

on_starting = common.on_starting
child_exit = common.child_exit


def when_ready(server) -> None:
    common.start_metrics_server(common.metrics_port(_config))
