"""What the generator derives from a workload: the protector's name and spec (design.md §4
"Generator").

minAvailable = max(0, replicas - maxUnavailable). Percentages are resolved against replicas
rounding UP, so a percentage never grants less disruption than its integer reading would.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from protectors.model import INT32_MAX, Spec

__all__ = [
    "GeneratedSpec",
    "WorkloadSpecError",
    "deployment_protector_name",
    "deployment_protector_spec",
    "resolve_int_or_percent",
    "statefulset_protector_name",
    "statefulset_protector_spec",
]

DEPLOYMENT_DEFAULT_MAX_UNAVAILABLE = "25%"
STATEFULSET_DEFAULT_MAX_UNAVAILABLE = 1

_PERCENT = re.compile(r"\+?(\d+)%")


class WorkloadSpecError(ValueError):
    """A workload whose spec cannot be turned into a protector spec; names the field."""


class GeneratedSpec(NamedTuple):
    min_available: int
    min_ready_seconds: int
    selector: dict[str, Any]

    def to_spec(self) -> Spec:
        return Spec(
            min_available=self.min_available,
            min_ready_seconds=self.min_ready_seconds,
            selector=self.selector,
        )


def resolve_int_or_percent(value: int | str, total: int, *, round_up: bool = True) -> int:
    """Resolve a Kubernetes IntOrString: an integer as is, `"N%"` as N percent of `total`.

    Raises ValueError for anything else (`"abc%"`, `"25"`, `"2.5%"`, negatives, booleans).
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected an integer or a percentage string, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        return value
    match = _PERCENT.fullmatch(value)
    if match is None:
        raise ValueError(
            f"invalid percentage {value!r}: expected a non-negative whole number followed by '%'"
        )
    scaled = int(match[1]) * total
    return math.ceil(scaled / 100) if round_up else scaled // 100


def deployment_protector_name(name: str) -> str:
    return f"deployment-{name}"


def statefulset_protector_name(name: str) -> str:
    return f"statefulset-{name}"


def deployment_protector_spec(deployment: Mapping[str, Any]) -> GeneratedSpec:
    """Protector spec for an apps/v1 Deployment: maxUnavailable from
    spec.strategy.rollingUpdate.maxUnavailable, 25% when unset."""
    spec = _spec(deployment)
    strategy = _object(spec, "strategy", "spec.strategy")
    rolling = _object(strategy, "rollingUpdate", "spec.strategy.rollingUpdate")
    return _generate(
        spec,
        rolling.get("maxUnavailable"),
        DEPLOYMENT_DEFAULT_MAX_UNAVAILABLE,
        "spec.strategy.rollingUpdate.maxUnavailable",
    )


def statefulset_protector_spec(statefulset: Mapping[str, Any]) -> GeneratedSpec:
    """Protector spec for an apps/v1 StatefulSet: maxUnavailable from
    spec.updateStrategy.rollingUpdate.maxUnavailable, 1 when unset."""
    spec = _spec(statefulset)
    strategy = _object(spec, "updateStrategy", "spec.updateStrategy")
    rolling = _object(strategy, "rollingUpdate", "spec.updateStrategy.rollingUpdate")
    return _generate(
        spec,
        rolling.get("maxUnavailable"),
        STATEFULSET_DEFAULT_MAX_UNAVAILABLE,
        "spec.updateStrategy.rollingUpdate.maxUnavailable",
    )


def _generate(
    spec: Mapping[str, Any], max_unavailable: Any, default: int | str, path: str
) -> GeneratedSpec:
    replicas = _int(spec.get("replicas"), "spec.replicas", default=1)
    try:
        unavailable = resolve_int_or_percent(
            default if max_unavailable is None else max_unavailable, replicas
        )
    except ValueError as exc:
        raise WorkloadSpecError(f"{path}: {exc}") from None
    selector = spec.get("selector")
    if not isinstance(selector, Mapping):
        raise WorkloadSpecError("spec.selector: required, and must be a label selector object")
    return GeneratedSpec(
        min_available=max(0, replicas - unavailable),
        min_ready_seconds=_int(spec.get("minReadySeconds"), "spec.minReadySeconds", default=0),
        selector=copy.deepcopy(dict(selector)),
    )


def _spec(workload: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(workload, Mapping):
        raise WorkloadSpecError(f"expected a workload object, got {type(workload).__name__}")
    return _object(workload, "spec", "spec")


def _object(parent: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise WorkloadSpecError(f"{path}: expected an object, got {type(value).__name__}")
    return value


def _int(value: Any, path: str, *, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise WorkloadSpecError(f"{path}: expected an integer, got {value!r}")
    if not 0 <= value <= INT32_MAX:
        raise WorkloadSpecError(f"{path}: must be between 0 and {INT32_MAX}, got {value}")
    return value
