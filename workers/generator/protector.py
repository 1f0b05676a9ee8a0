"""The PodProtector the generator renders for a workload, and how it reads existing ones.

Pure functions over plain dicts (the objects as the API returns them).

A generated PodProtector carries:
- the four source labels naming its workload (kind, group, resource, name);
- the ``podseidon.kubewharf.io/generator`` finalizer, so it is only deleted after its workload
  has been explicitly deleted (or stopped matching the protection selector);
- one ownerReference to the workload with ``controller: true`` and ``blockOwnerDeletion:
  false``. The ordering blockOwnerDeletion would buy (workload stays until the protector is
  gone) is already guaranteed by the generator finalizer on the workload; setting it to true
  would only add an RBAC requirement (update on ``<workloads>/finalizers``, enforced by the
  OwnerReferencesPermissionEnforcement admission plugin) and make a foreground deletion of the
  workload wait on the garbage collector instead of on us.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from protectors import constants
from protectors.specs import GeneratedSpec
from workers.generator.plugins import WorkloadPlugin

__all__ = [
    "SourceKey",
    "cell_ids_in_status",
    "finalizers",
    "has_generator_finalizer",
    "is_managed",
    "is_terminating",
    "owner_reference",
    "parse_remove_cell_once",
    "reconciled_protector",
    "render_protector",
    "source_keys",
    "source_labels",
    "spec_fields",
]

FINALIZER = constants.FINALIZER_GENERATOR

# (plugin key, namespace, workload name): the generator's work-queue key.
SourceKey = tuple[str, str, str]


# --- object helpers -----------------------------------------------------------------------


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def finalizers(obj: Mapping[str, Any]) -> list[str]:
    return list(_metadata(obj).get("finalizers") or [])


def has_generator_finalizer(obj: Mapping[str, Any]) -> bool:
    return FINALIZER in finalizers(obj)


def is_terminating(obj: Mapping[str, Any]) -> bool:
    return bool(_metadata(obj).get("deletionTimestamp"))


# --- rendering ----------------------------------------------------------------------------


def source_labels(plugin: WorkloadPlugin, workload_name: str) -> dict[str, str]:
    return {
        constants.LABEL_SOURCE_NAME: workload_name,
        constants.LABEL_SOURCE_KIND: plugin.kind,
        constants.LABEL_SOURCE_GROUP: plugin.group,
        constants.LABEL_SOURCE_RESOURCE: plugin.plural,
    }


def owner_reference(plugin: WorkloadPlugin, workload: Mapping[str, Any]) -> dict[str, Any]:
    metadata = _metadata(workload)
    return {
        "apiVersion": plugin.api_version,
        "kind": plugin.kind,
        "name": metadata.get("name", ""),
        "uid": metadata.get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": False,
    }


def spec_fields(spec: GeneratedSpec) -> dict[str, Any]:
    """The spec fields the generator owns; others (aggregationSelector, admissionHistoryConfig)
    are left to the operator."""
    return {
        "minAvailable": spec.min_available,
        "minReadySeconds": spec.min_ready_seconds,
        "selector": copy.deepcopy(spec.selector),
    }


def render_protector(
    plugin: WorkloadPlugin, workload: Mapping[str, Any], spec: GeneratedSpec
) -> dict[str, Any]:
    """The PodProtector to create for ``workload``."""
    metadata = _metadata(workload)
    name = metadata.get("name", "")
    return {
        "apiVersion": constants.API_VERSION,
        "kind": constants.KIND,
        "metadata": {
            "name": plugin.protector_name(name),
            "namespace": metadata.get("namespace", ""),
            "labels": source_labels(plugin, name),
            "finalizers": [FINALIZER],
            "ownerReferences": [owner_reference(plugin, workload)],
        },
        "spec": spec_fields(spec),
    }


def reconciled_protector(
    plugin: WorkloadPlugin,
    workload: Mapping[str, Any],
    spec: GeneratedSpec | None,
    protector: Mapping[str, Any],
) -> dict[str, Any] | None:
    """``protector`` with the generator's labels, finalizer, ownerReference and (unless
    ``spec`` is None) spec fields put right; None when it already is.

    Other labels, finalizers, owners and spec fields are kept. The result keeps the
    protector's resourceVersion, so writing it is an optimistic-concurrency update.
    """
    name = _metadata(workload).get("name", "")
    metadata = dict(_metadata(protector))
    changed = False

    labels = dict(metadata.get("labels") or {})
    wanted_labels = source_labels(plugin, name)
    if any(labels.get(k) != v for k, v in wanted_labels.items()):
        labels.update(wanted_labels)
        metadata["labels"] = labels
        changed = True

    current_finalizers = list(metadata.get("finalizers") or [])
    # The API refuses new finalizers on an object being deleted.
    if FINALIZER not in current_finalizers and not metadata.get("deletionTimestamp"):
        metadata["finalizers"] = [*current_finalizers, FINALIZER]
        changed = True

    ref = owner_reference(plugin, workload)
    references = list(metadata.get("ownerReferences") or [])
    if not any(_same_reference(r, ref) for r in references):
        # Only one controller reference is allowed; an old one (a previous workload of the
        # same name) is replaced by the current workload's.
        kept = [
            r
            for r in references
            if not r.get("controller")
            and not (r.get("kind") == plugin.kind and r.get("name") == name)
        ]
        metadata["ownerReferences"] = [*kept, ref]
        changed = True

    body_spec = dict(protector.get("spec") or {})
    if spec is not None:
        wanted = spec_fields(spec)
        if any(body_spec.get(k) != v for k, v in wanted.items()):
            body_spec.update(wanted)
            changed = True

    if not changed:
        return None
    body = {k: v for k, v in protector.items() if k != "status"}
    body.setdefault("apiVersion", constants.API_VERSION)
    body.setdefault("kind", constants.KIND)
    body["metadata"] = metadata
    body["spec"] = body_spec
    return body


def _same_reference(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in ("apiVersion", "kind", "name", "uid")) and all(
        bool(a.get(k)) == bool(b.get(k)) for k in ("controller", "blockOwnerDeletion")
    )


# --- reading existing protectors ------------------------------------------------------------


def is_managed(plugin: WorkloadPlugin, workload_name: str, protector: Mapping[str, Any]) -> bool:
    """Whether ``protector`` is the generator's protector of this workload (and so the
    generator may delete it): its source labels name the workload, or it carries the
    generator finalizer, or the workload is its controller."""
    labels = _metadata(protector).get("labels") or {}
    if all(labels.get(k) == v for k, v in source_labels(plugin, workload_name).items()):
        return True
    if has_generator_finalizer(protector):
        return True
    return any(
        r.get("controller") and r.get("kind") == plugin.kind and r.get("name") == workload_name
        for r in _metadata(protector).get("ownerReferences") or []
    )


def parse_remove_cell_once(value: str | None) -> tuple[str, ...]:
    """Cell IDs of a ``remove-cell-once`` annotation: comma-separated, blanks ignored,
    duplicates dropped, order kept."""
    if not value:
        return ()
    seen: dict[str, None] = {}
    for part in value.split(","):
        cell = part.strip()
        if cell:
            seen.setdefault(cell, None)
    return tuple(seen)


def cell_ids_in_status(protector: Mapping[str, Any]) -> set[str]:
    cells = (protector.get("status") or {}).get("cells") or []
    return {c.get("cellID") for c in cells if isinstance(c, Mapping) and c.get("cellID")}


def source_keys(protector: Mapping[str, Any], plugins: Iterable[WorkloadPlugin]) -> list[SourceKey]:
    """The workloads (among ``plugins``) whose reconcile may concern ``protector``: the one
    its source labels name, its controller owner, and the one its name is derived from."""
    metadata = _metadata(protector)
    namespace = metadata.get("namespace", "")
    labels = metadata.get("labels") or {}
    keys: list[SourceKey] = []

    def add(key: SourceKey) -> None:
        if key not in keys:
            keys.append(key)

    plugins = list(plugins)
    for plugin in plugins:
        source_name = labels.get(constants.LABEL_SOURCE_NAME)
        if (
            source_name
            and labels.get(constants.LABEL_SOURCE_RESOURCE) == plugin.plural
            and labels.get(constants.LABEL_SOURCE_GROUP, "") == plugin.group
        ):
            add((plugin.key, namespace, source_name))
        for ref in metadata.get("ownerReferences") or []:
            group = str(ref.get("apiVersion", "")).rpartition("/")[0]
            if ref.get("controller") and ref.get("kind") == plugin.kind and group == plugin.group:
                add((plugin.key, namespace, ref.get("name", "")))
        prefix = plugin.protector_name("")
        name = metadata.get("name", "")
        if name.startswith(prefix) and len(name) > len(prefix):
            add((plugin.key, namespace, name[len(prefix) :]))
    return keys
