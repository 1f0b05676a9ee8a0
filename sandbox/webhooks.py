"""Validating admission webhooks, called the way kube-apiserver v1.24 calls them.

`WebhookDispatcher` is a cluster plugin. It adds one admission hook to its cluster; for every
admission request (CREATE/UPDATE/DELETE of any resource, each pod of a DELETECOLLECTION,
CREATE pods/eviction, ...) it finds the webhooks of the cluster's
ValidatingWebhookConfigurations that match the request and POSTs each of them an
AdmissionReview over HTTPS. As on the real apiserver:

- matching is `namespaceSelector` (namespace labels; never excludes cluster-scoped objects),
  `objectSelector` (the object's *or* the old object's labels: for DELETE the stored object,
  for pods/eviction the Eviction, whose labels are empty), then `rules`, with `matchPolicy:
  Equivalent` also trying the other served versions of the resource;
- requests on webhook configurations themselves never go to webhooks;
- matching webhooks are called in parallel; the request fails with the first failure to come
  back, after all calls have finished;
- a denial answers the client with the webhook's own Status: `admission webhook "NAME" denied
  the request: MESSAGE`, its code (at least 400) and its reason, if any;
- a call that fails (refused, deadline of `timeoutSeconds` passed, TLS, HTTP error, invalid
  response) is a 500 InternalError `failed calling webhook "NAME": ...` under
  `failurePolicy: Fail` and is ignored under `Ignore`;
- a dry-run request only goes to webhooks declaring `sideEffects: None` or `NoneOnDryRun`.

Error texts follow the Go client the apiserver uses (`Post "URL": dial tcp HOST:PORT:
connect: connection refused`, `context deadline exceeded`, `x509: ...`); the recorded ones
(transcripts 45 and 46) are reproduced exactly, the others as closely as Python lets us see
the failure.

`clientConfig.service` cannot be routed to a cluster Service from here; `service_endpoints`
maps `NAMESPACE/NAME` (or `NAMESPACE/NAME:PORT`) to the address to dial instead, while TLS still
checks the certificate against `NAME.NAMESPACE.svc` like the apiserver. An unmapped Service
fails like a Service that does not exist.

With an admission configuration (`--admission-control-config-file`, sandbox/admission_config.py)
each call presents the client certificate, token or basic credentials of the kubeconfig user
matching the webhook's `host:port` (or `NAME.NAMESPACE.svc:PORT`), as kube-apiserver does; a
user whose files cannot be read fails the call with `could not get REST client: ...`.

Parsed configurations are cached and dropped on any store event touching them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import logging
import os
import socket
import ssl
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from protectors.selectors import LabelSelector, SelectorError
from sandbox import errors
from sandbox.admission_config import CredentialError, CredentialResolver, Credentials
from sandbox.cluster import NAMESPACE_KEY, AdmissionRequest, Cluster
from sandbox.errors import ApiError
from sandbox.resources import ResourceType
from sandbox.store import StoreEvent

log = logging.getLogger(__name__)

CONFIG_KEY = ("admissionregistration.k8s.io", "validatingwebhookconfigurations")
# Never sent to webhooks, so that no webhook can lock out its own (re)configuration.
EXEMPT_RESOURCES = frozenset(
    {CONFIG_KEY, ("admissionregistration.k8s.io", "mutatingwebhookconfigurations")}
)
DEFAULT_TIMEOUT_SECONDS = 10
DEFAULT_SERVICE_PORT = 443
# AdmissionReview versions we can speak, in order of preference.
REVIEW_VERSIONS = ("v1", "v1beta1")
USER_AGENT = "kube-apiserver-admission"
# How long kube-apiserver keeps an idle connection to a webhook open.
IDLE_CONNECTION_SECONDS = 90.0
# client-go keeps at most this much of an unexpected (non-Status) error body.
_MAX_ERROR_BODY = 2048

GVK = tuple[str, str, str]  # group, version, kind
GVR = tuple[str, str, str]  # group, version, resource


# --- configurations ---------------------------------------------------------------------------


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(str(v) for v in value)


def _wildcard_or(items: tuple[str, ...], wanted: str) -> bool:
    return "*" in items or wanted in items


@dataclass(frozen=True)
class Rule:
    """One `rules` entry. `resources` are (resource, subresource) pairs, `*` allowed in both:
    `pods` is the pod itself only, `pods/eviction` one subresource, `pods/*` the pod and
    every subresource (`*` matches the empty subresource too, as on the apiserver), `*` every
    resource without its subresources, `*/*` everything."""

    operations: tuple[str, ...]
    api_groups: tuple[str, ...]
    api_versions: tuple[str, ...]
    resources: tuple[tuple[str, str], ...]
    scope: str = "*"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        resources = []
        for text in _strings(data.get("resources")):
            resource, _, sub = text.partition("/")
            resources.append((resource, sub))
        return cls(
            operations=_strings(data.get("operations")),
            api_groups=_strings(data.get("apiGroups")),
            api_versions=_strings(data.get("apiVersions")),
            resources=tuple(resources),
            scope=str(data.get("scope") or "*"),
        )

    def matches(self, attrs: Attributes, resource: GVR) -> bool:
        group, version, plural = resource
        return (
            self._scope_matches(attrs, resource)
            and _wildcard_or(self.operations, attrs.operation)
            and _wildcard_or(self.api_groups, group)
            and _wildcard_or(self.api_versions, version)
            and any(r in ("*", plural) and s in ("*", attrs.subresource) for r, s in self.resources)
        )

    def _scope_matches(self, attrs: Attributes, resource: GVR) -> bool:
        # A namespace is cluster-scoped even though its requests carry a namespace (its name).
        is_namespace = resource == ("", "v1", "namespaces")
        if self.scope == "*":
            return True
        if self.scope == "Namespaced":
            return not is_namespace and bool(attrs.namespace)
        if self.scope == "Cluster":
            return is_namespace or not attrs.namespace
        return False


@dataclass(frozen=True)
class ServiceRef:
    namespace: str
    name: str
    port: int
    path: str

    @property
    def host(self) -> str:
        return f"{self.name}.{self.namespace}.svc"


@dataclass(frozen=True)
class Webhook:
    """One parsed entry of a ValidatingWebhookConfiguration's `webhooks`."""

    name: str
    configuration: str
    rules: tuple[Rule, ...]
    match_policy: str
    namespace_selector: LabelSelector
    object_selector: LabelSelector
    # Set when a selector does not parse; matching the webhook then fails the request.
    selector_error: str
    failure_policy: str
    side_effects: str | None
    timeout_seconds: int
    review_versions: tuple[str, ...]
    url: str | None
    service: ServiceRef | None
    ca_bundle: str

    @property
    def ignores_failures(self) -> bool:
        return self.failure_policy == "Ignore"


def _selector(data: Any, where: str) -> tuple[LabelSelector, str]:
    """A webhook's selector; an absent one defaults to `{}`, which selects everything."""
    try:
        return LabelSelector.from_dict(data if data is not None else {}), ""
    except SelectorError as exc:
        return LabelSelector.from_dict(None), f"{where}: {exc}"


def parse_configuration(obj: Mapping[str, Any]) -> list[Webhook]:
    """The webhooks of one stored ValidatingWebhookConfiguration, defaults applied."""
    config_name = str((obj.get("metadata") or {}).get("name", ""))
    out = []
    for raw in obj.get("webhooks") or []:
        if not isinstance(raw, dict):
            continue
        namespace_selector, ns_error = _selector(raw.get("namespaceSelector"), "namespaceSelector")
        object_selector, obj_error = _selector(raw.get("objectSelector"), "objectSelector")
        client = raw.get("clientConfig") or {}
        service = None
        svc = client.get("service")
        if isinstance(svc, dict):
            service = ServiceRef(
                namespace=str(svc.get("namespace", "")),
                name=str(svc.get("name", "")),
                port=int(svc.get("port") or DEFAULT_SERVICE_PORT),
                path=str(svc.get("path") or ""),
            )
        timeout = raw.get("timeoutSeconds")
        side_effects = raw.get("sideEffects")
        out.append(
            Webhook(
                name=str(raw.get("name", "")),
                configuration=config_name,
                rules=tuple(
                    Rule.from_dict(r) for r in raw.get("rules") or [] if isinstance(r, dict)
                ),
                match_policy=str(raw.get("matchPolicy") or "Equivalent"),
                namespace_selector=namespace_selector,
                object_selector=object_selector,
                selector_error=ns_error or obj_error,
                failure_policy=str(raw.get("failurePolicy") or "Fail"),
                side_effects=str(side_effects) if side_effects is not None else None,
                timeout_seconds=int(timeout) if timeout else DEFAULT_TIMEOUT_SECONDS,
                review_versions=_strings(raw.get("admissionReviewVersions")) or ("v1",),
                url=str(client["url"]) if client.get("url") else None,
                service=service,
                ca_bundle=str(client.get("caBundle") or ""),
            )
        )
    return out


# --- matching ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attributes:
    """An admission request as the webhook matchers see it."""

    request: AdmissionRequest
    operation: str
    resource: GVR
    subresource: str
    kind: GVK
    # For requests on a namespace itself (other than its creation) this is its name.
    namespace: str

    @classmethod
    def of(cls, request: AdmissionRequest) -> Attributes:
        rt = request.resource
        namespace = request.namespace
        if rt.key == NAMESPACE_KEY and request.operation != "CREATE":
            namespace = request.name or namespace
        return cls(
            request=request,
            operation=request.operation,
            resource=(rt.group, rt.version, rt.plural),
            subresource=request.subresource,
            kind=kind_for(rt, rt.version, request.subresource),
            namespace=namespace,
        )


def kind_for(rt: ResourceType, version: str, subresource: str) -> GVK:
    """The kind a request on `rt` (at `version`) and `subresource` speaks."""
    sub = rt.subresources.get(subresource) if subresource else None
    if sub is None:
        return (rt.group, version, rt.kind)
    group = sub.group if sub.group is not None else rt.group
    return (group, sub.version or version, sub.kind)


@dataclass(frozen=True)
class Invocation:
    """A webhook to call, with the resource and kind it is called for."""

    webhook: Webhook
    resource: GVR
    kind: GVK


def _labels(obj: Any) -> dict[str, str] | None:
    if not isinstance(obj, dict):
        return None
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return {}
    labels = meta.get("labels")
    return labels if isinstance(labels, dict) else {}


def matches_object_selector(webhook: Webhook, attrs: Attributes) -> bool:
    selector = webhook.object_selector
    if selector.is_empty:
        return True
    for obj in (attrs.request.object, attrs.request.old_object):
        labels = _labels(obj)
        if labels is not None and selector.matches(labels):
            return True
    return False


def matches_namespace_selector(
    webhook: Webhook,
    attrs: Attributes,
    namespace_labels: Callable[[str], dict[str, str] | None],
) -> bool:
    """Raises the namespace's NotFound when its labels are needed and it does not exist."""
    is_namespace_request = attrs.resource[2] == "namespaces"
    if not attrs.namespace and not is_namespace_request:
        return True  # cluster-scoped objects are never excluded
    if webhook.namespace_selector.is_empty:
        return True
    if is_namespace_request and not attrs.subresource and attrs.operation in ("CREATE", "UPDATE"):
        labels = _labels(attrs.request.object) or {}
    else:
        found = namespace_labels(attrs.namespace)
        if found is None:
            raise errors.not_found("namespaces", "", attrs.namespace)
        labels = found
    return webhook.namespace_selector.matches(labels)


def should_call(
    webhook: Webhook,
    attrs: Attributes,
    namespace_labels: Callable[[str], dict[str, str] | None],
) -> Invocation | None:
    """The invocation of `webhook` for this request, or None when it does not apply.
    A selector that does not parse fails the requests the webhook's rules match."""
    if not webhook.selector_error:
        if not matches_namespace_selector(webhook, attrs, namespace_labels):
            return None
        if not matches_object_selector(webhook, attrs):
            return None
    invocation = None
    for rule in webhook.rules:
        if rule.matches(attrs, attrs.resource):
            invocation = Invocation(webhook, attrs.resource, attrs.kind)
            break
    if invocation is None and webhook.match_policy == "Equivalent":
        rt = attrs.request.resource
        equivalents = [(rt.group, v, rt.plural) for v in rt.versions if v != rt.version]
        for rule in webhook.rules:
            hit = next((gvr for gvr in equivalents if rule.matches(attrs, gvr)), None)
            if hit is not None:
                invocation = Invocation(webhook, hit, kind_for(rt, hit[1], attrs.subresource))
                break
    if invocation is not None and webhook.selector_error:
        raise errors.internal(webhook.selector_error)
    return invocation


# --- the review -------------------------------------------------------------------------------


def _as_kind(obj: dict[str, Any] | None, kind: GVK) -> dict[str, Any] | None:
    """`obj` in the version the webhook is called for (versions of our kinds differ in
    apiVersion only)."""
    if not isinstance(obj, dict) or obj.get("kind") != kind[2]:
        return obj
    api_version = f"{kind[0]}/{kind[1]}" if kind[0] else kind[1]
    if obj.get("apiVersion") == api_version:
        return obj
    return {**obj, "apiVersion": api_version}


def admission_review(
    attrs: Attributes, invocation: Invocation, uid: str, api_version: str = "v1"
) -> dict[str, Any]:
    """The AdmissionReview for one call, field for field as kube-apiserver v1.24 writes it."""
    request = attrs.request
    kind = invocation.kind
    req: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": kind[0], "version": kind[1], "kind": kind[2]},
        "resource": {
            "group": invocation.resource[0],
            "version": invocation.resource[1],
            "resource": invocation.resource[2],
        },
    }
    if attrs.subresource:
        req["subResource"] = attrs.subresource
    req["requestKind"] = {"group": attrs.kind[0], "version": attrs.kind[1], "kind": attrs.kind[2]}
    req["requestResource"] = {
        "group": attrs.resource[0],
        "version": attrs.resource[1],
        "resource": attrs.resource[2],
    }
    if attrs.subresource:
        req["requestSubResource"] = attrs.subresource
    if request.name:
        req["name"] = request.name
    if attrs.namespace:
        req["namespace"] = attrs.namespace
    req["operation"] = request.operation
    req["userInfo"] = request.user
    req["object"] = _as_kind(request.object, kind)
    req["oldObject"] = _as_kind(request.old_object, kind)
    req["dryRun"] = request.dry_run
    req["options"] = request.options
    return {
        "kind": "AdmissionReview",
        "apiVersion": f"admission.k8s.io/{api_version}",
        "request": req,
    }


def rejection(webhook_name: str, result: Any) -> dict[str, Any]:
    """The Status a client gets for a denial (apiserver's webhook ToStatusErr)."""
    result = result if isinstance(result, dict) else {}
    denied_by = f'admission webhook "{webhook_name}" denied the request'
    try:
        code = int(result.get("code") or 0)
    except (TypeError, ValueError):
        code = 0
    message = str(result.get("message") or "")
    reason = str(result.get("reason") or "")
    if message:
        text = f"{denied_by}: {message}"
    elif reason:
        text = f"{denied_by}: {reason}"
    else:
        text = f"{denied_by} without explanation"
    details = result.get("details")
    body = errors.status_body(
        max(code, 400), text, reason or None, details if isinstance(details, dict) else None
    )
    status = result.get("status")
    if isinstance(status, str) and status not in ("", "Success"):
        body["status"] = status
    return body


# --- calling ----------------------------------------------------------------------------------


class CallFailure(Exception):
    """A webhook could not be called or answered nonsense; the text follows the apiserver's
    `failed calling webhook "NAME": <text>`."""


@dataclass(frozen=True)
class Target:
    url: str  # what we connect to
    shown: str  # the URL as the apiserver names it in errors
    server_hostname: str | None  # TLS name to verify, when it is not the URL's host
    host_header: str | None
    # `host:port` the admission kubeconfig's users are matched against.
    auth_target: str = ""


def _timeout_query(url: str, seconds: int) -> str:
    # The apiserver tells the webhook its deadline, rounded up to whole seconds.
    return f"{url}{'&' if '?' in url else '?'}timeout={seconds}s"


def _with_path(base: str, path: str) -> str:
    return base + (path or "/")


def parse_service_endpoint(text: str) -> tuple[str, str]:
    """`NAMESPACE/NAME[:PORT]=https://HOST:PORT` → ("NAMESPACE/NAME[:PORT]", "HOST:PORT")."""
    key, sep, address = text.partition("=")
    namespace, slash, name = key.partition("/")
    if not sep or not slash or not namespace or not name or not address:
        raise ValueError(f"expected NAMESPACE/NAME[:PORT]=https://HOST:PORT, got {text!r}")
    parts = urlsplit(address if "://" in address else f"https://{address}")
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"service endpoint of {key} must be https://HOST[:PORT], got {address!r}")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    return key, f"{host}:{parts.port or DEFAULT_SERVICE_PORT}"


def _go_ip_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class WebhookDispatcher:
    """The cluster plugin calling validating webhooks (see the module docstring)."""

    def __init__(
        self,
        service_endpoints: Mapping[str, str] | None = None,
        credentials: CredentialResolver | None = None,
    ) -> None:
        self.service_endpoints = dict(service_endpoints or {})
        self.credentials = credentials or CredentialResolver.empty()
        self.cluster: Cluster | None = None
        self._webhooks: tuple[Webhook, ...] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ssl_contexts: dict[tuple[str, str | None, Credentials | None], ssl.SSLContext] = {}
        self._undo: list[Callable[[], None]] = []

    # -- plugin lifecycle ------------------------------------------------------------------

    async def start(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._session = aiohttp.ClientSession(
            # Idle connections kept as long as kube-apiserver's client keeps them (Go's
            # IdleConnTimeout, which client-go applies), not aiohttp's 15 s: a webhook that
            # closes them sooner is seen paying new TLS handshakes, as it would in a cluster.
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=IDLE_CONNECTION_SECONDS),
            trust_env=False,
            headers={"User-Agent": USER_AGENT},
        )
        self._undo.append(cluster.store.add_listener(self._on_store_event))
        self._undo.append(cluster.add_admission_hook(self.admit))

    async def stop(self) -> None:
        while self._undo:
            self._undo.pop()()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _on_store_event(self, event: StoreEvent) -> None:
        if event.key == CONFIG_KEY:
            self._webhooks = None

    def webhooks(self) -> tuple[Webhook, ...]:
        """Every webhook of the cluster's configurations, ordered by configuration name."""
        if self._webhooks is None:
            assert self.cluster is not None
            found: list[Webhook] = []
            for obj in self.cluster.store.iter(CONFIG_KEY):
                found.extend(parse_configuration(obj))
            self._webhooks = tuple(found)
        return self._webhooks

    def _namespace_labels(self, name: str) -> dict[str, str] | None:
        assert self.cluster is not None
        ns = self.cluster.store.get(NAMESPACE_KEY, "", name)
        if ns is None:
            return None
        return _labels(ns) or {}

    # -- admission -------------------------------------------------------------------------

    async def admit(self, request: AdmissionRequest) -> None:
        if request.resource.key in EXEMPT_RESOURCES:
            return
        webhooks = self.webhooks()
        if not webhooks:
            return
        attrs = Attributes.of(request)
        invocations = []
        for webhook in webhooks:
            invocation = should_call(webhook, attrs, self._namespace_labels)
            if invocation is not None:
                invocations.append(invocation)
        if not invocations:
            return
        if len(invocations) == 1:
            await self._call(attrs, invocations[0])
            return
        failures: list[ApiError] = []

        async def call(invocation: Invocation) -> None:
            try:
                await self._call(attrs, invocation)
            except ApiError as exc:
                failures.append(exc)

        # In parallel; the first failure to come back wins once all are done.
        await asyncio.gather(*(call(i) for i in invocations))
        if failures:
            raise failures[0]

    async def _call(self, attrs: Attributes, invocation: Invocation) -> None:
        webhook = invocation.webhook
        try:
            if attrs.request.dry_run:
                if webhook.side_effects is None:
                    raise CallFailure("Webhook SideEffects is nil")
                if webhook.side_effects not in ("None", "NoneOnDryRun"):
                    raise errors.bad_request(
                        f'admission webhook "{webhook.name}" does not support dry run'
                    )
            result = await self._review(attrs, invocation)
        except CallFailure as exc:
            message = f'failed calling webhook "{webhook.name}": {exc}'
            if webhook.ignores_failures:
                log.warning("Failed calling webhook, failing open %s: %s", webhook.name, message)
                return
            log.warning("Failed calling webhook, failing closed %s: %s", webhook.name, message)
            raise errors.internal(message) from None
        if result.get("allowed") is True:
            return
        log.debug("rejected by webhook %r: %s", webhook.name, result.get("status"))
        raise ApiError(rejection(webhook.name, result.get("status")))

    async def _review(self, attrs: Attributes, invocation: Invocation) -> dict[str, Any]:
        """POST the review; returns the `response` of a valid answer."""
        webhook = invocation.webhook
        version = next((v for v in REVIEW_VERSIONS if v in webhook.review_versions), None)
        if version is None:
            raise CallFailure(
                "could not create admission objects: "
                "webhook does not accept v1 or v1beta1 AdmissionReview"
            )
        uid = str(uuid.uuid4())
        body = orjson.dumps(admission_review(attrs, invocation, uid, version))
        status, content_type, raw = await self._post(webhook, body)
        answer = self._decode(status, content_type, raw)
        return self._verify(answer, uid, version)

    # -- HTTP ------------------------------------------------------------------------------

    def _target(self, webhook: Webhook) -> Target:
        if webhook.url:
            shown = _timeout_query(webhook.url, webhook.timeout_seconds)
            parts = urlsplit(webhook.url)
            if not parts.path:
                shown = _timeout_query(webhook.url + "/", webhook.timeout_seconds)
            host_port = parts.netloc.rpartition("@")[2]
            if parts.port is None:
                host_port = f"{host_port}:{DEFAULT_SERVICE_PORT}"
            return Target(shown, shown, None, None, host_port)
        svc = webhook.service
        if svc is None:
            raise CallFailure(
                "could not get REST client: ClientConfig must specify exactly one of url or service"
            )
        host_port = f"{svc.host}:{svc.port}"
        shown = _timeout_query(
            _with_path(f"https://{host_port}", svc.path), webhook.timeout_seconds
        )
        address = self.service_endpoints.get(
            f"{svc.namespace}/{svc.name}:{svc.port}"
        ) or self.service_endpoints.get(f"{svc.namespace}/{svc.name}")
        if address is None:
            raise CallFailure(
                f'failed to call webhook: Post "{shown}": service "{svc.name}" not found'
            )
        url = _timeout_query(_with_path(f"https://{address}", svc.path), webhook.timeout_seconds)
        return Target(url, shown, svc.host, host_port, host_port)

    def _credentials(self, target: Target) -> Credentials | None:
        try:
            return self.credentials.for_url(target.auth_target)
        except CredentialError as exc:
            raise CallFailure(f"could not get REST client: {exc}") from None

    def _ssl_context(
        self, ca_bundle: str, tls_name: str | None, credentials: Credentials | None = None
    ) -> ssl.SSLContext:
        """One context per CA bundle, TLS name and client certificate: aiohttp pools
        connections by context, so a connection verified for one name, or authenticated as one
        client, is never reused for another."""
        client_pem = None
        if credentials is not None and credentials.client_cert_pem is not None:
            client_pem = credentials
        key = (ca_bundle, tls_name, client_pem)
        ctx = self._ssl_contexts.get(key)
        if ctx is not None:
            return ctx
        if not ca_bundle:
            ctx = ssl.create_default_context()
        else:
            try:
                pem = base64.b64decode(ca_bundle, validate=True).decode("ascii")
                ctx = ssl.create_default_context(cadata=pem)
            except (binascii.Error, UnicodeDecodeError, ssl.SSLError, ValueError):
                # Like client-go: a bundle without usable certificates trusts nothing.
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if client_pem is not None:
            _load_client_certificate(ctx, client_pem)
        ctx.set_alpn_protocols(["http/1.1"])
        self._ssl_contexts[key] = ctx
        return ctx

    async def _post(self, webhook: Webhook, body: bytes) -> tuple[int, str, bytes]:
        assert self._session is not None
        target = self._target(webhook)
        headers = {"Content-Type": "application/json", "Accept": "application/json, */*"}
        if target.host_header:
            headers["Host"] = target.host_header
        credentials = self._credentials(target)
        if credentials is not None and credentials.authorization:
            headers["Authorization"] = credentials.authorization
        kwargs: dict[str, Any] = {
            "ssl": self._ssl_context(webhook.ca_bundle, target.server_hostname, credentials)
        }
        if target.server_hostname:
            kwargs["server_hostname"] = target.server_hostname
        prefix = f'failed to call webhook: Post "{target.shown}": '
        try:
            async with asyncio.timeout(webhook.timeout_seconds):
                for attempt in (1, 2):
                    try:
                        async with self._session.post(
                            target.url, data=body, headers=headers, **kwargs
                        ) as resp:
                            raw = await resp.read()
                            return resp.status, resp.headers.get("Content-Type", ""), raw
                    except aiohttp.ClientConnectorError:
                        raise
                    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                        # A pooled keep-alive connection the webhook had closed: retry once on
                        # a new one, as Go's transport does for idle connections.
                        if attempt == 2:
                            raise
            raise AssertionError("unreachable")
        except TimeoutError:
            raise CallFailure(prefix + "context deadline exceeded") from None
        except aiohttp.ClientError as exc:
            raise CallFailure(prefix + await self._describe(exc, target.server_hostname)) from None

    async def _describe(self, exc: aiohttp.ClientError, tls_name: str | None = None) -> str:
        """A client error in the words of Go's net/http and crypto/x509."""
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            cert_error = exc.certificate_error
            code = getattr(cert_error, "verify_code", None)
            if code in (62, 64):  # hostname / IP address mismatch
                return f"x509: certificate is not valid for {tls_name or exc.host}"
            if code == 10:
                return "x509: certificate has expired or is not yet valid"
            return "x509: certificate signed by unknown authority"
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return f"dial tcp: lookup {exc.host}: no such host"
        if isinstance(exc, aiohttp.ClientSSLError):
            return f"tls: {getattr(exc.os_error, 'reason', None) or exc.os_error}"
        if isinstance(exc, aiohttp.ClientConnectorError):
            os_error = exc.os_error
            number = getattr(os_error, "errno", None)
            text = os.strerror(number).lower() if number else str(os_error).lower()
            address = _go_ip_port(await self._dialed_ip(exc.host), exc.port)
            return f"dial tcp {address}: connect: {text}"
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return "EOF"
        if isinstance(exc, aiohttp.ClientOSError) and exc.errno:
            return f"read: {os.strerror(exc.errno).lower()}"
        return str(exc) or type(exc).__name__

    @staticmethod
    async def _dialed_ip(host: str) -> str:
        try:
            ipaddress.ip_address(host)
            return host
        except ValueError:
            pass
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, None, type=socket.SOCK_STREAM
            )
            return str(infos[0][4][0]) if infos else host
        except OSError:
            return host

    # -- the answer ------------------------------------------------------------------------

    @staticmethod
    def _decode(status: int, content_type: str, raw: bytes) -> dict[str, Any]:
        """The answer of a webhook as client-go's REST client decodes it."""
        prefix = "failed to call webhook: "
        parsed: Any = None
        try:
            parsed = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError as exc:
            decode_error = str(exc)
        else:
            decode_error = ""
        if status < 200 or status > 206:
            if (
                isinstance(parsed, dict)
                and parsed.get("kind", "Status") == "Status"
                and parsed.get("status") == "Failure"
            ):
                raise CallFailure(prefix + str(parsed.get("message") or ""))
            text = "unknown"
            if content_type.startswith("text/"):
                text = raw[:_MAX_ERROR_BODY].decode("utf-8", "replace").strip()
            raise CallFailure(prefix + _generic_server_response(status, text))
        if not raw:
            raise CallFailure(
                prefix + f"0-length response with status code: {status} and content type: "
                f"{content_type}"
            )
        if decode_error:
            raise CallFailure(
                prefix + f"couldn't get version/kind; json parse error: {decode_error}"
            )
        if not isinstance(parsed, dict):
            raise CallFailure(prefix + "couldn't get version/kind; json parse error: not an object")
        if not parsed.get("kind"):
            raise CallFailure(
                prefix + f"Object 'Kind' is missing in '{raw.decode(errors='replace')}'"
            )
        return parsed

    @staticmethod
    def _verify(answer: dict[str, Any], uid: str, version: str) -> dict[str, Any]:
        prefix = "received invalid webhook response: "
        response = answer.get("response")
        if not isinstance(response, dict):
            raise CallFailure(prefix + "webhook response was absent")
        if version == "v1beta1":
            return response  # neither uid nor kind were checked for v1beta1
        got_uid = str(response.get("uid") or "")
        if got_uid != uid:
            raise CallFailure(prefix + f'expected response.uid="{uid}", got "{got_uid}"')
        api_version, kind = str(answer.get("apiVersion") or ""), str(answer.get("kind") or "")
        if (api_version, kind) != ("admission.k8s.io/v1", "AdmissionReview"):
            group_version = api_version if "/" in api_version else f"/{api_version}"
            raise CallFailure(
                prefix + "expected webhook response of admission.k8s.io/v1, "
                f"Kind=AdmissionReview, got {group_version}, Kind={kind}"
            )
        return response


def _load_client_certificate(ctx: ssl.SSLContext, credentials: Credentials) -> None:
    """Put the client certificate into the context (ssl reads chains from files only)."""
    assert credentials.client_cert_pem is not None and credentials.client_key_pem is not None
    with tempfile.TemporaryDirectory(prefix="sandbox-client-cert-") as tmp:
        cert, key = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
        for path, pem in ((cert, credentials.client_cert_pem), (key, credentials.client_key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
        try:
            ctx.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise CallFailure(
                f"could not get REST client: tls: user {credentials.user!r}: {exc.reason or exc}"
            ) from None


_GENERIC_MESSAGES = {
    400: "the server rejected our request for an unknown reason",
    401: "the server has asked for the client to provide credentials",
    404: "the server could not find the requested resource",
    405: "the server does not allow this method on the requested resource",
    409: "the server reported a conflict",
    422: "the server rejected our request due to an error in our request",
    429: "the server has received too many requests and has asked us to try again later",
    503: "the server is currently unable to handle the request",
    504: "the server was unable to return a response in the time allotted, but may still be "
    "processing the request",
}


def _generic_server_response(code: int, server_message: str) -> str:
    """client-go's message for an error answer that is not a Status."""
    if code in _GENERIC_MESSAGES:
        return _GENERIC_MESSAGES[code]
    if code in (403, 415):
        return server_message
    if code >= 500:
        quoted = orjson.dumps(server_message).decode()
        return f"an error on the server ({quoted}) has prevented the request from succeeding"
    return f"the server responded with the status code {code} but did not return more information"


def dispatcher_factory(
    service_endpoints: Mapping[str, str] | None = None,
    credentials: CredentialResolver | None = None,
) -> Callable[[Cluster], list[WebhookDispatcher]]:
    """A `SandboxServer` plugin factory giving every cluster its webhook dispatcher; every
    cluster presents the same `credentials` (one admission configuration per process)."""
    endpoints = dict(service_endpoints or {})
    return lambda cluster: [WebhookDispatcher(endpoints, credentials)]


__all__ = [
    "Attributes",
    "CallFailure",
    "Invocation",
    "Rule",
    "Webhook",
    "WebhookDispatcher",
    "admission_review",
    "dispatcher_factory",
    "parse_configuration",
    "parse_service_endpoint",
    "rejection",
    "should_call",
]
