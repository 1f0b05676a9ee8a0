"""API semantics of one simulated cluster, callable in-process.

`Cluster` is what the HTTP handlers call and what in-process controllers (phase 2: deployment
and replicaset controllers, kubelet, garbage collector) call directly: the same create / update
/ patch / delete / evict code paths, the same admission hooks, the same errors. Everything a
real apiserver decides (defaults, generation, status vs spec, graceful deletion, finalizers,
preconditions) is decided here; `store.py` only stores and fans out.

Objects returned by the read methods are the stored dicts, which must never be mutated; use
`copy_object` before editing one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from protectors.selectors import SelectorError, parse_selector_string
from sandbox import errors, schema, strict, validation
from sandbox.defaults import (
    ON_CREATE,
    allocate_cluster_ip,
    normalize_pod_status,
    webhook_configuration_on_write,
)
from sandbox.errors import ApiError
from sandbox.patch import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    PatchDecodeError,
    PatchError,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from sandbox.resources import ResourceRegistry, ResourceType, builtin_types, type_from_crd
from sandbox.store import ADDED, DELETED, MODIFIED, SqlitePersistence, Store, StoreEvent, Watcher

log = logging.getLogger(__name__)

CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACE_KEY = ("", "namespaces")
POD_KEY = ("", "pods")
SERVICE_KEY = ("", "services")
SECRET_KEY = ("", "secrets")
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
ADMIN_USER = {
    "username": "admin",
    "uid": "admin",
    "groups": ["system:masters", "system:authenticated"],
}
_METADATA_ORDER = (
    "name",
    "generateName",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
)
# Metadata a client may set; everything else is owned by the server.
_CLIENT_METADATA = ("generateName", "labels", "annotations", "ownerReferences", "finalizers")
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
# Finalizers the apiserver sets for the garbage collector on DELETE with a propagationPolicy.
ORPHAN_FINALIZER = "orphan"
FOREGROUND_FINALIZER = "foregroundDeletion"


def now_rfc3339(offset_seconds: int = 0) -> str:
    t = datetime.now(UTC) + timedelta(seconds=offset_seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def copy_object(obj: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a stored object, safe to edit."""
    return orjson.loads(orjson.dumps(obj))


def deletion_finalizers(meta: dict[str, Any], policy: str | None) -> list[str] | None:
    """The finalizers a DELETE with propagationPolicy `policy` leaves on the object, as the
    apiserver sets them for the garbage collector (Orphan → "orphan", Foreground →
    "foregroundDeletion", Background → neither); None when they do not change."""
    if policy not in ("Orphan", "Foreground", "Background"):
        return None
    current = list(meta.get("finalizers") or [])
    kept = [f for f in current if f not in (ORPHAN_FINALIZER, FOREGROUND_FINALIZER)]
    if policy == "Orphan":
        kept.append(ORPHAN_FINALIZER)
    elif policy == "Foreground":
        kept.append(FOREGROUND_FINALIZER)
    return None if set(kept) == set(current) else kept


def _keep_allocated_ips(new: dict[str, Any], old: dict[str, Any]) -> None:
    # An update that leaves out the allocated address keeps it, as kube-apiserver does.
    spec, old_spec = new.get("spec"), old.get("spec") or {}
    if isinstance(spec, dict) and not spec.get("clusterIP") and old_spec.get("clusterIP"):
        new["spec"] = {
            **spec,
            "clusterIP": old_spec["clusterIP"],
            "clusterIPs": old_spec.get("clusterIPs") or [old_spec["clusterIP"]],
        }


def _ordered_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    out = {k: meta[k] for k in _METADATA_ORDER if k in meta and meta[k] is not None}
    for k, v in meta.items():
        if k not in out and k != "managedFields" and v is not None:
            out[k] = v
    return out


def _spec_part(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """What `generation` tracks: everything but metadata (and status, when it is separate)."""
    skip = (
        ("metadata", "status", "kind", "apiVersion")
        if rt.has_status
        else ("metadata", "kind", "apiVersion")
    )
    return {k: v for k, v in obj.items() if k not in skip}


@dataclass
class AdmissionRequest:
    """What a validating admission hook sees; mirrors an AdmissionReview request.

    `name` is empty for the per-object calls of a DELETECOLLECTION, as on a real apiserver.
    `object` is the new object (CREATE/UPDATE; the Eviction for pods/eviction), `old_object`
    the stored object (UPDATE/DELETE). `options` is the DeleteOptions/CreateOptions/
    UpdateOptions body as a review carries it.
    """

    operation: str
    resource: ResourceType
    subresource: str
    namespace: str
    name: str
    object: dict[str, Any] | None
    old_object: dict[str, Any] | None
    options: dict[str, Any]
    dry_run: bool = False
    user: dict[str, Any] = field(default_factory=lambda: dict(ADMIN_USER))


# A hook returns to admit and raises ApiError (with the Status to answer) to reject.
AdmissionHook = Callable[[AdmissionRequest], Awaitable[None]]


@dataclass
class ListResult:
    items: list[dict[str, Any]]
    resource_version: int
    continue_token: str | None = None
    remaining: int | None = None


@dataclass
class DeleteOptions:
    grace_period_seconds: int | None = None
    propagation_policy: str | None = None
    precondition_uid: str | None = None
    precondition_rv: str | None = None
    dry_run: bool = False

    @classmethod
    def from_body(cls, body: dict[str, Any] | None) -> DeleteOptions:
        body = body or {}
        pre = body.get("preconditions") or {}
        grace = body.get("gracePeriodSeconds")
        return cls(
            grace_period_seconds=int(grace) if grace is not None else None,
            propagation_policy=body.get("propagationPolicy"),
            precondition_uid=pre.get("uid"),
            precondition_rv=pre.get("resourceVersion"),
            dry_run=bool(body.get("dryRun")),
        )

    def review_body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}
        if self.grace_period_seconds is not None:
            out["gracePeriodSeconds"] = self.grace_period_seconds
        pre = {}
        if self.precondition_uid:
            pre["uid"] = self.precondition_uid
        if self.precondition_rv:
            pre["resourceVersion"] = self.precondition_rv
        if pre:
            out["preconditions"] = pre
        if self.propagation_policy:
            out["propagationPolicy"] = self.propagation_policy
        if self.dry_run:
            out["dryRun"] = ["All"]
        return out


# --- selectors ------------------------------------------------------------------------------


def _field_value(obj: dict[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, dict):
            return ""
        node = node.get(part)
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def parse_field_selector(rt: ResourceType, text: str) -> list[tuple[str, bool, str]]:
    """`a=b,c!=d` → [(field, equal, value)]; unsupported fields are a 400 like the apiserver."""
    out = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        if "!=" in term:
            name, value = term.split("!=", 1)
            equal = False
        elif "==" in term:
            name, value = term.split("==", 1)
            equal = True
        elif "=" in term:
            name, value = term.split("=", 1)
            equal = True
        else:
            raise errors.bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        name = name.strip()
        if not rt.field_allowed(name):
            raise errors.bad_request(f"field label not supported: {name}")
        out.append((name, equal, value.strip()))
    return out


def make_predicate(
    rt: ResourceType,
    namespace: str | None,
    label_selector: str | None,
    field_selector: str | None,
) -> Callable[[dict[str, Any]], bool] | None:
    """A filter for list/watch, or None when nothing is filtered."""
    checks: list[Callable[[dict[str, Any]], bool]] = []
    if namespace:
        checks.append(lambda o: o["metadata"].get("namespace") == namespace)
    if label_selector:
        try:
            selector = parse_selector_string(label_selector)
        except SelectorError as exc:
            raise errors.bad_request(f"unable to parse requirement: {exc}") from None
        if not selector.is_empty:
            checks.append(lambda o: selector.matches(o["metadata"].get("labels") or {}))
    if field_selector:
        for name, equal, value in parse_field_selector(rt, field_selector):
            if name == "metadata.name":
                checks.append(lambda o, v=value, e=equal: (o["metadata"]["name"] == v) == e)
            elif name == "metadata.namespace":
                checks.append(
                    lambda o, v=value, e=equal: (o["metadata"].get("namespace", "") == v) == e
                )
            else:
                checks.append(lambda o, n=name, v=value, e=equal: (_field_value(o, n) == v) == e)
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    return lambda o: all(c(o) for c in checks)


def _encode_continue(rv: int, after: tuple[str, str]) -> str:
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": list(after)})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        return int(data["rv"]), (str(data["start"][0]), str(data["start"][1]))
    except (ValueError, KeyError, IndexError, TypeError):
        raise errors.bad_request(
            "continue key is not valid: incorrect encoded start "
            "resourceVersion (version meta.k8s.io/v1)"
        ) from None


# --- the cluster ----------------------------------------------------------------------------


class Cluster:
    """One simulated cluster: its types, its objects, its admission hooks."""

    def __init__(
        self,
        name: str,
        *,
        history_window: int = 10000,
        persistence: SqlitePersistence | None = None,
    ) -> None:
        self.name = name
        self.registry = ResourceRegistry(builtin_types())
        self.store = Store(history_window=history_window, persistence=persistence)
        self._admission_hooks: list[AdmissionHook] = []
        self._background: set[asyncio.Task[None]] = set()
        for crd in list(self.store.iter(CRD_KEY)):
            self._serve_crd(crd)
        for ns in INITIAL_NAMESPACES:
            if self.store.get(NAMESPACE_KEY, "", ns) is None:
                obj = {"metadata": {"name": ns}}
                self._prepare_new(self.registry.get(*NAMESPACE_KEY), obj, "")
                self.store.put(NAMESPACE_KEY, obj)

    # -- extension points --------------------------------------------------------------------

    def add_admission_hook(self, hook: AdmissionHook) -> Callable[[], None]:
        """Run `hook` on every CREATE/UPDATE/DELETE (and pods/eviction CREATE); returns a
        function that removes it. Hooks run in registration order; the first to raise wins."""
        self._admission_hooks.append(hook)
        return lambda: self._admission_hooks.remove(hook)

    async def _admit(self, request: AdmissionRequest) -> None:
        for hook in tuple(self._admission_hooks):
            await hook(request)

    def resource(self, group: str, plural: str) -> ResourceType:
        rt = self.registry.get(group, plural)
        if rt is None:
            raise errors.ApiError(errors.page_not_found())
        return rt

    # -- reads -------------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        obj = self.store.get(rt.key, namespace if rt.namespaced else "", name)
        if obj is None:
            raise errors.not_found(rt.plural, rt.group, name)
        return obj

    def find(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        return self.store.get(rt.key, namespace if rt.namespaced else "", name)

    def list(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
    ) -> ListResult:
        ns = namespace if rt.namespaced and namespace else None
        predicate = make_predicate(rt, None, label_selector, field_selector)
        list_rv = self.store.rv
        after: tuple[str, str] | None = None
        if continue_token:
            token_rv, after = _decode_continue(continue_token)
            if token_rv < self.store.compacted_rv:
                raise errors.gone(
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter, or use "
                    "the continue token in this response to retrieve the remainder of the "
                    "results. Continuing with the provided token results in an inconsistent "
                    "list - objects that were created, modified, or deleted between the time "
                    "the first chunk was returned and now may show up in the list."
                )
            list_rv = token_rv
            source = self._iter_after(rt, ns, after)
        elif resource_version_match == "Exact" and resource_version:
            wanted = self._parse_rv(resource_version)
            if wanted < self.store.compacted_rv:
                raise errors.gone(
                    f"too old resource version: {wanted} ({self.store.compacted_rv + 1})"
                )
            if wanted > self.store.rv:
                raise errors.ApiError(
                    errors.status_body(
                        504,
                        f"Too large resource version: {wanted}, current: {self.store.rv}",
                        "Timeout",
                        {
                            "causes": [
                                {
                                    "reason": "ResourceVersionTooLarge",
                                    "message": "Too large resource version",
                                }
                            ],
                            "retryAfterSeconds": 1,
                        },
                    )
                )
            list_rv = wanted
            source = iter(self.store.snapshot_at(rt.key, ns, wanted))
        else:
            source = self.store.iter(rt.key, ns)
        items: list[dict[str, Any]] = []
        token = None
        remaining = None
        for obj in source:
            if predicate is not None and not predicate(obj):
                continue
            if limit and len(items) >= limit:
                last = items[-1]["metadata"]
                token = _encode_continue(list_rv, (last.get("namespace", ""), last["name"]))
                if predicate is None:
                    remaining = 1 + sum(1 for _ in source)
                break
            items.append(obj)
        return ListResult(items, list_rv, token, remaining)

    def _iter_after(self, rt: ResourceType, ns: str | None, after: tuple[str, str]):
        import bisect

        keys = self.store.sorted_keys(rt.key, ns)
        start = bisect.bisect_right(keys, after)
        for n_s, name in keys[start:]:
            obj = self.store.get(rt.key, n_s, name)
            if obj is not None:
                yield obj

    @staticmethod
    def _parse_rv(value: str) -> int:
        try:
            return int(value)
        except ValueError:
            raise errors.bad_request(
                f'resourceVersion: Invalid value: "{value}": must be a valid integer'
            ) from None

    def watch(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
    ) -> Watcher:
        """Start a watch. `resource_version` None/""/"0" replays current state as ADDED
        events; otherwise events after it are replayed. Raises ApiError 410 when too old.
        Iterate with `await watcher.next()`; items are (type, StoreEvent)."""
        ns = namespace if rt.namespaced and namespace else None
        predicate = make_predicate(rt, ns, label_selector, field_selector)
        since = None if resource_version in (None, "", "0") else self._parse_rv(resource_version)
        try:
            return self.store.watch(rt.key, predicate, since)
        except ValueError as exc:
            raise errors.gone(str(exc)) from None

    # -- object construction -----------------------------------------------------------------

    def _check_namespace(self, rt: ResourceType, namespace: str, name: str) -> None:
        if not rt.namespaced:
            return
        ns_obj = self.store.get(NAMESPACE_KEY, "", namespace)
        if ns_obj is None:
            raise errors.not_found("namespaces", "", namespace)
        if ns_obj["metadata"].get("deletionTimestamp"):
            raise errors.forbidden(
                rt.plural,
                rt.group,
                name,
                f"unable to create new content in namespace {namespace} because it is being "
                "terminated",
            )

    def _prepare_new(self, rt: ResourceType, obj: dict[str, Any], namespace: str) -> None:
        meta = obj["metadata"]
        if rt.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        for k in (
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ):
            meta.pop(k, None)
        if rt.has_generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        on_create = ON_CREATE.get(rt.key)
        if on_create is not None:
            on_create(obj)
        elif rt.has_status:
            obj.pop("status", None)
        obj["metadata"] = _ordered_metadata(obj["metadata"])

    def _body_object(self, rt: ResourceType, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.bad_request(
                f"the object provided is unrecognized (must be of type {rt.kind})"
            )
        kind = body.get("kind")
        if kind and kind != rt.kind:
            raise errors.bad_request(
                f"the object provided is unrecognized (must be of type {rt.kind}): "
                f"couldn't get version/kind; json parse error"
            )
        obj = {k: v for k, v in body.items() if k not in ("kind", "apiVersion")}
        meta = obj.get("metadata")
        obj["metadata"] = dict(meta) if isinstance(meta, dict) else {}
        return obj

    def _check_strict(self, rt: ResourceType, obj: dict[str, Any], version: str) -> None:
        """`fieldValidation=Strict`: a field the kind does not define is a 400."""
        if rt.custom:
            sch = rt.schemas.get(version) or rt.schemas.get(rt.version) or {}
            unknown: list[str] | None = schema.unknown_fields(sch, obj)
        else:
            unknown = strict.unknown_builtin_fields(version, rt.kind, obj)
        if unknown:
            raise errors.bad_request(
                f'{rt.kind} in version "{version}" cannot be handled as a {rt.kind}: '
                "strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown)
            )

    def _validate(
        self,
        rt: ResourceType,
        obj: dict[str, Any],
        version: str,
        field_validation: str | None = None,
        old: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Prune/default/validate custom resources and the built-in kinds the sandbox checks
        (`old` is the stored object on update, for immutable fields). Returns the object to
        store."""
        name = obj["metadata"].get("name", "")
        if field_validation == "Strict":
            self._check_strict(rt, obj, version)
        if rt.custom:
            sch = rt.schemas.get(version) or rt.schemas.get(rt.version) or {}
            obj = schema.default_and_prune(sch, obj)
            causes = schema.validate(sch, {k: v for k, v in obj.items() if k != "metadata"})
            if causes:
                raise errors.invalid(rt.kind, rt.group, name, causes)
        elif rt.group == "apps":
            self._validate_workload(rt, obj, name)
        elif (validator := validation.VALIDATORS.get(rt.key)) is not None:
            if rt.key == SECRET_KEY:
                validation.secret_data(obj)
            causes = validator(obj, old)
            if causes:
                raise errors.invalid(rt.kind, rt.group, name, causes)
        return obj

    def _validate_workload(self, rt: ResourceType, obj: dict[str, Any], name: str) -> None:
        spec = obj.get("spec") or {}
        selector = spec.get("selector")
        causes = []
        if not selector:
            causes.append(
                {
                    "reason": "FieldValueRequired",
                    "message": "Required value",
                    "field": "spec.selector",
                }
            )
        else:
            try:
                from protectors.selectors import LabelSelector

                sel = LabelSelector.from_dict(selector)
                labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
                if sel.is_empty or not sel.matches(labels):
                    causes.append(
                        {
                            "reason": "FieldValueInvalid",
                            "message": "Invalid value: map[string]string{"
                            + ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items()))
                            + "}: `selector` does not match template `labels`",
                            "field": "spec.template.metadata.labels",
                        }
                    )
            except SelectorError as exc:
                causes.append(
                    {"reason": "FieldValueInvalid", "message": str(exc), "field": "spec.selector"}
                )
        if causes:
            raise errors.invalid(rt.kind, rt.group, name, causes)

    # -- writes ------------------------------------------------------------------------------

    async def create(
        self,
        rt: ResourceType,
        namespace: str,
        body: Any,
        *,
        version: str | None = None,
        dry_run: bool = False,
        user: dict[str, Any] | None = None,
        field_validation: str | None = None,
    ) -> dict[str, Any]:
        """POST: returns the stored object."""
        obj = self._body_object(rt, body)
        meta = obj["metadata"]
        body_ns = meta.get("namespace")
        if rt.namespaced and body_ns and namespace and body_ns != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the "
                "namespace sent on the request"
            )
        namespace = namespace or body_ns or "" if rt.namespaced else ""
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + "".join(
                    secrets.choice(_NAME_CHARS) for _ in range(5)
                )
            else:
                raise errors.invalid(
                    rt.kind,
                    rt.group,
                    "",
                    [
                        {
                            "reason": "FieldValueRequired",
                            "message": "Required value: name or generateName is required",
                            "field": "metadata.name",
                        }
                    ],
                )
        name = meta["name"]
        self._check_namespace(rt, namespace, name)
        if self.store.get(rt.key, namespace, name) is not None:
            raise errors.already_exists(rt.plural, rt.group, name)
        self._prepare_new(rt, obj, namespace)
        obj = self._validate(rt, obj, version or rt.version, field_validation)
        if rt.key == SERVICE_KEY:
            used = {s["spec"].get("clusterIP") for s in self.store.iter(SERVICE_KEY)}
            allocate_cluster_ip(obj["spec"], used)
        if rt.key == POD_KEY:
            obj["status"] = normalize_pod_status(obj.get("status"))
        await self._admit(
            AdmissionRequest(
                "CREATE",
                rt,
                "",
                namespace,
                name,
                self.to_wire(rt, obj),
                None,
                {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
                dry_run,
                user or dict(ADMIN_USER),
            )
        )
        if self.store.get(rt.key, namespace, name) is not None:
            raise errors.already_exists(rt.plural, rt.group, name)
        if dry_run:
            obj["metadata"]["resourceVersion"] = str(self.store.rv)
            return obj
        self.store.put(rt.key, obj)
        if rt.key == CRD_KEY:
            # The create response is the object as first written (recorded 04); the
            # "CRD controller" then accepts the names at once.
            self._after_crd_create(obj)
        return obj

    def _merged_for_update(
        self, rt: ResourceType, existing: dict[str, Any], new: dict[str, Any], subresource: str
    ) -> dict[str, Any]:
        old_meta = existing["metadata"]
        if subresource == "status":
            # A status write changes status only.
            merged = {k: v for k, v in existing.items() if k != "status"}
            if "status" in new:
                merged["status"] = new["status"]
            merged["metadata"] = dict(old_meta)
            return merged
        merged = dict(new)
        meta = {k: v for k, v in old_meta.items() if k not in _CLIENT_METADATA}
        for k in _CLIENT_METADATA:
            if new["metadata"].get(k) not in (None, [], {}):
                meta[k] = new["metadata"][k]
        merged["metadata"] = meta
        if rt.has_status:
            if "status" in existing:
                merged["status"] = existing["status"]
            else:
                merged.pop("status", None)
        return merged

    async def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        *,
        subresource: str = "",
        version: str | None = None,
        dry_run: bool = False,
        user: dict[str, Any] | None = None,
        field_validation: str | None = None,
    ) -> dict[str, Any]:
        """PUT on the object or its /status: returns the stored object."""
        new = self._body_object(rt, body)
        body_name = new["metadata"].get("name")
        if body_name and body_name != name:
            raise errors.bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        new["metadata"].setdefault("name", name)
        return await self._write(
            rt,
            namespace,
            name,
            lambda existing: new,
            subresource=subresource,
            version=version,
            dry_run=dry_run,
            user=user,
            check_rv=True,
            field_validation=field_validation,
        )

    async def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        patch_type: str,
        patch_body: Any,
        *,
        subresource: str = "",
        version: str | None = None,
        dry_run: bool = False,
        user: dict[str, Any] | None = None,
        field_validation: str | None = None,
    ) -> dict[str, Any]:
        """PATCH with one of the patch media types: returns the stored object."""
        if patch_type == STRATEGIC_PATCH and rt.custom:
            raise errors.unsupported_media_type(patch_type, [JSON_PATCH, MERGE_PATCH, APPLY_PATCH])
        if patch_type == APPLY_PATCH:
            raise errors.unsupported_media_type(
                patch_type, [JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH]
            )

        def apply(existing: dict[str, Any]) -> dict[str, Any]:
            current = self.to_wire(rt, existing, version)
            try:
                if patch_type == MERGE_PATCH:
                    if not isinstance(patch_body, dict):
                        raise errors.bad_request("json: cannot unmarshal into object")
                    patched = merge_patch(current, patch_body)
                elif patch_type == JSON_PATCH:
                    patched = json_patch(current, patch_body)
                elif patch_type == STRATEGIC_PATCH:
                    patched = strategic_merge_patch(current, patch_body)
                else:
                    raise errors.unsupported_media_type(
                        patch_type, [JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH]
                    )
            except PatchDecodeError as exc:
                raise errors.bad_request(str(exc)) from None
            except PatchError as exc:
                raise ApiError(
                    errors.status_body(
                        422,
                        "the server rejected our request due to an error in our request",
                        "Invalid",
                        {"causes": [{"reason": "FieldValueInvalid", "message": str(exc)}]},
                    )
                ) from None
            if not isinstance(patched, dict):
                raise errors.internal("patched object is not a JSON object")
            obj = self._body_object(rt, patched)
            if obj["metadata"].get("name") != name:
                raise errors.bad_request(
                    "metadata.name: Invalid value: the name of the object "
                    "does not match the name on the URL"
                )
            return obj

        return await self._write(
            rt,
            namespace,
            name,
            apply,
            subresource=subresource,
            version=version,
            dry_run=dry_run,
            user=user,
            check_rv=True,
            field_validation=field_validation,
        )

    async def _write(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        build: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        subresource: str,
        version: str | None,
        dry_run: bool,
        user: dict[str, Any] | None,
        check_rv: bool,
        field_validation: str | None = None,
    ) -> dict[str, Any]:
        ns = namespace if rt.namespaced else ""
        for _ in range(10):
            existing = self.get(rt, ns, name)
            new = build(existing)
            wanted_rv = new["metadata"].get("resourceVersion")
            if check_rv and wanted_rv and wanted_rv != existing["metadata"]["resourceVersion"]:
                raise errors.conflict(rt.plural, rt.group, name)
            if field_validation == "Strict":
                self._check_strict(rt, new, version or rt.version)
            merged = self._merged_for_update(rt, existing, new, subresource)
            if rt.key == SERVICE_KEY:
                _keep_allocated_ips(merged, existing)
            merged = self._validate(rt, merged, version or rt.version, old=existing)
            if rt.key == POD_KEY:
                merged["status"] = normalize_pod_status(merged.get("status"))
                if merged.get("status") is None:
                    merged.pop("status", None)
            elif rt.key == ("admissionregistration.k8s.io", "validatingwebhookconfigurations"):
                webhook_configuration_on_write(merged)
            meta = merged["metadata"]
            if rt.has_generation and _spec_part(rt, merged) != _spec_part(rt, existing):
                meta["generation"] = int(existing["metadata"].get("generation", 1)) + 1
            merged["metadata"] = _ordered_metadata(meta)
            merged["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
            if merged == existing:
                # A no-op write changes nothing, resourceVersion included.
                return existing
            await self._admit(
                AdmissionRequest(
                    "UPDATE",
                    rt,
                    subresource,
                    ns,
                    name,
                    self.to_wire(rt, merged),
                    self.to_wire(rt, existing),
                    {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"},
                    dry_run,
                    user or dict(ADMIN_USER),
                )
            )
            if self.find(rt, ns, name) is not existing:
                if wanted_rv:
                    raise errors.conflict(rt.plural, rt.group, name)
                continue  # changed while admission ran: rebuild on the new state
            if dry_run:
                return merged
            self.store.put(rt.key, merged)
            if rt.key == CRD_KEY:
                self._serve_crd(merged)
            if self._should_finalize(existing, merged):
                self._remove(rt, ns, name)
            return merged
        raise errors.conflict(rt.plural, rt.group, name)

    @staticmethod
    def _should_finalize(old: dict[str, Any], new: dict[str, Any]) -> bool:
        # Removing the last finalizer of an object marked for deletion deletes it, unless a
        # graceful deletion (pod with a grace period) is still pending.
        meta = new["metadata"]
        return (
            bool(old["metadata"].get("finalizers"))
            and not meta.get("finalizers")
            and bool(meta.get("deletionTimestamp"))
            and not meta.get("deletionGracePeriodSeconds")
        )

    def _remove(self, rt: ResourceType, ns: str, name: str) -> StoreEvent | None:
        event = self.store.remove(rt.key, ns, name)
        if event is not None and rt.key == CRD_KEY:
            self._unserve_crd(event.obj)
        return event

    # -- deletion ----------------------------------------------------------------------------

    async def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        options: DeleteOptions | None = None,
        *,
        admission_name: str | None = None,
        admit: bool = True,
        user: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """DELETE one object, as the apiserver's generic registry does.

        Returns the object (pods; objects kept by finalizers or a grace period) or a Success
        Status. `admission_name` overrides the name admission hooks see (DELETECOLLECTION
        passes ""); `admit=False` skips them (eviction deletes that way).
        """
        options = options or DeleteOptions()
        ns = namespace if rt.namespaced else ""
        user = user or dict(ADMIN_USER)
        for _ in range(10):
            existing = self.get(rt, ns, name)
            meta = existing["metadata"]
            if options.precondition_uid and options.precondition_uid != meta.get("uid"):
                raise errors.conflict(
                    rt.plural,
                    rt.group,
                    name,
                    f"Precondition failed: UID in precondition: {options.precondition_uid}, "
                    f"UID in object meta: {meta.get('uid')}",
                )
            if options.precondition_rv and options.precondition_rv != meta["resourceVersion"]:
                raise errors.conflict(
                    rt.plural,
                    rt.group,
                    name,
                    "Precondition failed: ResourceVersion in precondition: "
                    f"{options.precondition_rv}, ResourceVersion in object meta: "
                    f"{meta['resourceVersion']}",
                )
            grace = self._grace_period(rt, existing, options)
            if meta.get("deletionTimestamp"):
                current = meta.get("deletionGracePeriodSeconds")
                if current is not None and (grace is None or grace >= current):
                    # Deletion already pending: nothing to do, no admission.
                    return existing if rt.return_deleted_object else self._success(rt, existing)
            if rt.key == NAMESPACE_KEY:
                return await self._delete_namespace(rt, existing, options, user, admit)
            # Reviews carry the grace period the apiserver settled on (0 for unscheduled pods),
            # except in a DELETECOLLECTION, whose reviews carry the request's options (42).
            settled = grace is not None and admission_name is None
            effective = replace(options, grace_period_seconds=grace) if settled else options
            request = AdmissionRequest(
                "DELETE",
                rt,
                "",
                ns,
                name if admission_name is None else admission_name,
                None,
                self.to_wire(rt, existing),
                effective.review_body(),
                options.dry_run,
                user,
            )
            gc_finalizers = deletion_finalizers(meta, options.propagation_policy)
            marks = grace is not None or bool(meta.get("finalizers")) or gc_finalizers is not None
            if admit:
                await self._admit(request)
                if self.find(rt, ns, name) is not existing:
                    continue
            if options.dry_run:
                return existing if rt.return_deleted_object else self._success(rt, existing)
            if marks:
                marked = self._mark_deleting(existing, grace, gc_finalizers)
                if marked is not existing:
                    self.store.put(rt.key, marked)
                if marked["metadata"].get("finalizers") or (grace or 0) > 0:
                    return marked
                if admit:
                    # The final removal is admitted twice (recorded 29, 42): first with the
                    # object as the apiserver's watch cache still holds it, unmarked, whose
                    # verdict only makes storage re-read; then with the marked object.
                    with contextlib.suppress(ApiError):
                        await self._admit(replace(request))
                    if self.find(rt, ns, name) is not marked:
                        continue
                    await self._admit(replace(request, old_object=self.to_wire(rt, marked)))
                    if self.find(rt, ns, name) is not marked:
                        continue
                self._remove(rt, ns, name)
                return marked if rt.return_deleted_object else self._success(rt, marked)
            self._remove(rt, ns, name)
            return existing if rt.return_deleted_object else self._success(rt, existing)
        raise errors.conflict(rt.plural, rt.group, name)

    def force_remove(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        """SANDBOX-ONLY backdoor (no real apiserver can do this): drop an object from storage
        at once, as if etcd had lost it. No admission, finalizers ignored, no deletionTimestamp
        is ever set; watchers get a DELETED event carrying the object as it was. Tests use it
        to make a workload vanish "without being deleted" (the generator's dangling case)."""
        ns = namespace if rt.namespaced else ""
        existing = self.get(rt, ns, name)  # 404 when absent
        self._remove(rt, ns, name)
        return self._success(rt, existing)

    @staticmethod
    def _grace_period(rt: ResourceType, obj: dict[str, Any], options: DeleteOptions) -> int | None:
        """Seconds of graceful deletion (pods only), None for types deleted at once."""
        if not rt.graceful_delete:
            return None
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if options.grace_period_seconds is not None:
            period = options.grace_period_seconds
        else:
            period = int(spec.get("terminationGracePeriodSeconds") or 0)
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            period = 0
        return 1 if period < 0 else period

    @staticmethod
    def _mark_deleting(
        obj: dict[str, Any], grace: int | None, finalizers: list[str] | None = None
    ) -> dict[str, Any]:
        meta = dict(obj["metadata"])
        if finalizers is not None:
            meta["finalizers"] = finalizers or None
        if grace is not None:
            # A new (possibly shorter) grace period moves the deadline.
            meta["deletionTimestamp"] = now_rfc3339(grace)
            meta["deletionGracePeriodSeconds"] = grace
        elif not meta.get("deletionTimestamp"):
            meta["deletionTimestamp"] = now_rfc3339()
            meta["deletionGracePeriodSeconds"] = 0
        elif finalizers is None:
            return obj
        if meta.get("generation"):
            meta["generation"] = int(meta["generation"]) + 1
        return {**obj, "metadata": _ordered_metadata(meta)}

    @staticmethod
    def _success(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        details: dict[str, Any] = {"name": obj["metadata"]["name"]}
        if rt.group:
            details["group"] = rt.group
        details["kind"] = rt.plural
        details["uid"] = obj["metadata"].get("uid")
        return errors.success_status(details)

    async def delete_collection(
        self,
        rt: ResourceType,
        namespace: str | None,
        options: DeleteOptions | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        user: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Delete every match one by one through `delete`; the first failure stops the
        collection and is raised (earlier objects stay deleted), as recorded in 42/43."""
        result = self.list(
            rt, namespace, label_selector=label_selector, field_selector=field_selector
        )
        for obj in result.items:
            meta = obj["metadata"]
            try:
                await self.delete(
                    rt,
                    meta.get("namespace", ""),
                    meta["name"],
                    options,
                    admission_name="",
                    user=user,
                )
            except ApiError as exc:
                if exc.code != 404:
                    raise
        return self.list_body(rt, result.items, result.resource_version)

    async def evict(
        self,
        namespace: str,
        name: str,
        body: Any,
        *,
        user: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """POST pods/NAME/eviction: admission for CREATE pods/eviction, then a DELETE that
        skips DELETE admission (as the eviction REST does). Returns the 201 Success Status."""
        rt = self.resource("", "pods")
        if not isinstance(body, dict):
            raise errors.bad_request("the object provided is unrecognized")
        body_name = (body.get("metadata") or {}).get("name")
        if body_name and body_name != name:
            raise errors.bad_request("name in URL does not match name in Eviction object")
        eviction = {
            "kind": "Eviction",
            "apiVersion": body.get("apiVersion") or "policy/v1",
            "metadata": {
                **(body.get("metadata") or {}),
                "name": name,
                "namespace": namespace,
                "creationTimestamp": None,
            },
        }
        if body.get("deleteOptions"):
            eviction["deleteOptions"] = body["deleteOptions"]
        options = DeleteOptions.from_body(body.get("deleteOptions"))
        await self._admit(
            AdmissionRequest(
                "CREATE",
                rt,
                "eviction",
                namespace,
                name,
                eviction,
                None,
                {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
                options.dry_run,
                user or dict(ADMIN_USER),
            )
        )
        self.get(rt, namespace, name)
        await self.delete(rt, namespace, name, options, admit=False, user=user)
        return errors.success_status(code=201)

    async def _delete_namespace(
        self,
        rt: ResourceType,
        existing: dict[str, Any],
        options: DeleteOptions,
        user: dict[str, Any],
        admit: bool,
    ) -> dict[str, Any]:
        name = existing["metadata"]["name"]
        if admit:
            await self._admit(
                AdmissionRequest(
                    "DELETE",
                    rt,
                    "",
                    "",
                    name,
                    None,
                    self.to_wire(rt, existing),
                    options.review_body(),
                    options.dry_run,
                    user,
                )
            )
        if options.dry_run:
            return existing
        marked = self._mark_deleting(existing, None)
        marked = {**marked, "status": {**(marked.get("status") or {}), "phase": "Terminating"}}
        self.store.put(rt.key, marked)
        task = asyncio.get_running_loop().create_task(self._finalize_namespace(name))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return marked

    async def _finalize_namespace(self, ns: str) -> None:
        """The namespace controller: delete the namespace's content, then the namespace."""
        ns_rt = self.resource(*NAMESPACE_KEY)
        while True:
            keys = self.store.namespaces_with_objects(ns)
            if not keys:
                break
            for key in keys:
                rt = self.registry.get(*key)
                if rt is None:
                    continue
                with contextlib.suppress(ApiError):
                    await self.delete_collection(rt, ns, DeleteOptions())
            if self.store.namespaces_with_objects(ns):
                await asyncio.sleep(0.5)
        self._remove(ns_rt, "", ns)

    # -- custom resource definitions ---------------------------------------------------------

    def _after_crd_create(self, crd: dict[str, Any]) -> None:
        self._serve_crd(crd)
        names = (crd.get("spec") or {}).get("names") or {}
        status = {
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "lastTransitionTime": now_rfc3339(),
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                },
                {
                    "type": "Established",
                    "status": "True",
                    "lastTransitionTime": now_rfc3339(),
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                },
            ],
            "acceptedNames": dict(names),
            "storedVersions": (crd.get("status") or {}).get("storedVersions") or [],
        }
        self.store.put(CRD_KEY, {**crd, "status": status, "metadata": dict(crd["metadata"])})

    def _serve_crd(self, crd: dict[str, Any]) -> None:
        try:
            rt = type_from_crd(crd)
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("CRD %s not served: %s", crd["metadata"].get("name"), exc)
            return
        self.registry.add(rt)

    def _unserve_crd(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec") or {}
        group, plural = spec.get("group", ""), (spec.get("names") or {}).get("plural", "")
        if self.registry.remove(group, plural) is not None:
            self.store.drop_resource((group, plural))

    # -- wire forms --------------------------------------------------------------------------

    def to_wire(
        self, rt: ResourceType, obj: dict[str, Any], version: str | None = None
    ) -> dict[str, Any]:
        """The object as sent to clients (kind and apiVersion first)."""
        return {"kind": rt.kind, "apiVersion": rt.api_version_for(version or rt.version), **obj}

    def list_body(
        self,
        rt: ResourceType,
        items: list[dict[str, Any]],
        rv: int,
        version: str | None = None,
        continue_token: str | None = None,
        remaining: int | None = None,
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if continue_token:
            meta["continue"] = continue_token
        if remaining is not None:
            meta["remainingItemCount"] = remaining
        api_version = rt.api_version_for(version or rt.version)
        if rt.custom:
            # Unstructured lists carry kind/apiVersion on every item.
            items = [{"apiVersion": api_version, "kind": rt.kind, **o} for o in items]
        return {"kind": rt.list_kind, "apiVersion": api_version, "metadata": meta, "items": items}

    def scale_of(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """autoscaling/v1 Scale view of a workload."""
        meta = obj["metadata"]
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        selector = spec.get("selector") or {}
        try:
            from protectors.selectors import LabelSelector

            sel = LabelSelector.from_dict(selector).to_query_string()
        except SelectorError:
            sel = ""
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in meta
            },
            "spec": {"replicas": spec.get("replicas", 0)},
            "status": {"replicas": status.get("replicas", 0), "selector": sel},
        }

    async def update_scale(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        scale_from: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """PUT/PATCH .../scale: `scale_from(current_scale)` returns the new Scale."""

        def build(existing: dict[str, Any]) -> dict[str, Any]:
            scale = scale_from(self.scale_of(rt, existing))
            replicas = (scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise errors.invalid(
                    "Scale",
                    "autoscaling",
                    name,
                    [
                        {
                            "reason": "FieldValueInvalid",
                            "message": f"Invalid value: {replicas}: must be greater than "
                            "or equal to 0",
                            "field": "spec.replicas",
                        }
                    ],
                )
            obj = copy_object(existing)
            obj["spec"] = {**(obj.get("spec") or {}), "replicas": replicas}
            wanted = (scale.get("metadata") or {}).get("resourceVersion")
            if wanted:
                obj["metadata"]["resourceVersion"] = wanted
            return obj

        obj = await self._write(
            rt,
            namespace,
            name,
            build,
            subresource="",
            version=None,
            dry_run=dry_run,
            user=None,
            check_rv=True,
        )
        return self.scale_of(rt, obj)

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        self.store.close()


__all__ = [
    "ADDED",
    "DELETED",
    "MODIFIED",
    "AdmissionHook",
    "AdmissionRequest",
    "Cluster",
    "DeleteOptions",
    "ListResult",
    "copy_object",
]
