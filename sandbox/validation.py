"""Validation of built-in kinds that a deployment applies (Service, Secret,
PodDisruptionBudget, RBAC), shaped as kube-apiserver v1.24's field errors.

Only the rules an install manifest can plausibly break are checked: required fields, enums,
ranges, mutually exclusive fields and the fields that may not change on update. The causes are
rendered by `errors.invalid` into the same 422 Invalid Status a real apiserver answers with.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

from sandbox import errors

Cause = dict[str, str]
Validator = Callable[[dict[str, Any], dict[str, Any] | None], list[Cause]]

RBAC_GROUP = "rbac.authorization.k8s.io"
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_PERCENT = re.compile(r"^[0-9]+%$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
_PROTOCOLS = ("TCP", "UDP", "SCTP")


def _quote(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def required(field: str, detail: str = "") -> Cause:
    message = f"Required value: {detail}" if detail else "Required value"
    return {"reason": "FieldValueRequired", "message": message, "field": field}


def invalid(field: str, value: Any, detail: str) -> Cause:
    return {
        "reason": "FieldValueInvalid",
        "message": f"Invalid value: {_quote(value)}: {detail}",
        "field": field,
    }


def not_supported(field: str, value: Any, allowed: tuple[str, ...]) -> Cause:
    choices = ", ".join(f'"{a}"' for a in allowed)
    return {
        "reason": "FieldValueNotSupported",
        "message": f"Unsupported value: {_quote(value)}: supported values: {choices}",
        "field": field,
    }


def duplicate(field: str, value: Any) -> Cause:
    return {
        "reason": "FieldValueDuplicate",
        "message": f"Duplicate value: {_quote(value)}",
        "field": field,
    }


# -- RBAC -------------------------------------------------------------------------------------


def _rules(obj: dict[str, Any], namespaced: bool) -> list[Cause]:
    causes: list[Cause] = []
    for index, rule in enumerate(obj.get("rules") or []):
        path = f"rules[{index}]"
        if not isinstance(rule, dict):
            causes.append(invalid(path, rule, "must be an object"))
            continue
        if not rule.get("verbs"):
            causes.append(required(f"{path}.verbs", "verbs must contain at least one value"))
        if rule.get("nonResourceURLs"):
            if namespaced:
                causes.append(
                    invalid(
                        f"{path}.nonResourceURLs",
                        ",".join(rule["nonResourceURLs"]),
                        "namespaced rules cannot apply to non-resource URLs",
                    )
                )
            if rule.get("apiGroups") or rule.get("resources"):
                causes.append(
                    invalid(
                        f"{path}.nonResourceURLs",
                        ",".join(rule["nonResourceURLs"]),
                        "rules cannot apply to both regular resources and non-resource URLs",
                    )
                )
            continue
        if not rule.get("apiGroups"):
            causes.append(
                required(f"{path}.apiGroups", "resource rules must supply at least one api group")
            )
        if not rule.get("resources"):
            causes.append(
                required(f"{path}.resources", "resource rules must supply at least one resource")
            )
    return causes


def role(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    return _rules(obj, namespaced=True)


def cluster_role(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    return _rules(obj, namespaced=False)


def _binding(obj: dict[str, Any], old: dict[str, Any] | None, cluster: bool) -> list[Cause]:
    causes: list[Cause] = []
    ref = obj.get("roleRef")
    if not isinstance(ref, dict):
        causes.append(required("roleRef"))
    else:
        if ref.get("apiGroup") != RBAC_GROUP:
            causes.append(not_supported("roleRef.apiGroup", ref.get("apiGroup", ""), (RBAC_GROUP,)))
        kinds = ("ClusterRole",) if cluster else ("Role", "ClusterRole")
        if ref.get("kind") not in kinds:
            causes.append(not_supported("roleRef.kind", ref.get("kind", ""), kinds))
        if not ref.get("name"):
            causes.append(required("roleRef.name"))
        if old is not None and old.get("roleRef") != ref:
            causes.append(invalid("roleRef", ref.get("name", ""), "cannot change roleRef"))
    for index, subject in enumerate(obj.get("subjects") or []):
        path = f"subjects[{index}]"
        if not isinstance(subject, dict):
            causes.append(invalid(path, subject, "must be an object"))
            continue
        if not subject.get("name"):
            causes.append(required(f"{path}.name"))
        kind = subject.get("kind")
        if kind == "ServiceAccount":
            if subject.get("apiGroup"):
                causes.append(not_supported(f"{path}.apiGroup", subject["apiGroup"], ("",)))
            if cluster and not subject.get("namespace"):
                causes.append(required(f"{path}.namespace"))
        elif kind in ("User", "Group"):
            if subject.get("apiGroup") != RBAC_GROUP:
                causes.append(
                    not_supported(f"{path}.apiGroup", subject.get("apiGroup", ""), (RBAC_GROUP,))
                )
        else:
            causes.append(
                not_supported(f"{path}.kind", kind or "", ("ServiceAccount", "User", "Group"))
            )
    return causes


def role_binding(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    return _binding(obj, old, cluster=False)


def cluster_role_binding(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    return _binding(obj, old, cluster=True)


# -- policy -----------------------------------------------------------------------------------


def _int_or_percent(field: str, value: Any) -> list[Cause]:
    if isinstance(value, bool):
        return [invalid(field, value, "must be an integer or percentage")]
    if isinstance(value, int):
        return [] if value >= 0 else [invalid(field, value, "must be greater than or equal to 0")]
    if isinstance(value, str):
        if not _PERCENT.match(value):
            return [
                invalid(
                    field,
                    value,
                    "a valid percent string must be a numeric string followed by an ending "
                    "'%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                )
            ]
        if int(value[:-1]) > 100:
            return [invalid(field, value, "must not be greater than 100%")]
        return []
    return [invalid(field, value, "must be an integer or percentage")]


def pod_disruption_budget(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    has_min, has_max = spec.get("minAvailable") is not None, spec.get("maxUnavailable") is not None
    if has_min and has_max:
        causes.append(
            invalid("spec", "object", "minAvailable and maxUnavailable cannot be both set")
        )
    for key in ("minAvailable", "maxUnavailable"):
        if spec.get(key) is not None:
            causes += _int_or_percent(f"spec.{key}", spec[key])
    selector = spec.get("selector")
    if selector is not None:
        from protectors.selectors import LabelSelector, SelectorError

        try:
            LabelSelector.from_dict(selector)
        except SelectorError as exc:
            causes.append(invalid("spec.selector", "object", str(exc)))
    return causes


# -- core -------------------------------------------------------------------------------------


def service(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    kind = spec.get("type", "ClusterIP")
    if kind not in _SERVICE_TYPES:
        causes.append(not_supported("spec.type", kind, _SERVICE_TYPES))
    headless = spec.get("clusterIP") == "None"
    ports = spec.get("ports") or []
    if not ports and kind != "ExternalName" and not headless:
        causes.append(required("spec.ports"))
    names: set[str] = set()
    for index, port in enumerate(ports):
        path = f"spec.ports[{index}]"
        if not isinstance(port, dict):
            causes.append(invalid(path, port, "must be an object"))
            continue
        name = port.get("name") or ""
        if len(ports) > 1 and not name:
            causes.append(required(f"{path}.name"))
        elif name:
            if not _PORT_NAME.match(name) or len(name) > 63:
                causes.append(invalid(f"{path}.name", name, "must be a DNS label"))
            if name in names:
                causes.append(duplicate(f"{path}.name", name))
            names.add(name)
        number = port.get("port")
        if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 65536:
            causes.append(invalid(f"{path}.port", number, "must be between 1 and 65535, inclusive"))
        protocol = port.get("protocol", "TCP")
        if protocol not in _PROTOCOLS:
            causes.append(not_supported(f"{path}.protocol", protocol, _PROTOCOLS))
        target = port.get("targetPort")
        if isinstance(target, int) and not isinstance(target, bool) and not 0 < target < 65536:
            causes.append(
                invalid(f"{path}.targetPort", target, "must be between 1 and 65535, inclusive")
            )
        elif isinstance(target, str) and not (
            _PORT_NAME.match(target) and len(target) <= 15 and re.search("[a-z]", target)
        ):
            causes.append(invalid(f"{path}.targetPort", target, "must be an IANA_SVC_NAME"))
    if old is not None:
        before = (old.get("spec") or {}).get("clusterIP")
        after = spec.get("clusterIP")
        if before and after and before != after:
            causes.append(
                invalid("spec.clusterIPs[0]", f'[]string{{"{after}"}}', "may not change once set")
            )
    return causes


def secret_data(obj: dict[str, Any]) -> None:
    """Fold ``stringData`` into ``data`` and check that every value is base64, as the
    apiserver's decoding does; raises the 400 a real apiserver answers with."""
    data = obj.get("data")
    if data is not None and not isinstance(data, dict):
        raise errors.bad_request(
            'Secret in version "v1" cannot be handled as a Secret: data must be an object'
        )
    data = dict(data or {})
    for key, value in data.items():
        try:
            base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise errors.bad_request(
                f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data '
                f"in data[{key}]"
            ) from None
    string_data = obj.pop("stringData", None) or {}
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    if data or "data" in obj:
        obj["data"] = data


def secret(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    causes: list[Cause] = []
    data = obj.get("data") or {}
    for key in data:
        if not _CONFIG_KEY.match(key) or len(key) > 253:
            causes.append(
                invalid(
                    f"data[{key}]",
                    key,
                    "a valid config key must consist of alphanumeric characters, '-', '_' or "
                    "'.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for "
                    "validation is '[-._a-zA-Z0-9]+')",
                )
            )
    kind = obj.get("type") or "Opaque"
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if kind == "kubernetes.io/service-account-token" and not annotations.get(
        "kubernetes.io/service-account.name"
    ):
        causes.append(required("metadata.annotations[kubernetes.io/service-account.name]"))
    if kind == "kubernetes.io/tls":
        causes += [required(f"data[{k}]") for k in ("tls.crt", "tls.key") if k not in data]
    if old is not None and (old.get("type") or "Opaque") != kind:
        causes.append(invalid("type", kind, "field is immutable"))
    return causes


VALIDATORS: dict[tuple[str, str], Validator] = {
    ("", "services"): service,
    ("", "secrets"): secret,
    ("policy", "poddisruptionbudgets"): pod_disruption_budget,
    (RBAC_GROUP, "roles"): role,
    (RBAC_GROUP, "clusterroles"): cluster_role,
    (RBAC_GROUP, "rolebindings"): role_binding,
    (RBAC_GROUP, "clusterrolebindings"): cluster_role_binding,
}
