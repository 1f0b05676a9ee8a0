"""gunicorn settings for the webhook role: ``gunicorn -c python:podseidon_site.gunicorn_webhook``.

HTTPS only (kube-apiserver refuses plain HTTP webhooks), on ``webhook.port`` (8843), with the
certificate and key from the config. Threads matter: concurrent reviews for one PodProtector in
one worker share a status write, which needs them to be in flight together.
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

if not (_config.webhook.tls.cert_file and _config.webhook.tls.key_file):
    sys.stderr.write("podseidon: the webhook needs webhook.tls.cert_file and key_file\n")
    raise SystemExit(2)

os.environ["PODSEIDON_ROLE"] = "webhook"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "podseidon_site.settings.production")
# Must be set before prometheus_client is imported anywhere, master or worker.
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    os.path.join(tempfile.gettempdir(), f"podseidon-webhook-metrics-{os.getpid()}"),
)

wsgi_app = "podseidon_site.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{_config.webhook.port}").split(",")
certfile = _config.webhook.tls.cert_file
keyfile = _config.webhook.tls.key_file
workers = int(os.environ.get("GUNICORN_WORKERS", "3"))
threads = int(os.environ.get("GUNICORN_THREADS", "16"))
worker_class = "gthread"
timeout = 60
graceful_timeout = 15
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG", "") == "1" else None
errorlog = "-"
metrics_port = int(os.environ.get("PODSEIDON_METRICS_PORT", str(_config.metrics.port)))


def on_starting(server) -> None:
    from podseidon_site.metrics import prepare_multiprocess_dir

    prepare_multiprocess_dir(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def when_ready(server) -> None:
    if metrics_port:
        from podseidon_site.metrics import start_metrics_server

        start_metrics_server(metrics_port)


def post_worker_init(worker) -> None:
    # Start the PodProtector cache now rather than on the first review, so /readyz turns
    # green before kube-apiserver sends anything.
    from webhook.runtime import get_runtime

    get_runtime()


def child_exit(server, worker) -> None:
    from podseidon_site.metrics import worker_exited

    worker_exited(worker.pid)
