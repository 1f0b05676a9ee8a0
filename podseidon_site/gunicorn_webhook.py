"""gunicorn settings for the webhook role: ``gunicorn -c python:podseidon_site.gunicorn_webhook``.

HTTPS only (kube-apiserver refuses plain HTTP webhooks), on ``webhook.port`` (8843), with the
certificate and key from the config. Threads matter: concurrent reviews for one PodProtector in
one worker share a status write, which needs them to be in flight together.

With ``webhook.tls.client_ca_file`` the handshake asks every caller for a client certificate and
refuses one that CA did not sign. Callers without one get through the handshake only while
``probes_without_client_cert`` is on, and then only to the probes: webhook/client_auth.py
answers 403 everywhere else (kubelet's HTTPS probes cannot present a certificate).
"""

import os
import ssl
import sys

from podseidon_site import gunicorn_common as common

_config = common.load_or_exit()
if not (_config.webhook.tls.cert_file and _config.webhook.tls.key_file):
    sys.stderr.write("podseidon: the webhook needs webhook.tls.cert_file and key_file\n")
    raise SystemExit(2)
common.check_client_ca_or_exit(_config)

os.environ["PODSEIDON_ROLE"] = "webhook"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "podseidon_site.settings.production")
common.use_multiprocess_metrics("webhook")

wsgi_app = "webhook.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{_config.webhook.port}").split(",")
certfile = _config.webhook.tls.cert_file
keyfile = _config.webhook.tls.key_file
if _config.webhook.tls.client_ca_file:
    ca_certs = _config.webhook.tls.client_ca_file
    cert_reqs = (
        ssl.CERT_OPTIONAL if _config.webhook.tls.probes_without_client_cert else ssl.CERT_REQUIRED
    )
# Two processes serve 3,000-4,000 reviews/s on 2 CPUs, as three did; every process batches
# status writes on its own and decodes every PodProtector watch event, so fewer processes
# share more writes (docs/benchmarks.md, "Webhook").
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
# Reviews waiting for a status write hold a thread each; with the core cluster hung they hold
# it for webhook.core_write_timeout_millis. Idle threads cost little (a stack), and a burst of
# protected deletions must leave threads for the reviews that need no write: the runtime lets
# at most threads - threads/8 of them wait for the core cluster (webhook/core_breaker.py).
threads = int(os.environ.get("GUNICORN_THREADS", "128"))
os.environ["PODSEIDON_WEBHOOK_THREADS"] = str(threads)
# gunicorn's threaded worker, serving a kept-alive connection's next request on the thread
# that answered the last one when it comes at once (podseidon_site/gunicorn_webhook_worker.py).
worker_class = "podseidon_site.gunicorn_webhook_worker.WebhookWorker"
# gunicorn closes an idle kept-alive connection after 2 s by default: after any quiet spell
# kube-apiserver would pay a new TLS handshake, and a review racing the close would fail.
keepalive = _config.webhook.keep_alive_seconds
timeout = 60
graceful_timeout = 15
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG", "") == "1" else None
errorlog = "-"

on_starting = common.on_starting
child_exit = common.child_exit


def when_ready(server) -> None:
    common.start_metrics_server(common.metrics_port(_config))


def post_worker_init(worker) -> None:
    # Start the PodProtector cache now rather than on the first review, so /readyz turns
    # green before kube-apiserver sends anything.
    from webhook.runtime import get_runtime

    get_runtime()


def worker_exit(server, worker) -> None:
    # Stop the worker's PodProtector watch and its threads on the way out; watches stop at once
    # (their sockets are shut down), so a restart or scale-down is not held by a quiet watch.
    from webhook.runtime import reset_runtime

    reset_runtime()
