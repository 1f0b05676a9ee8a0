"""One request/response exchange with the API server, without ``ApiClient.call_api``.

``KubeClient.request`` sends every non-watch request through here: the same default headers as
the kubernetes client (User-Agent, impersonation), the same bearer token (read through
``Configuration.auth_settings()`` on every request, so exec/OIDC token refresh keeps working)
and the same TLS settings, but the body is serialised once with orjson and nothing walks it
first. ``call_api`` runs ``sanitize_for_serialization`` over every body and ``json.dumps`` after
it, which cost the aggregator more CPU than its whole reconcile (docs/benchmarks.md,
"Controllers"). The exchange itself goes over a ``connections.ConnectionPool`` (http.client and
ssl, one per ApiClient), which costs about half the client CPU of the urllib3 pool it replaces;
only a client configured with a proxy still goes through its urllib3 manager. Watches stay on
urllib3 (``KubeClient.watch``).

Timeouts: a number is the whole request's deadline, a pair is (connect, read); unlike
``call_api``, a float is honoured (the kubernetes client only honours ints). Nothing is retried,
but a request whose kept-alive connection the server had closed before answering.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import orjson
import urllib3
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from protectors.kube import connections

__all__ = ["POOL_SIZE", "HttpError", "send", "urllib3_timeout"]

# Connections kept per host, in the urllib3 pool (watches) and in the request pool alike: enough
# for the watches and concurrent writes of every controller of one worker process (each cell's
# aggregator holds a watch and writes from 2 workers).
POOL_SIZE = 64


class HttpError(ApiException):
    """An answer outside 2xx, shaped like the kubernetes client's (``status``, ``reason``,
    ``body``) so the same code turns both into a ``KubeError``."""

    def __init__(self, status: int, reason: str, body: bytes) -> None:
        super().__init__(status=status, reason=reason)
        self.body = body


def urllib3_timeout(timeout: float | tuple[float, float] | None) -> urllib3.Timeout | None:
    if timeout is None:
        return None
    if isinstance(timeout, tuple):
        connect, read = timeout
        return urllib3.Timeout(connect=connect, read=read)
    return urllib3.Timeout(total=timeout)


def _auth_headers(configuration: k8s_client.Configuration) -> dict[str, str]:
    setting = configuration.auth_settings().get("BearerToken")
    if setting and setting.get("value"):
        return {setting["key"]: setting["value"]}
    return {}


def send(
    api_client: k8s_client.ApiClient,
    method: str,
    path: str,
    *,
    query: Sequence[tuple[str, str]] = (),
    headers: Mapping[str, str] | None = None,
    body: Any = None,
    timeout: float | tuple[float, float] | None = None,
) -> bytes:
    """Send one request and return the response body; raises ``HttpError`` for a non-2xx
    answer, and OSError (TimeoutError included), http.client.HTTPException or, through a
    proxy, urllib3's errors as they come."""
    configuration = api_client.configuration
    target = path
    if query:
        target += "?" + urlencode(query)
    all_headers = {**api_client.default_headers, **(headers or {})}
    all_headers.update(_auth_headers(configuration))
    if api_client.cookie:
        all_headers["Cookie"] = api_client.cookie
    payload = None if body is None else orjson.dumps(body)
    pool = connections.pool_for(api_client)
    if pool is not None:
        status, reason, data = pool.request(method, target, all_headers, payload, timeout)
    else:  # through a proxy, which only the urllib3 manager speaks
        response = api_client.rest_client.pool_manager.request(
            method,
            configuration.host + target,
            body=payload,
            headers=all_headers,
            timeout=urllib3_timeout(timeout),
            preload_content=True,
        )
        status, reason, data = response.status, response.reason or "", response.data
    if not 200 <= status <= 299:
        raise HttpError(status, reason, data)
    return data
