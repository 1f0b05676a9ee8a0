"""One request/response exchange over the kubernetes client's own connection pool.

``KubeClient.request`` sends every non-watch request through here instead of
``ApiClient.call_api``: the same urllib3 pool (TLS settings, client certificates, proxy), the
same default headers (User-Agent, impersonation) and the same bearer token (read through
``Configuration.auth_settings()`` on every request, so exec/OIDC token refresh keeps working),
but the body is serialised once with orjson and nothing walks it first. ``call_api`` runs
``sanitize_for_serialization`` over every body and ``json.dumps`` after it, which cost the
aggregator more CPU than its whole reconcile (docs/benchmarks.md, "Controllers").

Timeouts: a number is the whole request's deadline, a pair is (connect, read); unlike
``call_api``, a float is honoured (the kubernetes client only honours ints).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import orjson
import urllib3
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from urllib3.util import parse_url

__all__ = ["POOL_SIZE", "HttpError", "send", "urllib3_timeout"]

# Connections kept per host: enough for the watches and concurrent writes of every controller
# of one worker process (each cell's aggregator holds a watch and writes from 2 workers).
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


# pool manager -> (its pool for the API server's host, the server URL's path prefix): the
# manager's own lookup parses the URL and builds a pool key on every request.
_HOST_POOLS: weakref.WeakKeyDictionary[Any, tuple[Any, str]] = weakref.WeakKeyDictionary()


def _host_pool(manager: Any, server: str) -> tuple[Any, str] | None:
    if type(manager) is not urllib3.PoolManager:
        return None
    cached = _HOST_POOLS.get(manager)
    # A pool the manager closed (ApiClient.close(), eviction) is looked up again.
    if cached is not None and cached[0].pool is not None:
        return cached
    base_path = (parse_url(server).path or "").rstrip("/")
    cached = (manager.connection_from_url(server), base_path)
    _HOST_POOLS[manager] = cached
    return cached


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
    answer and urllib3/OS errors as they come."""
    configuration = api_client.configuration
    target = path
    if query:
        target += "?" + urlencode(query)
    all_headers = {**api_client.default_headers, **(headers or {})}
    all_headers.update(_auth_headers(configuration))
    if api_client.cookie:
        all_headers["Cookie"] = api_client.cookie
    payload = None if body is None else orjson.dumps(body)
    manager = api_client.rest_client.pool_manager
    host = _host_pool(manager, configuration.host)
    if host is None:  # a proxy: let the manager address it
        response = manager.request(
            method,
            configuration.host + target,
            body=payload,
            headers=all_headers,
            timeout=urllib3_timeout(timeout),
            preload_content=True,
        )
    else:
        pool, base_path = host
        response = pool.urlopen(
            method,
            base_path + target,
            body=payload,
            headers=all_headers,
            timeout=urllib3_timeout(timeout),
            preload_content=True,
            redirect=False,
            assert_same_host=False,
        )
    data = response.data
    if not 200 <= response.status <= 299:
        raise HttpError(response.status, response.reason or "", data)
    return data
