"""gunicorn settings for the web tier: ``gunicorn -c python:podseidon_site.gunicorn_conf``.

Everything is overridable through ``GUNICORN_*`` environment variables so the same image serves
the console/API and (later) the TLS webhook listener.
"""

import os

wsgi_app = "podseidon_site.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000").split(",")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 10
accesslog = "-"
errorlog = "-"
# Keep request lines out of the access log's query string: tokens must never reach logs.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss'
