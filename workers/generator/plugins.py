"""Workload kinds the generator can protect, each as a plugin behind one interface.

A plugin knows where its workloads live in the API, the names that go into a PodProtector's
source labels and ownerReference, the protector's name, and how to compute the protector's spec
(``protectors.specs``). Everything else (finalizers, reconcile, dangling detection) is the same
for every kind, so adding a kind means adding one ``WorkloadPlugin`` to ``PLUGINS``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from podseidon_site.config import GeneratorConfig
from protectors.kube.client import DEPLOYMENTS, STATEFULSETS, Resource
from protectors.selectors import LabelSelector, SelectorError, parse_selector_string
from protectors.specs import (
    GeneratedSpec,
    deployment_protector_name,
    deployment_protector_spec,
    statefulset_protector_name,
    statefulset_protector_spec,
)

__all__ = [
    "DEPLOYMENT_PLUGIN",
    "PLUGINS",
    "STATEFULSET_PLUGIN",
    "EnabledKind",
    "WorkloadPlugin",
    "enabled_kinds",
]

# Dropped from cached workloads: large, and never read by the generator.
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@dataclass(frozen=True)
class WorkloadPlugin:
    """One workload kind. Instances are immutable and shared."""

    resource: Resource
    kind: str
    _name: Callable[[str], str]
    _spec: Callable[[Mapping[str, Any]], GeneratedSpec]
    # The spec fields the spec computation reads; the cache keeps only these.
    spec_fields: tuple[str, ...]

    @property
    def key(self) -> str:
        """`resource.group`, the key of ``generator.protection_selectors`` (`deployments.apps`)."""
        resource = self.resource
        return f"{resource.plural}.{resource.group}" if resource.group else resource.plural

    @property
    def api_version(self) -> str:
        return self.resource.api_version

    @property
    def group(self) -> str:
        return self.resource.group

    @property
    def plural(self) -> str:
        return self.resource.plural

    def protector_name(self, workload_name: str) -> str:
        return self._name(workload_name)

    def protector_spec(self, workload: Mapping[str, Any]) -> GeneratedSpec:
        """Raises ``protectors.specs.WorkloadSpecError`` for a spec it cannot read."""
        return self._spec(workload)

    def replicas(self, workload: Mapping[str, Any]) -> int:
        """Desired replicas (1 when unset; an unreadable value counts as 1, the safe side)."""
        value = (workload.get("spec") or {}).get("replicas")
        if value is None or isinstance(value, bool) or not isinstance(value, int):
            return 1
        return value

    def trim(self, workload: dict[str, Any]) -> dict[str, Any]:
        """What the cache keeps of a workload: metadata (without managedFields and the
        last-applied annotation) and the spec fields the spec computation reads."""
        metadata = dict(workload.get("metadata") or {})
        metadata.pop("managedFields", None)
        annotations = metadata.get("annotations")
        if annotations and _LAST_APPLIED in annotations:
            metadata["annotations"] = {k: v for k, v in annotations.items() if k != _LAST_APPLIED}
        spec = workload.get("spec") or {}
        return {"metadata": metadata, "spec": {k: spec[k] for k in self.spec_fields if k in spec}}


DEPLOYMENT_PLUGIN = WorkloadPlugin(
    resource=DEPLOYMENTS,
    kind="Deployment",
    _name=deployment_protector_name,
    _spec=deployment_protector_spec,
    spec_fields=("replicas", "selector", "minReadySeconds", "strategy"),
)

STATEFULSET_PLUGIN = WorkloadPlugin(
    resource=STATEFULSETS,
    kind="StatefulSet",
    _name=statefulset_protector_name,
    _spec=statefulset_protector_spec,
    spec_fields=("replicas", "selector", "minReadySeconds", "updateStrategy"),
)

PLUGINS: Mapping[str, WorkloadPlugin] = {p.key: p for p in (DEPLOYMENT_PLUGIN, STATEFULSET_PLUGIN)}


@dataclass(frozen=True)
class EnabledKind:
    """A plugin the operator switched on, with its protection selector."""

    plugin: WorkloadPlugin
    selector: LabelSelector
    selector_text: str


def enabled_kinds(config: GeneratorConfig) -> list[EnabledKind]:
    """The kinds listed in ``generator.protection_selectors``, in config order.

    Raises ValueError naming the key for an unknown kind or an invalid selector.
    """
    kinds = []
    for key, text in config.protection_selectors.items():
        plugin = PLUGINS.get(key)
        if plugin is None:
            known = ", ".join(sorted(PLUGINS))
            raise ValueError(
                f"generator.protection_selectors: unknown workload kind {key!r} (known: {known})"
            )
        try:
            selector = parse_selector_string(text)
        except SelectorError as error:
            raise ValueError(f"generator.protection_selectors.{key}: {error}") from None
        kinds.append(EnabledKind(plugin, selector, text))
    return kinds
