"""Discovery documents: /version, /api, /apis, and per group/version resource lists."""

from __future__ import annotations

import hashlib
from typing import Any

from sandbox.resources import ResourceRegistry, ResourceType

VERSION_INFO = {
    "major": "1",
    "minor": "24",
    "gitVersion": "v1.24.0+sandbox",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2022-05-06T09:44:28Z",
    "goVersion": "go1.19.8",
    "compiler": "gc",
    "platform": "linux/amd64",
}

# The order a v1.24 apiserver lists its built-in groups in; CRD groups follow, sorted.
_GROUP_ORDER = (
    "apps",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "coordination.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
)


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(registry: ResourceRegistry) -> dict[str, Any]:
    groups = registry.group_versions()
    names = [g for g in _GROUP_ORDER if g in groups]
    names += sorted(g for g in groups if g and g not in _GROUP_ORDER)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(g, groups[g]) for g in names],
    }


def api_group(registry: ResourceRegistry, name: str) -> dict[str, Any] | None:
    versions = registry.group_versions().get(name)
    if not versions or not name:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def _entries(rt: ResourceType) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": rt.plural,
        "singularName": rt.discovery_singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        main["shortNames"] = list(rt.short_names)
    if rt.categories:
        main["categories"] = list(rt.categories)
    main["storageVersionHash"] = rt.storage_version_hash()
    out = [main]
    for sub in sorted(rt.subresources.values(), key=lambda s: s.name):
        entry: dict[str, Any] = {
            "name": f"{rt.plural}/{sub.name}",
            "singularName": "",
            "namespaced": rt.namespaced,
        }
        if sub.group is not None:
            entry["group"] = sub.group
            entry["version"] = sub.version
        entry["kind"] = sub.kind
        entry["verbs"] = list(sub.verbs)
        out.append(entry)
    return out


def resource_list(registry: ResourceRegistry, group: str, version: str) -> dict[str, Any] | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": [e for rt in types for e in _entries(rt)],
    }


# --- OpenAPI v3 -----------------------------------------------------------------------------
# Only what kubectl reads: which PATCH operations accept `fieldValidation` (so it validates
# server side instead of downloading full schemas for client-side validation).


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def openapi_v3_index(registry: ResourceRegistry) -> dict[str, Any]:
    paths = {}
    for group, versions in registry.group_versions().items():
        for version in versions:
            gv = _gv_path(group, version)
            digest = (
                hashlib.sha256(
                    ",".join(
                        f"{rt.plural}:{rt.kind}" for rt in registry.in_group_version(group, version)
                    ).encode()
                )
                .hexdigest()[:32]
                .upper()
            )
            paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest}"}
    return {"paths": paths}


_QUERY_PARAMS = [
    {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
    for name in ("dryRun", "fieldManager", "fieldValidation")
]


def openapi_v3_document(
    registry: ResourceRegistry, group: str, version: str
) -> dict[str, Any] | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
    prefix = "/" + _gv_path(group, version)
    paths: dict[str, Any] = {}
    for rt in types:
        gvk = {"group": rt.group, "version": version, "kind": rt.kind}
        ns = "/namespaces/{namespace}" if rt.namespaced else ""

        def op(action: str, gvk: dict[str, str] = gvk) -> dict[str, Any]:
            return {
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": list(_QUERY_PARAMS),
                "responses": {},
            }

        paths[f"{prefix}{ns}/{rt.plural}"] = {"post": op("post"), "get": op("list")}
        paths[f"{prefix}{ns}/{rt.plural}/{{name}}"] = {
            "get": op("get"),
            "put": op("put"),
            "patch": op("patch"),
            "delete": op("delete"),
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": VERSION_INFO["gitVersion"]},
        "paths": paths,
        "components": {"schemas": {}},
    }
