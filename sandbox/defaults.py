"""Defaulting of built-in kinds, as a v1.24 apiserver fills fields on create.

Only the defaults visible in the recorded transcripts and the ones clients rely on are applied:
the point is that objects read back look like a real cluster's, not full API machinery.
"""

from __future__ import annotations

from typing import Any

_DEFAULT_TOLERATIONS = (
    {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
    {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
)


def _image_pull_policy(image: str) -> str:
    # Untagged or :latest images are pulled every time; pinned tags only when absent.
    tail = image.rsplit("/", 1)[-1]
    if "@" in tail:
        return "IfNotPresent"
    if ":" not in tail or tail.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def default_container(c: dict[str, Any]) -> dict[str, Any]:
    out = dict(c)
    out.setdefault("resources", {})
    out.setdefault("terminationMessagePath", "/dev/termination-log")
    out.setdefault("terminationMessagePolicy", "File")
    out.setdefault("imagePullPolicy", _image_pull_policy(str(out.get("image", ""))))
    return out


def default_pod_spec(spec: dict[str, Any]) -> dict[str, Any]:
    out = dict(spec)
    for field_name in ("containers", "initContainers"):
        if isinstance(out.get(field_name), list):
            out[field_name] = [default_container(c) for c in out[field_name]]
    out.setdefault("restartPolicy", "Always")
    out.setdefault("terminationGracePeriodSeconds", 30)
    out.setdefault("dnsPolicy", "ClusterFirst")
    out.setdefault("securityContext", {})
    out.setdefault("schedulerName", "default-scheduler")
    return out


def qos_class(spec: dict[str, Any]) -> str:
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        requests, limits = res.get("requests") or {}, res.get("limits") or {}
        if requests or limits:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in limits or requests.get(r, limits.get(r)) != limits.get(r):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def pod_on_create(obj: dict[str, Any]) -> None:
    spec = default_pod_spec(obj.get("spec") or {})
    # DefaultTolerationSeconds admission: tolerate not-ready/unreachable nodes for 5 minutes.
    tolerations = list(spec.get("tolerations") or [])
    present = {(t.get("key"), t.get("effect")) for t in tolerations}
    for t in _DEFAULT_TOLERATIONS:
        if (t["key"], t["effect"]) not in present and (t["key"], None) not in present:
            tolerations.append(dict(t))
    spec["tolerations"] = tolerations
    spec.setdefault("priority", 0)
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    obj["spec"] = spec
    obj["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}


def normalize_pod_status(status: dict[str, Any] | None) -> dict[str, Any] | None:
    """Pod conditions always carry lastProbeTime (null when unset), as the Go encoder writes."""
    if not status or not isinstance(status.get("conditions"), list):
        return status
    conditions = []
    for c in status["conditions"]:
        if not isinstance(c, dict):
            conditions.append(c)
            continue
        ordered = {k: c[k] for k in ("type", "status") if k in c}
        ordered["lastProbeTime"] = c.get("lastProbeTime")
        for k, v in c.items():
            if k not in ordered:
                ordered[k] = v
        conditions.append(ordered)
    return {**status, "conditions": conditions}


def _default_template(spec: dict[str, Any]) -> None:
    template = dict(spec.get("template") or {})
    meta = dict(template.get("metadata") or {})
    meta.setdefault("creationTimestamp", None)
    template["metadata"] = meta
    template["spec"] = default_pod_spec(template.get("spec") or {})
    spec["template"] = template


def deployment_on_create(obj: dict[str, Any]) -> None:
    spec = dict(obj.get("spec") or {})
    spec.setdefault("replicas", 1)
    spec.setdefault(
        "strategy",
        {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
    )
    _default_template(spec)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    obj["spec"] = spec
    obj["status"] = {}


def replicaset_on_create(obj: dict[str, Any]) -> None:
    spec = dict(obj.get("spec") or {})
    spec.setdefault("replicas", 1)
    _default_template(spec)
    obj["spec"] = spec
    obj["status"] = {"replicas": 0}


def statefulset_on_create(obj: dict[str, Any]) -> None:
    spec = dict(obj.get("spec") or {})
    spec.setdefault("replicas", 1)
    _default_template(spec)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    spec.setdefault("revisionHistoryLimit", 10)
    obj["spec"] = spec
    obj["status"] = {"replicas": 0, "availableReplicas": 0}


def namespace_on_create(obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    meta["labels"] = {**(meta.get("labels") or {}), "kubernetes.io/metadata.name": meta["name"]}
    spec = dict(obj.get("spec") or {})
    spec.setdefault("finalizers", ["kubernetes"])
    obj["spec"] = spec
    obj["status"] = {"phase": "Active"}


def node_on_create(obj: dict[str, Any]) -> None:
    spec = dict(obj.get("spec") or {})
    # TaintNodesByCondition: a new node is not ready until its kubelet says so.
    taints = list(spec.get("taints") or [])
    if not any(t.get("key") == "node.kubernetes.io/not-ready" for t in taints):
        taints.append({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"})
    spec["taints"] = taints
    obj["spec"] = spec
    status = dict(obj.get("status") or {})
    status.setdefault("daemonEndpoints", {"kubeletEndpoint": {"Port": 0}})
    info_keys = (
        "machineID",
        "systemUUID",
        "bootID",
        "kernelVersion",
        "osImage",
        "containerRuntimeVersion",
        "kubeletVersion",
        "kubeProxyVersion",
        "operatingSystem",
        "architecture",
    )
    status.setdefault("nodeInfo", dict.fromkeys(info_keys, ""))
    obj["status"] = status


def webhook_configuration_on_write(obj: dict[str, Any]) -> None:
    hooks = []
    for w in obj.get("webhooks") or []:
        w = dict(w)
        w.setdefault("failurePolicy", "Fail")
        w.setdefault("matchPolicy", "Equivalent")
        w.setdefault("namespaceSelector", {})
        w.setdefault("objectSelector", {})
        w.setdefault("timeoutSeconds", 10)
        w["rules"] = [{**r, "scope": r.get("scope", "*")} for r in w.get("rules") or []]
        hooks.append(w)
    if "webhooks" in obj:
        obj["webhooks"] = hooks


def crd_on_create(obj: dict[str, Any]) -> None:
    spec = dict(obj.get("spec") or {})
    spec.setdefault("conversion", {"strategy": "None"})
    obj["spec"] = spec
    stored = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
    obj["status"] = {
        "conditions": None,
        "acceptedNames": {"plural": "", "kind": ""},
        "storedVersions": stored,
    }


def service_on_create(obj: dict[str, Any]) -> None:
    spec = dict(obj.get("spec") or {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    ports = []
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port = dict(port)
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        ports.append(port)
    if "ports" in spec:
        spec["ports"] = ports
    if spec["type"] != "ExternalName":
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    obj["spec"] = spec
    obj["status"] = {"loadBalancer": {}}


def allocate_cluster_ip(spec: dict[str, Any], used: set[str]) -> None:
    """Give a ClusterIP service the next free address of 10.96.0.0/12 (10.96.0.1 is the
    `kubernetes` service's), unless it asked for one or is headless/ExternalName."""
    if spec.get("type") == "ExternalName":
        return
    wanted = spec.get("clusterIP")
    if not wanted:
        for offset in range(10, 1 << 20):
            candidate = f"10.{96 + (offset >> 16)}.{(offset >> 8) & 255}.{offset & 255}"
            if candidate not in used:
                wanted = candidate
                break
        spec["clusterIP"] = wanted
    spec.setdefault("clusterIPs", [wanted])


def secret_on_create(obj: dict[str, Any]) -> None:
    obj.setdefault("type", "Opaque")


def pod_disruption_budget_on_create(obj: dict[str, Any]) -> None:
    # The disruption controller fills these in; until it runs nothing may be disrupted.
    obj["status"] = {
        "disruptionsAllowed": 0,
        "currentHealthy": 0,
        "desiredHealthy": 0,
        "expectedPods": 0,
    }


ON_CREATE = {
    ("", "services"): service_on_create,
    ("", "secrets"): secret_on_create,
    ("policy", "poddisruptionbudgets"): pod_disruption_budget_on_create,
    ("", "pods"): pod_on_create,
    ("", "namespaces"): namespace_on_create,
    ("", "nodes"): node_on_create,
    ("apps", "deployments"): deployment_on_create,
    ("apps", "replicasets"): replicaset_on_create,
    ("apps", "statefulsets"): statefulset_on_create,
    ("apiextensions.k8s.io", "customresourcedefinitions"): crd_on_create,
    (
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
    ): webhook_configuration_on_write,
}
