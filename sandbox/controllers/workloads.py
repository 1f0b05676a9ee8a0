"""Pure helpers of the workload controllers: template hashes, pods from templates, which pods
to delete first, and the rolling-update arithmetic."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import orjson

from sandbox.controllers.base import condition, parse_time, pod_available_in, pod_is_ready
from sandbox.defaults import default_pod_spec

POD_TEMPLATE_HASH = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS_ANNOTATION = "deployment.kubernetes.io/max-replicas"
# The alphabet of apimachinery's SafeEncodeString: no vowels, no confusable characters.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_FNV_OFFSET, _FNV_PRIME = 0x811C9DC5, 0x01000193


def fnv1a_32(data: bytes) -> int:
    h = _FNV_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def safe_encode(text: str) -> str:
    return "".join(_SAFE_ALPHABET[ord(c) % len(_SAFE_ALPHABET)] for c in text)


def normalized_template(template: dict[str, Any] | None) -> dict[str, Any]:
    """A pod template with defaults applied and without the pod-template-hash label, so that
    a Deployment's template compares equal to its ReplicaSet's however either was written."""
    template = template or {}
    meta = dict(template.get("metadata") or {})
    meta.pop("creationTimestamp", None)
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != POD_TEMPLATE_HASH}
    meta["labels"] = labels or None
    meta = {k: v for k, v in meta.items() if v not in (None, {}, [])}
    return {"metadata": meta, "spec": default_pod_spec(template.get("spec") or {})}


def template_hash(template: dict[str, Any] | None, collision_count: int | None = None) -> str:
    """The pod-template-hash label value: FNV-1a of the template, safe-encoded as the
    deployment controller does (the values differ from a real cluster's: the input is our
    JSON, not Go's struct dump)."""
    data = orjson.dumps(normalized_template(template), option=orjson.OPT_SORT_KEYS)
    if collision_count:
        data += str(collision_count).encode()
    return safe_encode(str(fnv1a_32(data)))


def templates_equal(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    return normalized_template(a) == normalized_template(b)


def pod_from_template(
    template: dict[str, Any] | None,
    owner_ref: dict[str, Any],
    *,
    name: str | None = None,
    generate_name: str | None = None,
    extra_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    template = orjson.loads(orjson.dumps(template or {}))
    tmeta = template.get("metadata") or {}
    meta: dict[str, Any] = {}
    if name:
        meta["name"] = name
    if generate_name:
        meta["generateName"] = generate_name
    labels = {**(tmeta.get("labels") or {}), **(extra_labels or {})}
    if labels:
        meta["labels"] = labels
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        meta["finalizers"] = list(tmeta["finalizers"])
    meta["ownerReferences"] = [owner_ref]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template.get("spec") or {}}


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_order_key(pod: dict[str, Any]) -> tuple[Any, ...]:
    """Sort key putting the pods a ReplicaSet should delete first in front: unscheduled
    before scheduled, pending before running, unready before ready, more restarts first,
    newer before older (the ordering of the replicaset controller, simplified)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    restarts = sum(int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or [])
    created = parse_time(pod["metadata"].get("creationTimestamp"))
    return (
        bool(spec.get("nodeName")),
        _PHASE_RANK.get(str(status.get("phase")), 1),
        pod_is_ready(pod),
        -restarts,
        -(created.timestamp() if created else 0.0),
        pod["metadata"]["name"],
    )


def count_available(pods: list[dict[str, Any]], min_ready: int, now: datetime) -> tuple[int, float]:
    """(available pods, seconds until the next ready pod becomes available or inf)."""
    available, soonest = 0, math.inf
    for pod in pods:
        left = pod_available_in(pod, min_ready, now)
        if left is None:
            continue
        if left <= 0:
            available += 1
        else:
            soonest = min(soonest, left)
    return available, soonest


def ready_since(pod: dict[str, Any]) -> str | None:
    return (condition(pod, "Ready") or {}).get("lastTransitionTime")


def resolve_int_or_percent(value: Any, total: int, round_up: bool) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        try:
            pct = int(text[:-1])
        except ValueError:
            return 0
        exact = pct * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    try:
        return int(text)
    except ValueError:
        return 0


def surge_and_unavailable(spec: dict[str, Any]) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) of a RollingUpdate Deployment, resolved against replicas;
    never both zero (the controller then allows one unavailable pod)."""
    replicas = int(spec.get("replicas", 1))
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    surge = resolve_int_or_percent(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = resolve_int_or_percent(
        rolling.get("maxUnavailable", "25%"), replicas, round_up=False
    )
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, min(unavailable, replicas)
