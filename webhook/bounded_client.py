"""The webhook's requests to the clusters, each bounded by the time its AdmissionReview has left.

Why not ``KubeClient.request``: the kubernetes client honours ``_request_timeout`` only as an
``int`` (a total) or a ``(connect, read)`` tuple; a float is silently dropped, which means no
timeout at all. Its pool also retries a timed-out ``PUT`` or ``GET`` up to three times, so even a
good timeout would be multiplied. A frozen core cluster (its process stopped, its kernel still
completing TCP handshakes) then held a review for 30 s, long past kube-apiserver's own deadline.

Here every request carries one ``urllib3.Timeout(total=budget)``: the TCP connect and the TLS
handshake are bounded by the budget, and the wait for the answer by what is left of it; nothing
is retried. The transport (TLS material, client certificates, proxy) and the credentials (bearer
token with its refresh hook, impersonation headers) are the same ``ApiClient``'s, so this path
authenticates exactly as the rest of the product does. Bodies go out as orjson bytes.

A hung peer cannot hold a request past its budget. A peer that trickles a byte just before each
read would (every ``recv`` gets what was left at the start of the read); that is a misbehaving
server, not a stopped one, and the review's batch deadline still releases everyone but the
writing thread.
"""

from __future__ import annotations

from typing import Any

import orjson
import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.rest import RESTClientObject
from urllib3.exceptions import HTTPError as Urllib3HTTPError
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError

from protectors.kube.client import KubeError, Resource


class NoAnswer(KubeError):
    """The cluster did not answer within the budget (connect, TLS handshake or response)."""

    def __init__(self, what: str, budget: float) -> None:
        self.budget = budget
        super().__init__(0, "Timeout", f"{what}: no answer within {budget * 1000:.0f} ms")


class BoundedClient:
    """GET and PUT-status with a total time budget per request. Safe to share between threads."""

    def __init__(self, api_client: ApiClient, *, pool_size: int = 16) -> None:
        self._api = api_client
        # Our own pool, sized for the webhook's concurrent writes (the ApiClient's holds 4, one
        # of them taken by the informer's watch); connections are kept alive between reviews.
        self._pool = RESTClientObject(api_client.configuration, maxsize=pool_size).pool_manager
        self._host = api_client.configuration.host.rstrip("/")

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
        try:
            response = self._pool.request(
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
        data = response.data
        if not 200 <= response.status <= 299:
            raise _api_error(response.status, response.reason or "", data)
        return orjson.loads(data) if data else None

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
