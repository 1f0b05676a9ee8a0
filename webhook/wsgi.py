"""WSGI entry point of the webhook role (``podseidon_site/gunicorn_webhook.py``): Django's
application, with each POST's server time recorded as the ``server`` phase, so the benchmark and
operators see what the serving stack costs on top of the review itself."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from podseidon_site.wsgi import application as django_application
from webhook.observer import PHASE

_SERVER = PHASE.labels("server")


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("REQUEST_METHOD") != "POST":
        return django_application(environ, start_response)
    started = time.perf_counter()
    try:
        return django_application(environ, start_response)
    finally:
        _SERVER.observe(time.perf_counter() - started)
