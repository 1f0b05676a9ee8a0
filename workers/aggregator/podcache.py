"""What the aggregator keeps of a pod: the informer transform, applied as each pod arrives.

A pod as the API sends it is 1.5-10 KB of JSON; counting it needs a handful of fields. The
transform keeps, in the API's own shape (so health, selectors and the indexes read it
unchanged):

- ``metadata``: name, namespace, labels, resourceVersion (the informer's relist diff) and
  deletionTimestamp (a terminating pod counts toward nothing);
- ``status.phase`` and the ``Ready`` and ``PodScheduled`` conditions: their ``status``, and
  Ready's ``lastTransitionTime`` (minReadySeconds);
- for ``aggregator.sync_time_algorithm: status`` also what dates an event
  (``workers.aggregator.synctime.status_time``): creationTimestamp, deletionGracePeriodSeconds,
  the update-trigger annotation and every condition's lastProbeTime and lastTransitionTime.

Beside them, under ``HEALTH_FIELD``, the pod's ``PodHealth`` (None when a timestamp is
malformed): computed once per pod event here instead of once per reconcile of every protector
that selects the pod.

Strings that repeat from pod to pod (namespace, label keys and values, condition types and
statuses, phase, timestamps) are interned, so the cache holds one copy of each. Nothing else is
kept: the webhook does not read this cache (it asks the API for the one pod it judges).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from protectors.constants import ANNOTATION_UPDATE_TRIGGER_TIME
from protectors.health import PodHealth

__all__ = [
    "HEALTH_FIELD",
    "counting_view",
    "pod_transform",
    "slim_pod",
    "slim_pod_with_times",
    "slim_protector",
]

# Not an API field name (those never contain a colon), so it cannot collide with one.
HEALTH_FIELD = "podseidon:health"

_HEALTH_CONDITIONS = ("Ready", "PodScheduled")
_intern = sys.intern


def _interned(value: Any) -> Any:
    return _intern(value) if type(value) is str else value


def _slim(obj: Mapping[str, Any], times: bool) -> dict[str, Any]:
    source = obj.get("metadata") or {}
    metadata: dict[str, Any] = {
        "name": source.get("name", ""),
        "namespace": _interned(source.get("namespace", "")),
    }
    if "resourceVersion" in source:
        metadata["resourceVersion"] = source["resourceVersion"]
    labels = source.get("labels")
    if labels:
        metadata["labels"] = {_intern(k): _interned(v) for k, v in labels.items()}
    if source.get("deletionTimestamp"):
        metadata["deletionTimestamp"] = _interned(source["deletionTimestamp"])
    if times:
        for name in ("creationTimestamp", "deletionGracePeriodSeconds"):
            if name in source:
                metadata[name] = _interned(source[name])
        trigger = (source.get("annotations") or {}).get(ANNOTATION_UPDATE_TRIGGER_TIME)
        if trigger is not None:
            metadata["annotations"] = {ANNOTATION_UPDATE_TRIGGER_TIME: trigger}

    source_status = obj.get("status") or {}
    status: dict[str, Any] = {}
    if "phase" in source_status:
        status["phase"] = _interned(source_status["phase"])
    conditions = []
    for condition in source_status.get("conditions") or ():
        if not isinstance(condition, Mapping):
            continue
        kind = condition.get("type")
        if kind in _HEALTH_CONDITIONS:
            kept = {"type": _interned(kind), "status": _interned(condition.get("status"))}
            if kind == "Ready" or times:
                since = condition.get("lastTransitionTime")
                if since:
                    kept["lastTransitionTime"] = _interned(since)
        elif times:
            kept = {"type": _interned(kind)}
            if condition.get("lastTransitionTime"):
                kept["lastTransitionTime"] = _interned(condition["lastTransitionTime"])
        else:
            continue
        if times and condition.get("lastProbeTime"):
            kept["lastProbeTime"] = _interned(condition["lastProbeTime"])
        conditions.append(kept)
    if conditions:
        status["conditions"] = conditions
    pod = {"metadata": metadata, "status": status}
    try:
        pod[HEALTH_FIELD] = PodHealth.from_pod(pod)
    except ValueError:
        pod[HEALTH_FIELD] = None  # reconcile reads it again and counts it as malformed
    return pod


def slim_pod(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The transform for ``sync_time_algorithm: clock`` (the default)."""
    return _slim(obj, times=False)


def slim_pod_with_times(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The transform for ``sync_time_algorithm: status``: also every time that dates an event."""
    return _slim(obj, times=True)


def pod_transform(algorithm: str) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    return slim_pod_with_times if algorithm == "status" else slim_pod


_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def slim_protector(obj: dict[str, Any]) -> dict[str, Any]:
    """The aggregator's PodProtector cache transform: the object without
    ``metadata.managedFields`` and the last-applied annotation, which a real API server adds
    and nothing here reads (status writes send only identity and preconditions)."""
    metadata = obj.get("metadata")
    if not metadata:
        return obj
    annotations = metadata.get("annotations") or {}
    if "managedFields" not in metadata and _LAST_APPLIED not in annotations:
        return obj
    metadata = {k: v for k, v in metadata.items() if k != "managedFields"}
    if _LAST_APPLIED in annotations:
        metadata["annotations"] = {k: v for k, v in annotations.items() if k != _LAST_APPLIED}
    return {**obj, "metadata": metadata}


def counting_view(pod: Mapping[str, Any]) -> tuple[Any, ...]:
    """Everything of a (slim) pod that a count or a protector's choice of pods reads: two
    versions with the same view count the same, so an event between them needs no reconcile
    (it still moves the cell's sync time)."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    ready = scheduled = None
    for condition in status.get("conditions") or ():
        kind = condition.get("type")
        if kind == "Ready":
            ready = (condition.get("status"), condition.get("lastTransitionTime"))
        elif kind == "PodScheduled":
            scheduled = condition.get("status")
    return (
        metadata.get("labels"),
        metadata.get("deletionTimestamp"),
        status.get("phase"),
        ready,
        scheduled,
    )
