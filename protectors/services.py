"""What the console and the API do with PodProtectors and cells: read from the cache, act with an
audit record.

Reads come from ``protectors.cache`` (one Informer, never an API call per row); a detail adds one
GET of the source workload and one list of the protector's events. The one action here,
``remove_cell_from_protectors``, lists the matching protectors afresh from the core cluster (an
incident is no time to act on a stale cache) and merge-patches the ``remove-cell-once``
annotation onto each that still has the cell in its status; the generator then drops the cell
from status and removes the annotation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from audit.actions import (
    ActionResult,
    Done,
    InvalidAction,
    clean_reason,
    kube_cause,
    require_operator,
    run_action,
)
from audit.models import Action, Outcome
from podseidon_site.config import CELL_ID_PATTERN
from protectors import constants
from protectors.cache import CacheNotSynced, ProtectorRow, cell_totals, protector_cache
from protectors.clusters import CORE, client_for, config, probe_many
from protectors.kube.client import PODPROTECTORS, KubeClient, KubeError, Resource
from protectors.selectors import SelectorError, parse_selector_string
from workers.generator.protector import cell_ids_in_status, parse_remove_cell_once

EVENTS = Resource("", "v1", "events")
READ_TIMEOUT = 5.0
MAX_EVENTS = 20
PATCH_THREADS = 8
CONFLICT_RETRIES = 3
# How many per-protector entries an answer (and the audit record) lists.
MAX_LISTED = 200


# -- reads ------------------------------------------------------------------------------------


def source_workload(client: KubeClient, row: ProtectorRow, obj: Mapping[str, Any]) -> dict:
    """The workload a protector was generated from (one GET), or why it cannot be shown."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    resource = labels.get(constants.LABEL_SOURCE_RESOURCE)
    name = labels.get(constants.LABEL_SOURCE_NAME)
    if not resource or not name:
        return {"found": False, "error": "not generated from a workload (no source labels)"}
    group = labels.get(constants.LABEL_SOURCE_GROUP, "")
    reference = {"kind": row.source_kind, "group": group, "resource": resource, "name": name}
    try:
        workload = client.get(Resource(group, "v1", resource), row.namespace, name)
    except KubeError as error:
        missing = error.is_not_found
        return {
            **reference,
            "found": False,
            "error": "the workload does not exist (the protector is dangling)"
            if missing
            else kube_cause(error),
        }
    metadata = workload.get("metadata") or {}
    return {
        **reference,
        "found": True,
        "uid": metadata.get("uid"),
        "created": metadata.get("creationTimestamp"),
        "deleting": bool(metadata.get("deletionTimestamp")),
        "generation": metadata.get("generation"),
        "replicas": (workload.get("spec") or {}).get("replicas"),
        "status": workload.get("status") or {},
    }


def recent_events(client: KubeClient, namespace: str, name: str) -> dict:
    """The protector's newest events (one list with a field selector); failures are shown."""
    try:
        listing = client.list(EVENTS, namespace, field_selector=f"involvedObject.name={name}")
    except KubeError as error:
        return {"items": [], "error": kube_cause(error)}

    def when(event: Mapping[str, Any]) -> str:
        return (
            event.get("lastTimestamp")
            or event.get("eventTime")
            or (event.get("metadata") or {}).get("creationTimestamp")
            or ""
        )

    events = sorted(listing.get("items") or [], key=when, reverse=True)[:MAX_EVENTS]
    return {
        "items": [
            {
                "type": e.get("type"),
                "reason": e.get("reason"),
                "message": e.get("message"),
                "count": e.get("count"),
                "last_seen": when(e) or None,
                "source": (e.get("source") or {}).get("component") or e.get("reportingComponent"),
                "object_kind": (e.get("involvedObject") or {}).get("kind"),
            }
            for e in events
        ],
        "error": None,
    }


def protector_detail(namespace: str, name: str) -> dict | None:
    """Spec, every cell's aggregation and buckets, source workload, events; None if unknown."""
    cache = protector_cache()
    obj = cache.get(namespace, name)
    row = cache.row(namespace, name)
    if obj is None or row is None:
        return None
    client = client_for(CORE, timeout=READ_TIMEOUT)
    metadata = obj.get("metadata") or {}
    return {
        "row": row,
        "metadata": {
            "namespace": metadata.get("namespace"),
            "name": metadata.get("name"),
            "uid": metadata.get("uid"),
            "resourceVersion": metadata.get("resourceVersion"),
            "creationTimestamp": metadata.get("creationTimestamp"),
            "deletionTimestamp": metadata.get("deletionTimestamp"),
            "labels": metadata.get("labels") or {},
            "annotations": metadata.get("annotations") or {},
            "finalizers": metadata.get("finalizers") or [],
            "ownerReferences": metadata.get("ownerReferences") or [],
        },
        "spec": obj.get("spec") or {},
        "status": obj.get("status") or {},
        "source": source_workload(client, row, obj),
        "events": recent_events(client, namespace, name),
    }


def list_cells() -> dict:
    """Every configured cell (and any other cell still in some status) with totals and health."""
    from workers.keys import aggregator_key
    from workers.services import controller_states

    cfg = config()
    configured = cfg.cell_ids
    try:
        rows = protector_cache().rows()
        totals: dict[str, dict[str, int]] | None = cell_totals(rows)
        pending: dict[str, int] = {}
        for row in rows:
            for cell_id in row.pending_removal:
                pending[cell_id] = pending.get(cell_id, 0) + 1
        cache_error = None
    except (CacheNotSynced, KubeError) as error:
        totals, pending, cache_error = None, {}, str(error)
    extra = sorted(set(totals or ()) - set(configured))
    reachability = probe_many(configured)
    states = controller_states([aggregator_key(c) for c in (*configured, *extra)])
    cells = []
    for cell_id in (*configured, *extra):
        is_configured = cell_id in configured
        cells.append(
            {
                "id": cell_id,
                "configured": is_configured,
                "reachability": reachability.get(cell_id),
                "totals": None if totals is None else totals.get(cell_id, _zero_totals()),
                "pending_removal": pending.get(cell_id, 0),
                "aggregator": states["controllers"].get(aggregator_key(cell_id)),
            }
        )
    return {
        "cells": cells,
        "cache_synced": totals is not None,
        "cache_error": cache_error,
        "redis_error": states["redis_error"],
    }


def _zero_totals() -> dict[str, int]:
    return dict.fromkeys(
        ("protectors", "total", "available", "ready", "scheduled", "running", "buckets"), 0
    )


def known_cell(cell_id: str) -> bool:
    """Configured, or still present in some protector's status (a cell removed from the config
    can still be removed from the protectors)."""
    if config().cell(cell_id) is not None:
        return True
    try:
        return cell_id in protector_cache(wait=1.0).cell_ids_in_status()
    except (CacheNotSynced, KubeError):
        return False


# -- the action ---------------------------------------------------------------------------------


def _clean_selection(
    namespace: str | None, label_selector: str | None, names: Iterable[str] | None
) -> tuple[str | None, str | None, tuple[str, ...]]:
    restricted = config().core.namespace
    namespace = (namespace or "").strip() or None
    if restricted and namespace and namespace != restricted:
        raise InvalidAction(f"the console only watches namespace {restricted!r}", field="namespace")
    label_selector = (label_selector or "").strip() or None
    if label_selector:
        try:
            parse_selector_string(label_selector)
        except SelectorError as error:
            raise InvalidAction(
                f"invalid label selector: {error}", field="label_selector"
            ) from None
    cleaned = tuple(dict.fromkeys(n.strip() for n in names or () if n and n.strip()))
    return namespace or restricted or None, label_selector, cleaned


def _annotate_one(client: KubeClient, obj: dict, cell_id: str, dry_run: bool) -> tuple[str, str]:
    """One protector: ("annotated" | "already_pending" | "not_in_status" | "failed", detail)."""
    metadata = obj.get("metadata") or {}
    namespace, name = metadata.get("namespace"), metadata.get("name")
    for _attempt in range(CONFLICT_RETRIES):
        metadata = obj.get("metadata") or {}
        annotations = metadata.get("annotations") or {}
        pending = parse_remove_cell_once(annotations.get(constants.ANNOTATION_REMOVE_CELL_ONCE))
        if cell_id in pending:
            return "already_pending", ""
        if cell_id not in cell_ids_in_status(obj):
            return "not_in_status", ""
        if dry_run:
            return "annotated", ""
        patch = {
            "metadata": {
                # Optimistic concurrency: the generator may be dropping the annotation right now;
                # a stale merge would bring back cells it has already removed.
                "resourceVersion": metadata.get("resourceVersion"),
                "annotations": {
                    constants.ANNOTATION_REMOVE_CELL_ONCE: ",".join((*pending, cell_id))
                },
            }
        }
        try:
            client.patch(PODPROTECTORS, namespace, name, patch)
            return "annotated", ""
        except KubeError as error:
            if error.is_not_found:
                return "not_in_status", "deleted meanwhile"
            if not error.is_conflict:
                return "failed", kube_cause(error)
        try:
            obj = client.get(PODPROTECTORS, namespace, name)
        except KubeError as error:
            if error.is_not_found:
                return "not_in_status", "deleted meanwhile"
            return "failed", kube_cause(error)
    return "failed", f"conflict: still changing after {CONFLICT_RETRIES} attempts"


def remove_cell_from_protectors(
    user: Any,
    *,
    cell_id: str,
    reason: Any,
    namespace: str | None = None,
    label_selector: str | None = None,
    names: Iterable[str] | None = None,
    dry_run: bool = False,
) -> ActionResult:
    """Apply ``remove-cell-once: <cell>`` to every matching protector that has the cell."""
    require_operator(user)
    reason = clean_reason(reason)
    if not isinstance(cell_id, str) or not CELL_ID_PATTERN.match(cell_id):
        raise InvalidAction(f"{cell_id!r} is not a cell ID", field="cell", code="unknown_cell")
    if not known_cell(cell_id):
        raise InvalidAction(
            f"unknown cell {cell_id!r}: not configured and in no PodProtector's status",
            field="cell",
            code="unknown_cell",
        )
    namespace, label_selector, names = _clean_selection(namespace, label_selector, names)
    parameters = {
        "cell": cell_id,
        "namespace": namespace,
        "label_selector": label_selector,
        "names": list(names),
    }

    def work() -> Done:
        client = client_for(CORE)
        listing = client.list_all(PODPROTECTORS, namespace, label_selector=label_selector)
        items = listing.get("items") or []
        if names:
            wanted = set(names)
            items = [i for i in items if (i.get("metadata") or {}).get("name") in wanted]
        with ThreadPoolExecutor(max_workers=PATCH_THREADS) as pool:
            results = list(pool.map(lambda o: _annotate_one(client, o, cell_id, dry_run), items))
        counts = dict.fromkeys(("annotated", "already_pending", "not_in_status", "failed"), 0)
        changed, failures = [], []
        for obj, (what, detail) in zip(items, results, strict=True):
            counts[what] += 1
            key = f"{obj['metadata'].get('namespace')}/{obj['metadata'].get('name')}"
            if what == "annotated":
                changed.append(key)
            elif what == "failed":
                failures.append({"protector": key, "error": detail})
        result = {
            "cell": cell_id,
            "matched": len(items),
            **counts,
            "changed": changed[:MAX_LISTED],
            "failures": failures[:MAX_LISTED],
        }
        verb = "would annotate" if dry_run else "annotated"
        message = (
            f"{len(items)} matched; {verb} {counts['annotated']}; "
            f"{counts['already_pending']} already pending; "
            f"{counts['not_in_status']} without {cell_id} in status; {counts['failed']} failed"
        )
        if counts["failed"] == 0:
            outcome = Outcome.SUCCEEDED
        elif counts["failed"] < len(items):
            outcome = Outcome.PARTIAL
            message += f" (first: {failures[0]['protector']}: {failures[0]['error']})"
        else:
            outcome = Outcome.FAILED
            message = f"every patch failed (first: {failures[0]['error']}); " + message
        return Done(outcome, message, result, error_code="patch_failed")

    return run_action(
        user=user,
        action=Action.REMOVE_CELL,
        target=f"cell/{cell_id}",
        reason=reason,
        parameters=parameters,
        dry_run=dry_run,
        work=work,
    )
