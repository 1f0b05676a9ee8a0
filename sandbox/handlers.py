"""HTTP verbs on resource paths: decode the request, call `Cluster`, encode the answer.

Paths are parsed here rather than by aiohttp's router because CRDs add and remove resource
paths at run time and because `/api/v1/namespaces/{x}/...` is ambiguous until the resource
registry is consulted.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from sandbox import discovery, errors, protobuf, tables
from sandbox.cluster import Cluster, DeleteOptions
from sandbox.errors import ApiError
from sandbox.patch import APPLY_PATCH, JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH
from sandbox.resources import ResourceType
from sandbox.store import StoreEvent, Watcher
from sandbox.watch_timing import WatchTiming

log = logging.getLogger(__name__)

JSON = "application/json"
# SANDBOX-ONLY: `DELETE <object>?sandboxForce=true` removes the object from storage at once, as if
# etcd had lost it (no admission, finalizers ignored, no deletionTimestamp). A real apiserver
# ignores the unknown parameter and deletes normally, so tests using it are sandbox-only.
SANDBOX_FORCE_PARAM = "sandboxForce"
# The methods --write-latency delays.
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class Route:
    rt: ResourceType
    version: str
    namespace: str
    name: str
    subresource: str
    watch: bool


def encode(body: Any, sort_keys: bool = False) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS if sort_keys else 0)


def respond(body: Any, status: int = 200, sort_keys: bool = False) -> web.Response:
    return web.Response(body=encode(body, sort_keys), status=status, content_type=JSON)


def error_response(exc: ApiError) -> web.Response:
    return web.Response(body=encode(exc.body), status=exc.code, content_type=JSON)


def _accept_params(request: web.Request) -> dict[str, str]:
    """Media type parameters of the first JSON entry in Accept (as=, g=, v=)."""
    for entry in request.headers.get("Accept", "").split(","):
        parts = [p.strip() for p in entry.split(";")]
        if not parts or parts[0] not in (JSON, "*/*", "application/*"):
            continue
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        return params
    return {}


def wants_table(request: web.Request) -> bool:
    params = _accept_params(request)
    return params.get("as") == "Table" and params.get("g") == "meta.k8s.io"


def wants_partial(request: web.Request) -> bool:
    params = _accept_params(request)
    return params.get("as", "").startswith("PartialObjectMetadata")


def parse_route(cluster: Cluster, path: str) -> Route | None:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    watch = False
    if rest and rest[0] == "watch":
        watch, rest = True, rest[1:]
    if not rest:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        candidate = cluster.registry.lookup(group, version, rest[2])
        if candidate is not None and candidate.namespaced:
            namespace, rest = rest[1], rest[2:]
    rt = cluster.registry.lookup(group, version, rest[0])
    if rt is None or len(rest) > 3:
        return None
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if sub and sub not in rt.subresources:
        return None
    return Route(rt, version, namespace, name, sub, watch)


class Handlers:
    """Request handling for one cluster."""

    def __init__(
        self, cluster: Cluster, timing: WatchTiming | None = None, write_latency: float = 0.0
    ) -> None:
        self.cluster = cluster
        self.timing = timing or WatchTiming()
        # The in-memory store commits a write in microseconds; kube-apiserver spends
        # milliseconds on each (admission, validation, managedFields, etcd's commit). A write
        # waits this long, without holding the event loop, before it is handled: its latency
        # grows as a real one's does, the sandbox's throughput does not change.
        self.write_latency = write_latency

    # -- discovery ---------------------------------------------------------------------------

    async def discovery(self, request: web.Request) -> web.Response | None:
        parts = [p for p in request.path.split("/") if p]
        registry = self.cluster.registry
        body: dict[str, Any] | None = None
        if parts == ["version"]:
            body = discovery.VERSION_INFO
        elif parts == ["api"]:
            body = discovery.api_versions(request.host)
        elif parts == ["apis"]:
            body = discovery.api_group_list(registry)
        elif len(parts) == 2 and parts[0] == "api":
            body = discovery.resource_list(registry, "", parts[1])
        elif len(parts) == 2 and parts[0] == "apis":
            body = discovery.api_group(registry, parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            body = discovery.resource_list(registry, parts[1], parts[2])
        else:
            return None
        if body is None:
            return respond(errors.page_not_found(), 404)
        return respond(body)

    # -- resources ---------------------------------------------------------------------------

    async def resource(self, request: web.Request, route: Route) -> web.StreamResponse:
        method = request.method
        q = request.query
        if route.watch or (method == "GET" and not route.name and _truthy(q.get("watch"))):
            if method != "GET":
                raise errors.method_not_allowed()
            return await self.watch(request, route)
        if method in _WRITES and self.write_latency > 0:
            await asyncio.sleep(self.write_latency)
        if route.name:
            if route.subresource == "eviction":
                if method != "POST":
                    raise errors.method_not_allowed()
                status = await self.cluster.evict(
                    route.namespace, route.name, await _json_body(request)
                )
                return respond(status, 201)
            if route.subresource == "scale":
                return await self.scale(request, route)
            if method == "GET":
                obj = self.cluster.get(route.rt, route.namespace, route.name)
                return self.object_response(request, route, obj)
            if method == "PUT":
                obj = await self.cluster.update(
                    route.rt,
                    route.namespace,
                    route.name,
                    await _json_body(request),
                    subresource=route.subresource,
                    version=route.version,
                    dry_run=_dry_run(request),
                    field_validation=q.get("fieldValidation"),
                )
                return self.object_response(request, route, obj)
            if method == "PATCH":
                ctype = request.content_type
                if ctype not in (MERGE_PATCH, JSON_PATCH, STRATEGIC_PATCH, APPLY_PATCH):
                    raise errors.unsupported_media_type(
                        ctype, [JSON_PATCH, MERGE_PATCH, APPLY_PATCH, STRATEGIC_PATCH]
                    )
                if ctype == APPLY_PATCH:
                    body: Any = None
                else:
                    body = await _json_body(request)
                obj = await self.cluster.patch(
                    route.rt,
                    route.namespace,
                    route.name,
                    ctype,
                    body,
                    subresource=route.subresource,
                    version=route.version,
                    dry_run=_dry_run(request),
                    field_validation=q.get("fieldValidation"),
                )
                return self.object_response(request, route, obj)
            if method == "DELETE" and not route.subresource:
                if _truthy(q.get(SANDBOX_FORCE_PARAM)):
                    # SANDBOX-ONLY backdoor: vanish without deletionTimestamp or finalizers.
                    return respond(self.cluster.force_remove(route.rt, route.namespace, route.name))
                options = await self._delete_options(request)
                result = await self.cluster.delete(route.rt, route.namespace, route.name, options)
                if result.get("kind") == "Status":
                    return respond(result)
                return self.object_response(request, route, result)
            raise errors.method_not_allowed()
        if route.subresource:
            raise errors.method_not_allowed()
        if method == "GET":
            return self.list_response(request, route)
        if method == "POST":
            obj = await self.cluster.create(
                route.rt,
                route.namespace,
                await _json_body(request),
                version=route.version,
                dry_run=_dry_run(request),
                field_validation=q.get("fieldValidation"),
            )
            return self.object_response(request, route, obj, status=201)
        if method == "DELETE" and "deletecollection" in route.rt.verbs:
            options = await self._delete_options(request)
            body = await self.cluster.delete_collection(
                route.rt,
                route.namespace or None,
                options,
                label_selector=q.get("labelSelector"),
                field_selector=q.get("fieldSelector"),
            )
            return respond(body, sort_keys=route.rt.custom)
        raise errors.method_not_allowed()

    async def scale(self, request: web.Request, route: Route) -> web.Response:
        cluster = self.cluster
        if request.method == "GET":
            obj = cluster.get(route.rt, route.namespace, route.name)
            return respond(cluster.scale_of(route.rt, obj))
        if request.method == "PUT":
            body = await _json_body(request)
            if not isinstance(body, dict):
                raise errors.bad_request("the object provided is unrecognized")
            scale = await cluster.update_scale(
                route.rt,
                route.namespace,
                route.name,
                lambda current: body,
                dry_run=_dry_run(request),
            )
            return respond(scale)
        if request.method == "PATCH":
            from sandbox.patch import json_patch, merge_patch, strategic_merge_patch

            ctype = request.content_type
            patch = await _json_body(request)
            apply = {
                MERGE_PATCH: merge_patch,
                JSON_PATCH: json_patch,
                STRATEGIC_PATCH: strategic_merge_patch,
            }.get(ctype)
            if apply is None:
                raise errors.unsupported_media_type(
                    ctype, [JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH]
                )
            scale = await cluster.update_scale(
                route.rt,
                route.namespace,
                route.name,
                lambda current: apply(current, patch),
                dry_run=_dry_run(request),
            )
            return respond(scale)
        raise errors.method_not_allowed()

    async def _delete_options(self, request: web.Request) -> DeleteOptions:
        body = None
        if request.can_read_body:
            raw = await request.read()
            if raw.strip():
                try:
                    if request.content_type == protobuf.PROTOBUF:
                        body = protobuf.decode(raw)
                    else:
                        body = orjson.loads(raw)
                except (orjson.JSONDecodeError, protobuf.ProtobufError) as exc:
                    raise errors.bad_request(f"invalid DeleteOptions: {exc}") from None
        options = DeleteOptions.from_body(body if isinstance(body, dict) else None)
        q = request.query
        if "gracePeriodSeconds" in q:
            try:
                options.grace_period_seconds = int(q["gracePeriodSeconds"])
            except ValueError:
                raise errors.bad_request("gracePeriodSeconds must be an integer") from None
        if "propagationPolicy" in q:
            options.propagation_policy = q["propagationPolicy"]
        if _dry_run(request):
            options.dry_run = True
        return options

    # -- encoding ----------------------------------------------------------------------------

    def object_response(
        self, request: web.Request, route: Route, obj: dict[str, Any], status: int = 200
    ) -> web.Response:
        rt = route.rt
        wire = self.cluster.to_wire(rt, obj, route.version)
        if request.method == "GET" and wants_table(request):
            body = tables.table(
                rt,
                route.version,
                [obj],
                lambda o: self.cluster.to_wire(rt, o, route.version),
                request.query.get("includeObject", "Metadata"),
                {"resourceVersion": obj["metadata"].get("resourceVersion", "")},
            )
            return respond(body, status)
        if request.method == "GET" and wants_partial(request):
            return respond(tables.partial_metadata(wire), status)
        return respond(wire, status, sort_keys=rt.custom)

    def list_response(self, request: web.Request, route: Route) -> web.Response:
        q = request.query
        limit = _int_param(q, "limit")
        result = self.cluster.list(
            route.rt,
            route.namespace or None,
            label_selector=q.get("labelSelector"),
            field_selector=q.get("fieldSelector"),
            limit=limit,
            continue_token=q.get("continue") or None,
            resource_version=q.get("resourceVersion"),
            resource_version_match=q.get("resourceVersionMatch"),
        )
        rt = route.rt
        if wants_table(request):
            meta: dict[str, Any] = {"resourceVersion": str(result.resource_version)}
            if result.continue_token:
                meta["continue"] = result.continue_token
            if result.remaining is not None:
                meta["remainingItemCount"] = result.remaining
            body = tables.table(
                rt,
                route.version,
                result.items,
                lambda o: self.cluster.to_wire(rt, o, route.version),
                q.get("includeObject", "Metadata"),
                meta,
            )
            return respond(body)
        if wants_partial(request):
            body = self.cluster.list_body(
                rt,
                [],
                result.resource_version,
                route.version,
                result.continue_token,
                result.remaining,
            )
            body["kind"], body["apiVersion"] = "PartialObjectMetadataList", "meta.k8s.io/v1"
            body["items"] = [
                tables.partial_metadata(self.cluster.to_wire(rt, o, route.version))
                for o in result.items
            ]
            return respond(body)
        body = self.cluster.list_body(
            rt,
            result.items,
            result.resource_version,
            route.version,
            result.continue_token,
            result.remaining,
        )
        return respond(body, sort_keys=rt.custom)

    # -- watch -------------------------------------------------------------------------------

    async def watch(self, request: web.Request, route: Route) -> web.StreamResponse:
        q = request.query
        rt = route.rt
        field_selector = q.get("fieldSelector")
        if route.name:
            name_term = f"metadata.name={route.name}"
            field_selector = f"{field_selector},{name_term}" if field_selector else name_term
        timeout = _int_param(q, "timeoutSeconds")
        bookmarks = _truthy(q.get("allowWatchBookmarks"))
        as_table = wants_table(request)
        include_object = q.get("includeObject", "Metadata")
        error: ApiError | None = None
        watcher: Watcher | None = None
        try:
            watcher = self.cluster.watch(
                rt,
                route.namespace or None,
                label_selector=q.get("labelSelector"),
                field_selector=field_selector,
                resource_version=q.get("resourceVersion"),
            )
        except ApiError as exc:
            if exc.code != 410:
                raise
            error = exc
        response = web.StreamResponse(status=200, headers={"Content-Type": JSON})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if error is not None or watcher is None:
            assert error is not None
            await response.write(encode({"type": "ERROR", "object": error.body}) + b"\n")
            await response.write_eof()
            return response
        server_watchers: set[Watcher] = request.app["watchers"]
        server_watchers.add(watcher)
        loop = asyncio.get_running_loop()
        deadline = self.timing.deadline(loop.time(), timeout)
        next_bookmark = self.timing.next_bookmark(loop.time(), deadline) if bookmarks else None
        first_table = True
        try:
            while True:
                now = loop.time()
                waits = [t - now for t in (deadline, next_bookmark) if t is not None]
                wait = max(0.0, min(waits)) if waits else None
                item = await watcher.next(wait)
                if item is None:
                    if watcher.closed:
                        break
                    now = loop.time()
                    if deadline is not None and now >= deadline:
                        break
                    if next_bookmark is not None and now >= next_bookmark and not watcher.items:
                        await response.write(self._bookmark(rt, route.version))
                        next_bookmark = self.timing.next_bookmark(now, deadline)
                    continue
                kind, event = item
                assert isinstance(event, StoreEvent)
                if as_table:
                    body = tables.table(
                        rt,
                        route.version,
                        [event.obj],
                        lambda o: self.cluster.to_wire(rt, o, route.version),
                        include_object,
                        {"resourceVersion": event.obj["metadata"].get("resourceVersion", "")},
                        headers=first_table,
                    )
                    first_table = False
                    line = b'{"type":"' + kind.encode() + b'","object":' + encode(body) + b"}\n"
                else:
                    line = (
                        b'{"type":"'
                        + kind.encode()
                        + b'","object":'
                        + self._event_bytes(rt, route.version, event)
                        + b"}\n"
                    )
                await response.write(line)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            watcher.close()
            server_watchers.discard(watcher)
        with _suppress_disconnect():
            await response.write_eof()
        return response

    def _event_bytes(self, rt: ResourceType, version: str, event: StoreEvent) -> bytes:
        # Every watcher of the same version shares one encoding of the object.
        cached = event.cache.get(version)
        if cached is None:
            cached = encode(self.cluster.to_wire(rt, event.obj, version), rt.custom)
            event.cache[version] = cached
        return cached

    def _bookmark(self, rt: ResourceType, version: str) -> bytes:
        rv = str(self.cluster.store.rv)
        api_version = rt.api_version_for(version)
        if rt.custom:
            obj: dict[str, Any] = {
                "apiVersion": api_version,
                "kind": rt.kind,
                "metadata": {"resourceVersion": rv},
            }
        else:
            obj = {
                "kind": rt.kind,
                "apiVersion": api_version,
                "metadata": {"resourceVersion": rv, "creationTimestamp": None},
            }
            if rt.key == ("", "pods"):
                # The empty Pod a v1.24 apiserver encodes (recorded watch-stream-pods.json).
                obj["spec"] = {"containers": None}
                obj["status"] = {}
        return encode({"type": "BOOKMARK", "object": obj}) + b"\n"


class _suppress_disconnect:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        return exc_type is not None and issubclass(exc_type, ConnectionError | RuntimeError)


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


_OPTIONS_KIND = {
    "POST": "CreateOptions",
    "PUT": "UpdateOptions",
    "PATCH": "PatchOptions",
    "DELETE": "DeleteOptions",
}


def _dry_run(request: web.Request) -> bool:
    """``?dryRun=All``; any other value is refused rather than ignored, since a client that
    believes it is only trying a write must never have it stored."""
    values = request.query.getall("dryRun", [])
    unsupported = [v for v in values if v != "All"]
    if unsupported:
        kind = _OPTIONS_KIND.get(request.method, "CreateOptions")
        shown = ", ".join(f'"{v}"' for v in values)
        raise errors.invalid(
            kind,
            "meta.k8s.io",
            "",
            [
                {
                    "reason": "FieldValueNotSupported",
                    "message": f'Unsupported value: []string{{{shown}}}: supported values: "All"',
                    "field": "dryRun",
                }
            ],
        )
    return bool(values)


def _int_param(q: Any, name: str) -> int | None:
    raw = q.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise errors.bad_request(f"{name}: Invalid value: {raw!r}: must be an integer") from None


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        raise errors.bad_request("the request body is empty")
    if request.content_type == protobuf.PROTOBUF:
        try:
            return protobuf.decode(raw)
        except protobuf.ProtobufError as exc:
            raise errors.unsupported_media_type(
                request.content_type, ["application/json", "application/yaml"], str(exc)
            ) from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        ctype = request.content_type
        if "yaml" in ctype:
            import yaml

            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise errors.bad_request(f"error decoding YAML: {exc}") from None
        raise errors.bad_request(
            "couldn't get version/kind; json parse error: invalid character in request body"
        ) from None
