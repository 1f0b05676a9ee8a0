"""Server-side printing: `meta.k8s.io/v1` Tables, what `kubectl get` asks for.

Column sets follow the apiserver's printers for the built-in kinds the sandbox serves; custom
resources use their CRD's additionalPrinterColumns, evaluated as simple JSONPaths.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sandbox.resources import ResourceType

Row = list[Any]
Column = dict[str, Any]

_NAME_DESC = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "http://kubernetes.io/docs/user-guide/identifiers#names"
)


def _col(
    name: str, type_: str = "string", priority: int = 0, fmt: str = "", description: str = ""
) -> Column:
    return {
        "name": name,
        "type": type_,
        "format": fmt,
        "description": description,
        "priority": priority,
    }


NAME_COLUMN = _col("Name", fmt="name", description=_NAME_DESC)


def human_duration(seconds: float) -> str:
    """kubectl's short human duration (as the apiserver's printers render ages)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rem = s % 60
        return f"{minutes}m" if rem == 0 else f"{minutes}m{rem}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rem = minutes % 60
        return f"{hours}h" if rem == 0 else f"{hours}h{rem}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rem = hours % 24
        return f"{hours // 24}d" if rem == 0 else f"{hours // 24}d{rem}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        t = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        try:
            t = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        except ValueError:
            return "<invalid>"
    return human_duration((datetime.now(UTC) - t).total_seconds())


def _meta_age(obj: dict[str, Any]) -> str:
    return age(obj["metadata"].get("creationTimestamp"))


# --- built-in printers ----------------------------------------------------------------------


def _pod_row(obj: dict[str, Any]) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    containers = spec.get("containers") or []
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    reason = status.get("reason") or status.get("phase") or ""
    for c in statuses:
        state = c.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
    if obj["metadata"].get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    gates = spec.get("readinessGates") or []
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    gates_text = "<none>"
    if gates:
        ok = sum(1 for g in gates if conditions.get(g.get("conditionType")) == "True")
        gates_text = f"{ok}/{len(gates)}"
    return [
        obj["metadata"]["name"],
        f"{ready}/{len(containers)}",
        reason,
        str(restarts),
        _meta_age(obj),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates_text,
    ]


_POD_COLUMNS = [
    NAME_COLUMN,
    _col("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
    _col("Status", description="The aggregate status of the containers in this pod."),
    _col(
        "Restarts",
        description="The number of times the containers in this pod have been "
        "restarted and when the last container in this pod has "
        "restarted.",
    ),
    _col(
        "Age",
        description="CreationTimestamp is a timestamp representing the server time "
        "when this object was created.",
    ),
    _col(
        "IP",
        priority=1,
        description="IP address allocated to the pod. Routable at least "
        "within the cluster. Empty if not yet allocated.",
    ),
    _col(
        "Node",
        priority=1,
        description="NodeName is a request to schedule this pod onto a specific node.",
    ),
    _col(
        "Nominated Node",
        priority=1,
        description="nominatedNodeName is set only when this pod preempts other pods on the node.",
    ),
    _col(
        "Readiness Gates",
        priority=1,
        description="If specified, all readiness gates will be evaluated for pod readiness.",
    ),
]


def _containers(obj: dict[str, Any]) -> tuple[str, str]:
    template = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    cs = template.get("containers") or []
    return (",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs))


def _selector_text(obj: dict[str, Any]) -> str:
    selector = (obj.get("spec") or {}).get("selector") or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for e in selector.get("matchExpressions") or []:
        op = e.get("operator")
        if op == "Exists":
            parts.append(e.get("key", ""))
        elif op == "DoesNotExist":
            parts.append("!" + e.get("key", ""))
        else:
            parts.append(f"{e.get('key')} {op.lower()} ({','.join(e.get('values') or [])})")
    return ",".join(parts) or "<none>"


def _deployment_row(obj: dict[str, Any]) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(obj)
    return [
        obj["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        _meta_age(obj),
        names,
        images,
        _selector_text(obj),
    ]


_DEPLOYMENT_COLUMNS = [
    NAME_COLUMN,
    _col("Ready"),
    _col("Up-to-date", "integer"),
    _col("Available", "integer"),
    _col("Age"),
    _col("Containers", priority=1),
    _col("Images", priority=1),
    _col("Selector", priority=1),
]


def _replicaset_row(obj: dict[str, Any]) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(obj)
    return [
        obj["metadata"]["name"],
        spec.get("replicas", 0),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        _meta_age(obj),
        names,
        images,
        _selector_text(obj),
    ]


_REPLICASET_COLUMNS = [
    NAME_COLUMN,
    _col("Desired", "integer"),
    _col("Current", "integer"),
    _col("Ready", "integer"),
    _col("Age"),
    _col("Containers", priority=1),
    _col("Images", priority=1),
    _col("Selector", priority=1),
]


def _statefulset_row(obj: dict[str, Any]) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(obj)
    return [
        obj["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        _meta_age(obj),
        names,
        images,
    ]


_STATEFULSET_COLUMNS = [
    NAME_COLUMN,
    _col("Ready"),
    _col("Age"),
    _col("Containers", priority=1),
    _col("Images", priority=1),
]


def _node_row(obj: dict[str, Any]) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Unknown"
    if ready is not None:
        state = "Ready" if ready.get("status") == "True" else "NotReady"
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = obj["metadata"].get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    info = status.get("nodeInfo") or {}
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    return [
        obj["metadata"]["name"],
        state,
        ",".join(roles) or "<none>",
        _meta_age(obj),
        info.get("kubeletVersion", ""),
        addresses.get("InternalIP", "<none>"),
        addresses.get("ExternalIP", "<none>"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


_NODE_COLUMNS = [
    NAME_COLUMN,
    _col("Status"),
    _col("Roles"),
    _col("Age"),
    _col("Version"),
    _col("Internal-IP", priority=1),
    _col("External-IP", priority=1),
    _col("OS-Image", priority=1),
    _col("Kernel-Version", priority=1),
    _col("Container-Runtime", priority=1),
]


def _namespace_row(obj: dict[str, Any]) -> Row:
    return [obj["metadata"]["name"], (obj.get("status") or {}).get("phase", ""), _meta_age(obj)]


_NAMESPACE_COLUMNS = [NAME_COLUMN, _col("Status"), _col("Age")]


def _event_row(obj: dict[str, Any]) -> Row:
    inv = obj.get("involvedObject") or {}
    last = (
        obj.get("lastTimestamp") or obj.get("eventTime") or obj["metadata"].get("creationTimestamp")
    )
    return [
        age(last),
        obj.get("type", ""),
        obj.get("reason", ""),
        f"{(inv.get('kind') or '').lower()}/{inv.get('name', '')}",
        obj.get("message", ""),
    ]


_EVENT_COLUMNS = [_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message")]


def _lease_row(obj: dict[str, Any]) -> Row:
    return [
        obj["metadata"]["name"],
        (obj.get("spec") or {}).get("holderIdentity", ""),
        _meta_age(obj),
    ]


_LEASE_COLUMNS = [NAME_COLUMN, _col("Holder"), _col("Age")]


def _webhook_row(obj: dict[str, Any]) -> Row:
    return [obj["metadata"]["name"], len(obj.get("webhooks") or []), _meta_age(obj)]


_WEBHOOK_COLUMNS = [NAME_COLUMN, _col("Webhooks", "integer"), _col("Age")]


def _crd_row(obj: dict[str, Any]) -> Row:
    return [obj["metadata"]["name"], obj["metadata"].get("creationTimestamp", "")]


_CRD_COLUMNS = [NAME_COLUMN, _col("Created At", "date")]

_BUILTIN: dict[tuple[str, str], tuple[list[Column], Callable[[dict[str, Any]], Row]]] = {
    ("", "pods"): (_POD_COLUMNS, _pod_row),
    ("", "nodes"): (_NODE_COLUMNS, _node_row),
    ("", "namespaces"): (_NAMESPACE_COLUMNS, _namespace_row),
    ("", "events"): (_EVENT_COLUMNS, _event_row),
    ("apps", "deployments"): (_DEPLOYMENT_COLUMNS, _deployment_row),
    ("apps", "replicasets"): (_REPLICASET_COLUMNS, _replicaset_row),
    ("apps", "statefulsets"): (_STATEFULSET_COLUMNS, _statefulset_row),
    ("coordination.k8s.io", "leases"): (_LEASE_COLUMNS, _lease_row),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): (
        _WEBHOOK_COLUMNS,
        _webhook_row,
    ),
    ("apiextensions.k8s.io", "customresourcedefinitions"): (_CRD_COLUMNS, _crd_row),
}


# --- custom resources -----------------------------------------------------------------------


def _json_path(obj: Any, path: str) -> Any:
    """Evaluate a simple JSONPath like `.spec.minAvailable` or `.status.cells[0].cellID`."""
    node = obj
    for part in filter(None, path.strip().lstrip("{").rstrip("}").lstrip("$").split(".")):
        index = None
        if part.endswith("]") and "[" in part:
            part, _, idx = part[:-1].partition("[")
            try:
                index = int(idx)
            except ValueError:
                return None
        if part:
            if not isinstance(node, dict):
                return None
            node = node.get(part)
        if index is not None:
            if not isinstance(node, list) or not -len(node) <= index < len(node):
                return None
            node = node[index]
        if node is None:
            return None
    return node


def _cell(type_: str, value: Any) -> Any:
    if value is None:
        return None
    if type_ == "integer":
        return (
            int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )
    if type_ == "number":
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if type_ == "boolean":
        return value if isinstance(value, bool) else None
    if type_ == "date":
        return age(value) if isinstance(value, str) else None
    if isinstance(value, str):
        return value
    import orjson

    return orjson.dumps(value).decode()


def _custom(rt: ResourceType, version: str) -> tuple[list[Column], Callable[[dict[str, Any]], Row]]:
    columns_spec = rt.printer_columns.get(version) or rt.printer_columns.get(rt.version) or []
    if not columns_spec:
        return [NAME_COLUMN, _col("Age", "date")], lambda o: [o["metadata"]["name"], _meta_age(o)]
    columns = [NAME_COLUMN] + [
        _col(
            c["name"],
            c.get("type", "string"),
            int(c.get("priority") or 0),
            c.get("format", ""),
            c.get("description", ""),
        )
        for c in columns_spec
    ]

    def row(obj: dict[str, Any]) -> Row:
        return [obj["metadata"]["name"]] + [
            _cell(c.get("type", "string"), _json_path(obj, c.get("jsonPath", "")))
            for c in columns_spec
        ]

    return columns, row


def printer(rt: ResourceType, version: str) -> tuple[list[Column], Callable[[dict[str, Any]], Row]]:
    if rt.custom:
        return _custom(rt, version)
    found = _BUILTIN.get(rt.key)
    if found is not None:
        return found
    return (
        [NAME_COLUMN, _col("Created At", "date")],
        lambda o: [o["metadata"]["name"], o["metadata"].get("creationTimestamp", "")],
    )


def partial_metadata(wire: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": wire["metadata"],
    }


def table(
    rt: ResourceType,
    version: str,
    objects: list[dict[str, Any]],
    wire: Callable[[dict[str, Any]], dict[str, Any]],
    include_object: str = "Metadata",
    list_meta: dict[str, Any] | None = None,
    headers: bool = True,
) -> dict[str, Any]:
    """A Table of `objects`; `wire` turns a stored object into its client form."""
    columns, make_row = printer(rt, version)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": make_row(obj)}
        if include_object == "Object":
            row["object"] = wire(obj)
        elif include_object != "None":
            row["object"] = partial_metadata(wire(obj))
        rows.append(row)
    body: dict[str, Any] = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta or {},
    }
    body["columnDefinitions"] = columns if headers else None
    body["rows"] = rows
    return body
