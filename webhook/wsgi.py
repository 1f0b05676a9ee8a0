"""WSGI entry point of the webhook role (``podseidon_site/gunicorn_webhook.py``): Django's
application, with each POST's server time recorded as the ``server`` phase, so the benchmark and
operators see what the serving stack costs on top of the review itself.

A POST's observations (metrics, history, log lines) are made once its answer has been sent: the
server calls the response's ``close()`` after writing it, and that is where they are flushed
(webhook/observer.py, "after the answer").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from podseidon_site.wsgi import application as django_application
from webhook import observer
from webhook.observer import PHASE

_SERVER = PHASE.labels("server")


class _ObservedAfterClose:
    """The response, unchanged, but for the queued observations made when it is closed."""

    def __init__(self, response: Any, queued: list) -> None:
        self._response = response
        self._queued = queued

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._response)

    def close(self) -> None:
        try:
            close = getattr(self._response, "close", None)
            if close is not None:
                close()
        finally:
            observer.flush(self._queued)


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("REQUEST_METHOD") != "POST":
        return django_application(environ, start_response)
    started = time.perf_counter()
    queued = observer.deferring()
    try:
        response = django_application(environ, start_response)
    except BaseException:
        observer.flush(queued)
        raise
    queued.append((_SERVER.observe, (time.perf_counter() - started,)))
    return _ObservedAfterClose(response, queued)
