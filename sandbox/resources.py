"""The resource type registry: which group/version/resources a sandbox cluster serves.

Built-in types are registered at start; CustomResourceDefinitions add and remove types at run
time. Discovery documents, routing and per-type behaviour (generation, graceful deletion, what
DELETE returns) are all derived from these records, so adding a type is one entry here.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SUB_VERBS = ("get", "patch", "update")

# Field selectors every type accepts; per-type extras are listed on the ResourceType.
COMMON_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


@dataclass(frozen=True)
class Subresource:
    name: str
    kind: str
    verbs: tuple[str, ...] = SUB_VERBS
    # Set when the subresource speaks another group's kind (scale → autoscaling/v1 Scale).
    group: str | None = None
    version: str | None = None


@dataclass
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: dict[str, Subresource] = field(default_factory=dict)
    # Objects carry metadata.generation that moves on spec changes.
    has_generation: bool = False
    # Pods: DELETE marks with deletionTimestamp and waits for the kubelet when scheduled.
    graceful_delete: bool = False
    # DELETE answers with the object (pods) instead of a Success Status.
    return_deleted_object: bool = False
    extra_fields: frozenset[str] = frozenset()
    # Set for custom resources: served versions, the CRD's schema per version and columns.
    custom: bool = False
    served_versions: tuple[str, ...] = ()
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    printer_columns: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Discovery singularName: built-ins report "" in v1.24, CRDs report their singular.
    discovery_singular: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def versions(self) -> tuple[str, ...]:
        return self.served_versions or (self.version,)

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def api_version_for(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    def field_allowed(self, name: str) -> bool:
        return name in COMMON_FIELDS or name in self.extra_fields

    def storage_version_hash(self) -> str:
        digest = hashlib.sha256(f"{self.group}/{self.version}/{self.kind}".encode()).digest()
        return base64.b64encode(digest[:8]).decode()


def _status(kind: str) -> dict[str, Subresource]:
    return {"status": Subresource("status", kind)}


def _scale() -> Subresource:
    return Subresource("scale", "Scale", group="autoscaling", version="v1")


def builtin_types() -> list[ResourceType]:
    """The built-in types a v1.24 apiserver serves that the sandbox supports."""
    pod_subs = _status("Pod")
    pod_subs["eviction"] = Subresource(
        "eviction", "Eviction", verbs=("create",), group="policy", version="v1"
    )
    return [
        ResourceType(
            "",
            "v1",
            "namespaces",
            "Namespace",
            False,
            singular="namespace",
            short_names=("ns",),
            verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
            subresources=_status("Namespace"),
            extra_fields=frozenset({"status.phase"}),
        ),
        ResourceType(
            "",
            "v1",
            "nodes",
            "Node",
            False,
            singular="node",
            short_names=("no",),
            subresources=_status("Node"),
            extra_fields=frozenset({"spec.unschedulable"}),
        ),
        ResourceType(
            "",
            "v1",
            "pods",
            "Pod",
            True,
            singular="pod",
            short_names=("po",),
            categories=("all",),
            subresources=pod_subs,
            graceful_delete=True,
            return_deleted_object=True,
            extra_fields=frozenset(
                {
                    "spec.nodeName",
                    "spec.restartPolicy",
                    "spec.schedulerName",
                    "spec.serviceAccountName",
                    "status.phase",
                    "status.podIP",
                    "status.nominatedNodeName",
                }
            ),
        ),
        ResourceType(
            "",
            "v1",
            "events",
            "Event",
            True,
            singular="event",
            short_names=("ev",),
            extra_fields=frozenset(
                {
                    "involvedObject.kind",
                    "involvedObject.namespace",
                    "involvedObject.name",
                    "involvedObject.uid",
                    "involvedObject.apiVersion",
                    "involvedObject.resourceVersion",
                    "involvedObject.fieldPath",
                    "reason",
                    "reportingComponent",
                    "source",
                    "type",
                }
            ),
        ),
        ResourceType(
            "",
            "v1",
            "configmaps",
            "ConfigMap",
            True,
            singular="configmap",
            short_names=("cm",),
        ),
        ResourceType(
            "",
            "v1",
            "secrets",
            "Secret",
            True,
            singular="secret",
            extra_fields=frozenset({"type"}),
        ),
        ResourceType(
            "",
            "v1",
            "services",
            "Service",
            True,
            singular="service",
            short_names=("svc",),
            categories=("all",),
            # A v1.24 apiserver serves no deletecollection for services.
            verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
            subresources=_status("Service"),
        ),
        ResourceType(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            True,
            singular="serviceaccount",
            short_names=("sa",),
        ),
        ResourceType(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            True,
            singular="deployment",
            short_names=("deploy",),
            categories=("all",),
            subresources={**_status("Deployment"), "scale": _scale()},
            has_generation=True,
        ),
        ResourceType(
            "apps",
            "v1",
            "replicasets",
            "ReplicaSet",
            True,
            singular="replicaset",
            short_names=("rs",),
            categories=("all",),
            subresources={**_status("ReplicaSet"), "scale": _scale()},
            has_generation=True,
        ),
        ResourceType(
            "apps",
            "v1",
            "statefulsets",
            "StatefulSet",
            True,
            singular="statefulset",
            short_names=("sts",),
            categories=("all",),
            subresources={**_status("StatefulSet"), "scale": _scale()},
            has_generation=True,
        ),
        ResourceType(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            True,
            singular="poddisruptionbudget",
            short_names=("pdb",),
            subresources=_status("PodDisruptionBudget"),
            has_generation=True,
        ),
        ResourceType(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            True,
            singular="networkpolicy",
            short_names=("netpol",),
            has_generation=True,
        ),
        *_rbac_types(),
        ResourceType(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            False,
            singular="customresourcedefinition",
            short_names=("crd", "crds"),
            categories=("api-extensions",),
            subresources=_status("CustomResourceDefinition"),
            has_generation=True,
        ),
        ResourceType(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            False,
            singular="validatingwebhookconfiguration",
            categories=("api-extensions",),
            has_generation=True,
        ),
        ResourceType(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            True,
            singular="lease",
        ),
    ]


def _rbac_types() -> list[ResourceType]:
    def rbac(plural: str, kind: str, namespaced: bool) -> ResourceType:
        return ResourceType(
            "rbac.authorization.k8s.io",
            "v1",
            plural,
            kind,
            namespaced,
            singular=kind.lower(),
        )

    return [
        rbac("clusterrolebindings", "ClusterRoleBinding", False),
        rbac("clusterroles", "ClusterRole", False),
        rbac("rolebindings", "RoleBinding", True),
        rbac("roles", "Role", True),
    ]


def type_from_crd(crd: dict[str, Any]) -> ResourceType:
    """The ResourceType a CustomResourceDefinition (apiextensions/v1) declares."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    versions = [v for v in spec.get("versions") or [] if v.get("served", True)]
    storage = next((v for v in versions if v.get("storage")), versions[0] if versions else None)
    if storage is None:
        raise ValueError("CRD serves no version")
    subs: dict[str, Subresource] = {}
    storage_subs = storage.get("subresources") or {}
    if "status" in storage_subs:
        subs["status"] = Subresource("status", names["kind"])
    if "scale" in storage_subs:
        subs["scale"] = _scale()
    schemas = {v["name"]: (v.get("schema") or {}).get("openAPIV3Schema") or {} for v in versions}
    columns = {v["name"]: list(v.get("additionalPrinterColumns") or []) for v in versions}
    singular = names.get("singular") or names["kind"].lower()
    return ResourceType(
        group=spec["group"],
        version=storage["name"],
        plural=names["plural"],
        kind=names["kind"],
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        singular=singular,
        discovery_singular=singular,
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        # The order a v1.24 apiserver lists custom resource verbs in (recorded 05).
        verbs=("delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"),
        subresources=subs,
        has_generation=True,
        custom=True,
        served_versions=tuple(v["name"] for v in versions),
        schemas=schemas,
        printer_columns=columns,
    )


class ResourceRegistry:
    """Types served by one cluster, indexed for routing and discovery."""

    def __init__(self, types: Iterable[ResourceType] = ()) -> None:
        self._by_key: dict[tuple[str, str], ResourceType] = {}
        for rt in types:
            self.add(rt)

    def add(self, rt: ResourceType) -> None:
        self._by_key[rt.key] = rt

    def remove(self, group: str, plural: str) -> ResourceType | None:
        return self._by_key.pop((group, plural), None)

    def get(self, group: str, plural: str) -> ResourceType | None:
        return self._by_key.get((group, plural))

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        """The type served at /{group}/{version}/{plural}, or None."""
        rt = self._by_key.get((group, plural))
        if rt is None or version not in rt.versions:
            return None
        return rt

    def by_kind(self, group: str, kind: str) -> ResourceType | None:
        for rt in self._by_key.values():
            if rt.group == group and rt.kind == kind:
                return rt
        return None

    def all(self) -> list[ResourceType]:
        return list(self._by_key.values())

    def group_versions(self) -> dict[str, list[str]]:
        """group → served versions, preferred (storage) version first."""
        out: dict[str, list[str]] = {}
        for rt in self._by_key.values():
            versions = out.setdefault(rt.group, [])
            for v in (rt.version, *rt.versions):
                if v not in versions:
                    versions.append(v)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return sorted(
            (rt for rt in self._by_key.values() if rt.group == group and version in rt.versions),
            key=lambda rt: rt.plural,
        )
