"""Planning a drain against the live clusters: what ``console/planner.py`` needs, gathered.

Shared by the REST API (``POST /api/v1/cells/{cell}/plan-deletion/``), the console's "Plan a
drain" page and ``manage.py plan-drain``. Reads only: the cell's pods (one list, or one GET per
named pod), its nodes, its webhook registration and, when that registration selects
namespaces, the labels of the pods' namespaces; the PodProtectors come from the console's cache
or from a fresh list of the core cluster. Nothing is written anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from audit.actions import InvalidAction, kube_cause
from console.cache import protector_cache
from console.planner import EVICTION, OPERATIONS, Plan, PodTarget, Registration, plan_deletions
from protectors.clusters import CORE, client_for, config
from protectors.constants import WEBHOOK_CONFIG_NAME
from protectors.health import HealthCriterion
from protectors.kube.client import (
    NAMESPACES,
    PODPROTECTORS,
    PODS,
    VALIDATING_WEBHOOKS,
    KubeClient,
    KubeError,
    Resource,
)
from protectors.selectors import SelectorError, parse_selector_string

NODES = Resource("", "v1", "nodes", namespaced=False)
# One plan judges at most this many pods: a larger selection is almost surely a mistake, and
# its answer would be too long to read.
MAX_PODS = 5000
MAX_NAMED_PODS = 500
NODE_LIST_TIMEOUT = 3.0

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_DNS_LABEL = re.compile(_LABEL)


@dataclass(frozen=True)
class Selection:
    """Which pods of the cell a plan covers: a node's (optionally narrowed by a label selector
    and a namespace), a selector's, or pods named one by one."""

    node: str | None = None
    selector: str | None = None
    namespace: str | None = None
    pods: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.pods and (self.node or self.selector or self.namespace):
            raise InvalidAction(
                "name pods one by one, or select them by node/selector/namespace, not both",
                field="pods",
            )
        if not (self.pods or self.node or self.selector):
            raise InvalidAction(
                "say which pods to plan for: a node, a label selector, or a list of pods",
                field="node",
            )
        if self.node is not None:
            _check_name(self.node, "node", _DNS_SUBDOMAIN, 253, "a node name")
        if self.namespace is not None:
            _check_name(self.namespace, "namespace", _DNS_LABEL, 63, "a namespace")
        if self.selector is not None:
            self.label_query()  # raises for a malformed selector
        if len(self.pods) > MAX_NAMED_PODS:
            raise InvalidAction(f"name at most {MAX_NAMED_PODS} pods", field="pods")
        for namespace, name in self.pods:
            _check_name(namespace, "pods", _DNS_LABEL, 63, "a namespace")
            _check_name(name, "pods", _DNS_SUBDOMAIN, 253, "a pod name")

    @property
    def is_node_drain(self) -> bool:
        return self.node is not None

    def label_query(self) -> str | None:
        if not self.selector:
            return None
        try:
            return parse_selector_string(self.selector).to_query_string() or None
        except SelectorError as error:
            raise InvalidAction(f"selector: {error}", field="selector") from None

    def describe(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "selector": self.selector,
            "namespace": self.namespace,
            "pods": [{"namespace": ns, "name": name} for ns, name in self.pods],
        }


def _check_name(value: str, field: str, pattern: re.Pattern[str], limit: int, what: str) -> None:
    if not value or len(value) > limit or not pattern.fullmatch(value):
        raise InvalidAction(f"{value!r} is not {what}", field=field)


def parse_criterion(value: str | None) -> HealthCriterion | None:
    """An explicitly asked criterion; unlike the annotation, an unknown name is an error."""
    if value in (None, ""):
        return None
    try:
        return HealthCriterion(value)
    except ValueError:
        choices = ", ".join(c.value for c in HealthCriterion)
        raise InvalidAction(
            f"healthCriterion must be one of {choices}", field="healthCriterion"
        ) from None


def _require_cell(cell_id: str) -> None:
    if config().cell(cell_id) is None:
        raise InvalidAction(
            f"unknown cell {cell_id!r}; configured cells: {config().cell_ids}",
            field="cell",
            code="unknown_cell",
        )


def plan(
    cell_id: str,
    selection: Selection,
    *,
    operation: str = EVICTION,
    criterion: HealthCriterion | None = None,
    fresh_protectors: bool = False,
) -> Plan:
    """The plan for ``selection`` in ``cell_id`` now.

    PodProtectors come from the console's cache (``CacheNotSynced`` until it has listed), or,
    with ``fresh_protectors``, from one list of the core cluster (for one-shot processes such as
    ``manage.py plan-drain``). Raises InvalidAction for bad input and KubeError when a cluster
    fails us.
    """
    _require_cell(cell_id)
    if operation not in OPERATIONS:
        raise InvalidAction(f"operation must be one of {OPERATIONS}", field="operation")
    if criterion is not None and operation != EVICTION:
        raise InvalidAction(
            "healthCriterion is what an Eviction asks for; a DELETE carries none",
            field="healthCriterion",
        )
    cell = client_for(cell_id)
    targets = _targets(cell, selection)
    protectors = _protectors(fresh_protectors, {t.namespace for t in targets})
    registration, notes = _registration(cell)
    namespace_labels = _namespace_labels(cell, registration, targets, notes)
    return plan_deletions(
        config(),
        cell_id,
        targets,
        protectors,
        datetime.now(UTC),
        operation=operation,
        criterion=criterion,
        registration=registration,
        namespace_labels=namespace_labels,
        node_drain=selection.is_node_drain,
        notes=notes,
    )


def _targets(cell: KubeClient, selection: Selection) -> list[PodTarget]:
    if selection.pods:
        targets = []
        for namespace, name in selection.pods:
            try:
                pod = cell.get(PODS, namespace, name)
            except KubeError as error:
                if not error.is_not_found:
                    raise
                pod = None
            targets.append(PodTarget(namespace, name, pod))
        return targets
    if selection.node is not None:
        try:
            cell.get(NODES, None, selection.node)
        except KubeError as error:
            if error.is_not_found:
                raise InvalidAction(
                    f"no node {selection.node!r} in this cell", field="node", code="unknown_node"
                ) from None
            raise
    listed = cell.list_all(
        PODS,
        selection.namespace,
        label_selector=selection.label_query(),
        field_selector=f"spec.nodeName={selection.node}" if selection.node else None,
    )
    items = listed.get("items") or []
    if len(items) > MAX_PODS:
        raise InvalidAction(
            f"the selection holds {len(items)} pods; plan at most {MAX_PODS} at once",
            field="selector",
        )
    targets = [
        PodTarget(
            (pod.get("metadata") or {}).get("namespace", ""),
            (pod.get("metadata") or {}).get("name", ""),
            pod,
        )
        for pod in items
    ]
    return sorted(targets, key=lambda t: (t.namespace, t.name))


def _protectors(fresh: bool, namespaces: set[str]) -> list[Mapping[str, Any]]:
    if not namespaces:
        return []
    if fresh:
        scope = config().core.namespace or None
        listed = client_for(CORE).list_all(PODPROTECTORS, scope)
        items = listed.get("items") or []
    else:
        items = protector_cache().informer.items()
    return [o for o in items if (o.get("metadata") or {}).get("namespace") in namespaces]


def _registration(cell: KubeClient) -> tuple[Registration | None, list[str]]:
    try:
        obj = cell.get(VALIDATING_WEBHOOKS, None, WEBHOOK_CONFIG_NAME)
    except KubeError as error:
        if error.is_not_found:
            return None, []
        return Registration.from_config(config()), [
            f"The webhook registration could not be read ({kube_cause(error)})."
        ]
    return Registration.from_object(obj), []


def _namespace_labels(
    cell: KubeClient,
    registration: Registration | None,
    targets: Sequence[PodTarget],
    notes: list[str],
) -> dict[str, Mapping[str, str]] | None:
    """The labels of the targets' namespaces, only when the registration selects namespaces."""
    if registration is None or all(ns.is_empty for ns, _ in registration.selectors):
        return None
    labels: dict[str, Mapping[str, str]] = {}
    for namespace in sorted({t.namespace for t in targets if t.pod is not None}):
        try:
            obj = cell.get(NAMESPACES, None, namespace)
        except KubeError as error:
            notes.append(
                f"Namespace {namespace} could not be read ({kube_cause(error)}): its pods are "
                "assumed to be sent to the webhook."
            )
            continue
        labels[namespace] = (obj.get("metadata") or {}).get("labels") or {}
    # A namespace missing here counts as unknown: assumed to be sent (see the planner).
    return labels


# -- nodes, for the page's picker ------------------------------------------------------------------


@dataclass(frozen=True)
class NodeInfo:
    name: str
    ready: bool
    cordoned: bool


@dataclass(frozen=True)
class CellNodes:
    cell_id: str
    nodes: tuple[NodeInfo, ...]
    error: str | None = None


def list_nodes(cell_id: str) -> CellNodes:
    """The cell's nodes (never raises for the cluster: the error is in the answer)."""
    try:
        client = client_for(cell_id, timeout=NODE_LIST_TIMEOUT)
        listed = client.list_all(NODES)
    except KubeError as error:
        return CellNodes(cell_id, (), kube_cause(error))
    nodes = []
    for node in listed.get("items") or []:
        conditions = (node.get("status") or {}).get("conditions") or ()
        ready = any(
            isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True"
            for c in conditions
        )
        nodes.append(
            NodeInfo(
                name=(node.get("metadata") or {}).get("name", ""),
                ready=ready,
                cordoned=bool((node.get("spec") or {}).get("unschedulable")),
            )
        )
    return CellNodes(cell_id, tuple(sorted(nodes, key=lambda n: n.name)))


def nodes_of_every_cell() -> list[CellNodes]:
    """Every configured cell's nodes, listed in parallel: one dead cell costs one timeout."""
    cells = config().cell_ids
    if not cells:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(cells))) as pool:
        return list(pool.map(list_nodes, cells))


# -- the plan as JSON (API, --json, the page) ------------------------------------------------------


def plan_as_dict(plan: Plan, selection: Selection | None = None) -> dict[str, Any]:
    return {
        "cell": plan.cell_id,
        "operation": plan.operation,
        "health_criterion": plan.criterion.value if plan.criterion else None,
        "planned_at": plan.planned_at.isoformat().replace("+00:00", "Z"),
        "selection": selection.describe() if selection else None,
        "blocked": plan.blocked,
        "counts": plan.counts,
        "notes": list(plan.notes),
        "pods": [
            {
                "namespace": pod.namespace,
                "name": pod.name,
                "node": pod.node,
                "verdict": pod.verdict.value,
                "reason": pod.reason,
                "refusal": (
                    {
                        "protector": pod.refusal.protector,
                        "code": pod.refusal.code,
                        "message": pod.refusal.message,
                    }
                    if pod.refusal
                    else None
                ),
                "contended": pod.contended,
                "protectors": [{"protector": key, "result": result} for key, result in pod.steps],
                "drain_notes": list(pod.drain_notes),
            }
            for pod in plan.pods
        ],
        "protectors": [
            {
                "namespace": p.namespace,
                "name": p.name,
                "min_available": p.min_available,
                "aggregated_available": p.aggregated,
                "estimated_available": p.estimated,
                "unconfirmed": p.unconfirmed,
                "requested": p.requested,
                "admitted": p.admitted,
                "refused": p.refused,
                "can_go_now": p.capacity,
            }
            for p in plan.protectors
        ],
    }
