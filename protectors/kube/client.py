"""A thin, resource-generic Kubernetes client returning plain dicts.

The official ``kubernetes`` client supplies the configuration (kubeconfig, in-cluster config,
TLS, bearer tokens, impersonation) and streams the watches (``ApiClient.call_api``); every other
request goes out through ``transport.py`` over a lean connection pool (``connections.py``). We
use our own paths so one code path serves pods, workloads and PodProtectors alike, and so
objects stay the JSON dicts that the domain model parses (deserialising into generated model
classes and back would cost time on the webhook's hot path and drop fields the model does not
know).
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3HTTPError
from urllib3.exceptions import ReadTimeoutError as Urllib3ReadTimeoutError

from podseidon_site.config import ClusterAccess
from protectors.kube import transport


@dataclass(frozen=True)
class Resource:
    """Where a kind of object lives in the API."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, sub: str = "") -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
        if sub:
            base += f"/{sub}"
        return base


PODS = Resource("", "v1", "pods")
NAMESPACES = Resource("", "v1", "namespaces", namespaced=False)
DEPLOYMENTS = Resource("apps", "v1", "deployments")
STATEFULSETS = Resource("apps", "v1", "statefulsets")
PODPROTECTORS = Resource("podseidon.kubewharf.io", "v1alpha1", "podprotectors")
VALIDATING_WEBHOOKS = Resource(
    "admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", namespaced=False
)


WATCH_TIMEOUT_REASON = "WatchTimeout"


class KubeError(Exception):
    """A request that did not succeed: an API Status, or no answer at all (``status`` 0)."""

    def __init__(self, status: int, reason: str, message: str, body: Any = None) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body

    @property
    def is_conflict(self) -> bool:
        return self.status == 409

    @property
    def is_not_found(self) -> bool:
        return self.status == 404

    @property
    def is_gone(self) -> bool:
        return self.status == 410

    @property
    def is_watch_timeout(self) -> bool:
        """A watch ended because nothing arrived within its read timeout."""
        return self.status == 0 and self.reason == WATCH_TIMEOUT_REASON

    @classmethod
    def from_watch_error(cls, status: Mapping[str, Any]) -> KubeError:
        """The error a watch's ERROR event carries (a Status object: code 410 when the
        resourceVersion watched from has expired)."""
        return cls(
            status.get("code", 0),
            status.get("reason", ""),
            status.get("message", "watch error"),
            status,
        )

    @classmethod
    def from_api_exception(cls, error: ApiException) -> KubeError:
        body: Any = None
        message = error.reason or ""
        reason = error.reason or ""
        if error.body:
            try:
                body = orjson.loads(error.body)
            except orjson.JSONDecodeError:
                body = None
        if isinstance(body, dict):
            message = body.get("message", message)
            reason = body.get("reason", reason)
        return cls(error.status or 0, reason, message, body)


def api_client_for(access: ClusterAccess) -> k8s_client.ApiClient:
    """Build an ApiClient from one cluster entry of the config (kubeconfig or in-cluster)."""
    configuration = k8s_client.Configuration()
    if access.in_cluster:
        k8s_config.load_incluster_config(client_configuration=configuration)
    else:
        k8s_config.load_kube_config(
            config_file=access.kubeconfig,
            context=access.context,
            client_configuration=configuration,
            persist_config=False,
        )
    # Each pool keeps this many connections per host for reuse (default: 5 per CPU): the urllib3
    # one, where every open watch holds one, and the request pool of connections.py. A process
    # running several controllers shares one client per cluster; a connection beyond a pool's
    # size is closed after its request, so the next one pays a new TLS handshake.
    configuration.connection_pool_maxsize = max(
        configuration.connection_pool_maxsize or 0, transport.POOL_SIZE
    )
    api_client = k8s_client.ApiClient(configuration)
    if access.impersonate is not None:
        api_client.set_default_header("Impersonate-User", access.impersonate.user)
        # Default headers cannot repeat, so the config allows at most one impersonated group.
        for group in access.impersonate.groups:
            api_client.set_default_header("Impersonate-Group", group)
    return api_client


# kube-apiserver (v1.24) sends a watch that allows bookmarks one about every minute, and one 2 s
# before the watch's deadline. Nothing for 2.5 bookmark intervals means the peer is gone, or the
# server sends this watch no bookmarks (its watch cache sends none for a resource that has not
# changed since it started); either way the watch ends and the informer opens a new one, which
# tells the two apart. It must stay well above the bookmark interval: a quiet but healthy watch
# is not dead.
WATCH_READ_TIMEOUT = 150.0
WATCH_CONNECT_TIMEOUT = 10.0
# As client-go's reflector: every watch asks for timeoutSeconds in [5 min, 10 min), randomised
# so that a fleet of watchers does not reconnect in lockstep; the caller resumes afterwards.
MIN_WATCH_TIMEOUT = 300


def random_watch_timeout() -> int:
    return int(MIN_WATCH_TIMEOUT * (1 + random.random()))


class KubeClient:
    """Dict-in, dict-out access to one cluster. Safe to share between threads."""

    def __init__(
        self,
        api_client: k8s_client.ApiClient,
        *,
        request_timeout: float = 30,
        before_write: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        self.api_client = api_client
        self.request_timeout = request_timeout
        # Called before every non-GET request; may raise to stop the write (fencing) and
        # returns extra headers to send with it (e.g. the fencing token, for audit).
        self.before_write = before_write
        self._lock = threading.Lock()

    def fenced(self, before_write: Callable[[], Mapping[str, str]]) -> KubeClient:
        """A client sharing this one's connection pool whose writes pass ``before_write``."""
        return KubeClient(
            self.api_client, request_timeout=self.request_timeout, before_write=before_write
        )

    @classmethod
    def from_access(cls, access: ClusterAccess) -> KubeClient:
        return cls(api_client_for(access))

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        if method != "GET" and self.before_write is not None:
            headers.update(self.before_write())
        query_params = [(k, _query_value(v)) for k, v in (query or {}).items() if v is not None]
        try:
            # Not call_api: orjson over a lean pool of our own (protectors/kube/transport.py).
            data = transport.send(
                self.api_client,
                method,
                path,
                query=query_params,
                headers=headers,
                body=body,
                timeout=timeout or self.request_timeout,
            )
        except ApiException as error:
            raise KubeError.from_api_exception(error) from None
        except (OSError, http.client.HTTPException, Urllib3HTTPError) as error:
            # Refused, reset, timed out, a TLS failure or a garbled answer: no API status.
            # (urllib3's errors come only through a proxy.)
            raise KubeError(0, "Unreachable", f"{method} {path}: {error}") from None
        return orjson.loads(data) if data else None

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict:
        return self.request("GET", resource.path(namespace, name))

    def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        resource_version: str | None = None,
    ) -> dict:
        return self.request(
            "GET",
            resource.path(namespace),
            query={
                "labelSelector": label_selector or None,
                "fieldSelector": field_selector or None,
                "limit": limit,
                "continue": continue_token,
                "resourceVersion": resource_version,
            },
        )

    def list_all(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        transform: Callable[[dict], dict] | None = None,
        **kwargs: Any,
    ) -> dict:
        """List in pages so huge collections do not arrive as one response.

        ``transform`` is applied page by page, so a cache that keeps a slimmed copy never holds
        every full object of a large collection at once.
        """
        items: list[dict] = []
        token: str | None = None
        while True:
            page = self.list(resource, namespace, limit=500, continue_token=token, **kwargs)
            page_items = page.get("items") or []
            items.extend(map(transform, page_items) if transform else page_items)
            token = (page.get("metadata") or {}).get("continue") or None
            if not token:
                page["items"] = items
                return page

    def create(self, resource: Resource, namespace: str | None, obj: dict) -> dict:
        return self.request("POST", resource.path(namespace), body=obj)

    def replace(self, resource: Resource, namespace: str | None, name: str, obj: dict) -> dict:
        return self.request("PUT", resource.path(namespace, name), body=obj)

    def replace_status(
        self, resource: Resource, namespace: str | None, name: str, obj: dict
    ) -> dict:
        return self.request("PUT", resource.path(namespace, name, "status"), body=obj)

    def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: str = "merge",
        sub: str = "",
    ) -> dict:
        content_type = {
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
            "strategic": "application/strategic-merge-patch+json",
        }[patch_type]
        return self.request(
            "PATCH", resource.path(namespace, name, sub), body=patch, content_type=content_type
        )

    def delete(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        *,
        body: dict | None = None,
    ) -> Any:
        return self.request("DELETE", resource.path(namespace, name), body=body)

    def watch(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int | None = None,
        bookmarks: bool = True,
        read_timeout: float = WATCH_READ_TIMEOUT,
    ) -> WatchStream:
        """Open a watch; iterate the result for events, ``close()`` it to stop from any thread.

        The server ends the watch after ``timeout_seconds`` (by default a random time in
        [MIN_WATCH_TIMEOUT, 2 * MIN_WATCH_TIMEOUT)); ``read_timeout`` ends it early when
        nothing at all (no event, no bookmark) has arrived for that long.
        """
        if timeout_seconds is None:
            timeout_seconds = random_watch_timeout()
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "labelSelector": label_selector or None,
            "allowWatchBookmarks": "true" if bookmarks else None,
            "timeoutSeconds": timeout_seconds,
        }
        query_params = [(k, _query_value(v)) for k, v in query.items() if v is not None]
        try:
            response = self.api_client.call_api(
                resource.path(namespace),
                "GET",
                query_params=query_params,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=(WATCH_CONNECT_TIMEOUT, read_timeout),
                _return_http_data_only=True,
            )
        except ApiException as error:
            raise KubeError.from_api_exception(error) from None
        except (Urllib3HTTPError, OSError) as error:
            raise KubeError(0, "Unreachable", f"watch {resource.plural}: {error}") from None
        return WatchStream(response, resource.plural, read_timeout)


# A chunk-size line longer than this is not HTTP (urllib3 uses the same bound).
_MAX_CHUNK_LINE = 1024


class WatchStream:
    """Newline-delimited watch events from one open response.

    ``close()`` may come from any thread while another is blocked reading: it shuts the
    connection's socket down, which wakes the reader at once. Closing the response there
    instead would wait for the lock of the buffered socket reader that the blocked reader
    holds, i.e. until the next byte arrives, which on a quiet watch may be minutes away. The
    reading thread then closes the response itself.
    """

    def __init__(self, response: Any, what: str, read_timeout: float = WATCH_READ_TIMEOUT) -> None:
        self._response = response
        self._what = what
        self._read_timeout = read_timeout
        self._state = threading.Lock()
        self._closed = False
        self._reading = False
        self._released = False

    def __iter__(self) -> Iterator[dict]:
        with self._state:
            if self._closed:
                self._release()
                return
            self._reading = True
        buffer = b""
        try:
            for chunk in self._chunks():
                if buffer:
                    chunk, buffer = buffer + chunk, b""
                start = 0
                # Events are lines; each usually arrives as one chunk of its own.
                while (newline := chunk.find(b"\n", start)) >= 0:
                    if newline - start > 2 or chunk[start:newline].strip():
                        yield orjson.loads(memoryview(chunk)[start:newline])
                    start = newline + 1
                buffer = chunk[start:]
            if buffer.strip():
                yield orjson.loads(buffer)
        except (Urllib3ReadTimeoutError, TimeoutError):
            if not self._closed:
                raise KubeError(
                    0,
                    WATCH_TIMEOUT_REASON,
                    f"watch {self._what}: nothing received for {self._read_timeout:g} s",
                ) from None
        except (Urllib3HTTPError, OSError, ValueError, http.client.HTTPException) as error:
            if not self._closed:
                raise KubeError(0, "Unreachable", f"watch {self._what}: {error}") from None
        finally:
            with self._state:
                self._closed = True
                self._reading = False
            self._release()

    def _chunks(self) -> Iterator[bytes]:
        """The body's chunks. A watch body is chunked and not compressed: its chunks are read
        straight from the connection's buffered socket, as urllib3 itself reads them, without
        its per-chunk bookkeeping (5-10 µs of the 110 µs of CPU a 100-bucket status event
        costs; every webhook process decodes every status write). Anything else goes through
        urllib3."""
        response = self._response
        raw = getattr(getattr(response, "_fp", None), "fp", None)
        encoding = (response.headers.get("content-encoding") or "identity").lower()
        if not response.chunked or raw is None or encoding != "identity":
            yield from response.stream(amt=65536, decode_content=True)
            return
        readline, read = raw.readline, raw.read
        while True:
            line = readline(_MAX_CHUNK_LINE + 1)
            if not line.endswith(b"\n"):
                if len(line) > _MAX_CHUNK_LINE:
                    raise http.client.HTTPException("chunk size line too long")
                raise http.client.IncompleteRead(line)  # the connection ended mid-stream
            size = int(line.split(b";", 1)[0], 16)  # ValueError on garbage
            if size == 0:
                return  # the last chunk (any trailers go with the connection, closed after)
            data = read(size)
            if len(data) < size or read(2) != b"\r\n":
                raise http.client.IncompleteRead(data, size - len(data))
            yield data

    def close(self) -> None:
        """Stop the stream; never blocks, whatever another thread is doing with it."""
        with self._state:
            if self._closed:
                return
            self._closed = True
            reading = self._reading
        if reading:
            _shutdown_socket(self._response)
        else:
            self._release()

    def _release(self) -> None:
        if self._released:
            return
        self._released = True
        try:
            self._response.close()
            self._response.release_conn()
        except Exception:  # closing a half-dead socket may raise anything; it is gone either way
            pass


def _shutdown_socket(response: Any) -> None:
    """Shut the response's connection down in both directions, without taking any lock.

    The plain socket call, not ssl.SSLSocket.shutdown: that one also drops the TLS object
    under the feet of the thread reading through it.
    """
    connection = getattr(response, "connection", None)
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        return
    # A connection this client does not know how to reach (another urllib3): let urllib3 do it.
    with contextlib.suppress(Exception):
        response.shutdown()


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
