"""The webhook's requests to the clusters, each bounded by the time its AdmissionReview has left.

Why not ``KubeClient.request``: the kubernetes client honours ``_request_timeout`` only as an
``int`` (a total) or a ``(connect, read)`` tuple; a float is silently dropped, which means no
timeout at all. Its pool also retries a timed-out ``PUT`` or ``GET`` up to three times, so even a
good timeout would be multiplied. A frozen core cluster (its process stopped, its kernel still
completing TCP handshakes) then held a review for 30 s, long past kube-apiserver's own deadline.

Here every request has one total budget: the TCP connect, the TLS handshake, the write and
every read of the answer each get what is left of it (``protectors/kube/connections.py``), and
nothing is retried, but a request whose kept-alive connection the cluster had closed before
answering (the cluster never answered that one). A peer that trickles the answer a byte at a
time cannot stretch the budget either: every read gets only what is left of it. The TLS
settings (CA, client certificates) and the credentials (bearer token with its refresh hook,
impersonation headers) are the same ``ApiClient``'s, so this path authenticates exactly as the
rest of the product does. Bodies go out as orjson bytes, with the headers in one write.

The pool is ours, not urllib3's: a status PUT costs about half the client CPU, and it sits on
the path of every protected deletion. Only a configuration with a proxy keeps urllib3 (with one
``urllib3.Timeout(total=budget)`` and no retries), as the pool does not speak to proxies.
"""

from __future__ import annotations

import http.client
from typing import Any

import orjson
import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.rest import RESTClientObject
from urllib3.exceptions import HTTPError as Urllib3HTTPError
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError

from protectors.kube.client import KubeError, Resource
from protectors.kube.connections import ConnectionPool, uses_proxy


class NoAnswer(KubeError):
    """The cluster did not answer within the budget (connect, TLS handshake or response)."""

    def __init__(self, what: str, budget: float) -> None:
        self.budget = budget
        super().__init__(0, "Timeout", f"{what}: no answer within {budget * 1000:.0f} ms")


class BoundedClient:
    """GET and PUT-status with a total time budget per request. Safe to share between threads."""

    def __init__(self, api_client: ApiClient, *, pool_size: int = 16) -> None:
        self._api = api_client
        configuration = api_client.configuration
        # Our own pool, sized for the webhook's concurrent writes (the ApiClient's is shared with
        # the informer and the other requests); connections are kept alive between reviews.
        self._pool: ConnectionPool | None = None
        self._proxied: Any = None
        if uses_proxy(api_client):
            self._proxied = RESTClientObject(configuration, maxsize=pool_size).pool_manager
        else:
            self._pool = ConnectionPool(configuration, size=pool_size)
        self._host = configuration.host.rstrip("/")

    def _headers(self) -> dict[str, str]:
        headers = dict(self._api.default_headers)
        headers["Accept"] = "application/json"
        headers["Content-Type"] = "application/json"
        # Bearer token, through the configuration's refresh hook when it has one.
        self._api.update_params_for_auth(headers, [], ["BearerToken"])
        return headers

    def request(self, method: str, path: str, budget: float, body: bytes | None = None) -> Any:
        what = f"{method} {path}"
        if budget <= 0:
            raise NoAnswer(what, 0.0)
        if self._pool is None:
            status, reason, data = self._request_via_proxy(what, method, path, budget, body)
        else:
            try:
                status, reason, data = self._pool.request(
                    method, path, self._headers(), body, budget
                )
            except TimeoutError:
                raise NoAnswer(what, budget) from None
            except (OSError, http.client.HTTPException) as error:
                raise KubeError(0, "Unreachable", f"{what}: {error}") from None
        if not 200 <= status <= 299:
            raise _api_error(status, reason, data)
        return orjson.loads(data) if data else None

    def _request_via_proxy(
        self, what: str, method: str, path: str, budget: float, body: bytes | None
    ) -> tuple[int, str, bytes]:
        try:
            response = self._proxied.request(
                method,
                self._host + path,
                body=body,
                headers=self._headers(),
                timeout=urllib3.Timeout(total=budget),
                retries=False,
                preload_content=True,
            )
        except NewConnectionError as error:
            # (urllib3 files a refused connection under its connect timeouts.)
            raise KubeError(0, "Unreachable", f"{what}: {error}") from None
        except Urllib3TimeoutError:
            raise NoAnswer(what, budget) from None
        except (Urllib3HTTPError, OSError) as error:
            raise KubeError(0, "Unreachable", f"{what}: {error}") from None
        return response.status, response.reason or "", response.data

    def get(self, resource: Resource, namespace: str | None, name: str, budget: float) -> dict:
        return self.request("GET", resource.path(namespace, name), budget)

    def replace_status(
        self, resource: Resource, namespace: str | None, name: str, obj: dict, budget: float
    ) -> dict:
        return self.request(
            "PUT", resource.path(namespace, name, "status"), budget, orjson.dumps(obj)
        )


def _api_error(status: int, reason: str, data: bytes) -> KubeError:
    body: Any = None
    if data:
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            body = None
    message = reason
    if isinstance(body, dict):
        message = body.get("message", message)
        reason = body.get("reason", reason)
    return KubeError(status, reason, message, body)
