"""Carries out a generator ``Decision`` through the (fenced) core client.

Every write is an optimistic-concurrency write: patches and updates carry the resourceVersion
of the object they were computed from, deletions a UID precondition, so a stale cache yields a
409 Conflict (the controller requeues) instead of a lost update. Actions run in order, each on
the object the previous write returned, so one reconcile can finish a whole sequence (add the
workload finalizer, create the protector; or release the protector, then the workload).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protectors.kube.client import PODPROTECTORS, KubeClient, KubeError
from workers.generator.decide import (
    AddWorkloadFinalizer,
    CreateProtector,
    Decision,
    DeleteProtector,
    RemoveProtectorFinalizer,
    RemoveWorkloadFinalizer,
    UpdateProtector,
)
from workers.generator.observer import GeneratorObserver
from workers.generator.plugins import WorkloadPlugin
from workers.generator.protector import FINALIZER, finalizers

__all__ = ["Executor", "Outcome"]


@dataclass
class Outcome:
    """The objects as the last write left them (None: deleted or gone), and which were written;
    the controller waits for its caches to show these before reconciling the key again."""

    workload: Mapping[str, Any] | None
    protector: Mapping[str, Any] | None
    workload_written: bool = False
    protector_written: bool = False


class Executor:
    def __init__(self, client: KubeClient, observer: GeneratorObserver) -> None:
        self.client = client
        self.observer = observer

    def apply(
        self,
        plugin: WorkloadPlugin,
        namespace: str,
        workload_name: str,
        decision: Decision,
        state: Outcome,
    ) -> Outcome:
        """Run the decision's actions in order on ``state`` (the objects the decision was made
        from), updating it after each write; raises KubeError (409 included) on failure, with
        ``state`` telling what was written until then."""
        original_protector = state.protector
        protector_name = plugin.protector_name(workload_name)
        for action in decision.actions:
            if isinstance(action, AddWorkloadFinalizer):
                state.workload = self._workload_finalizers(plugin, state.workload, add=True)
            elif isinstance(action, CreateProtector):
                state.protector = self.client.create(PODPROTECTORS, namespace, action.body)
                self.observer.protector_written(
                    plugin.key, "create", namespace, protector_name, "created"
                )
            elif isinstance(action, UpdateProtector):
                state.protector = self.client.replace(
                    PODPROTECTORS, namespace, protector_name, action.body
                )
                self.observer.protector_written(
                    plugin.key, "update", namespace, protector_name, "spec and metadata updated"
                )
            elif isinstance(action, RemoveProtectorFinalizer):
                remaining = [f for f in finalizers(state.protector or {}) if f != FINALIZER]
                state.protector = self._patch_protector(
                    namespace, protector_name, state.protector, {"finalizers": remaining or None}
                )
                self.observer.protector_written(
                    plugin.key, "update", namespace, protector_name, "generator finalizer removed"
                )
            elif isinstance(action, DeleteProtector):
                # The UID precondition is the cached protector's: the one the decision was for.
                self._delete_protector(plugin, namespace, protector_name, original_protector)
                state.protector = None
            elif isinstance(action, RemoveWorkloadFinalizer):
                state.workload = self._workload_finalizers(plugin, state.workload, add=False)
            else:  # pragma: no cover - the Action union is closed
                raise TypeError(f"unknown action {action!r}")
            if isinstance(action, AddWorkloadFinalizer | RemoveWorkloadFinalizer):
                state.workload_written = True
            else:
                state.protector_written = True
        return state

    # -- workloads ---------------------------------------------------------------------------

    def _workload_finalizers(
        self, plugin: WorkloadPlugin, workload: Mapping[str, Any] | None, *, add: bool
    ) -> Mapping[str, Any] | None:
        if workload is None:
            return None
        metadata = workload.get("metadata") or {}
        namespace, name = metadata.get("namespace", ""), metadata.get("name", "")
        current = finalizers(workload)
        if add:
            wanted: list[str] | None = [*current, FINALIZER]
        else:
            wanted = [f for f in current if f != FINALIZER] or None
        patch = {
            "metadata": {"resourceVersion": metadata.get("resourceVersion"), "finalizers": wanted}
        }
        try:
            result = self.client.patch(plugin.resource, namespace, name, patch)
        except KubeError as error:
            if error.is_not_found and not add:
                return None  # gone already: nothing left to release
            raise
        self.observer.workload_finalizer(plugin.kind, "add" if add else "remove", namespace, name)
        return result

    # -- protectors --------------------------------------------------------------------------

    def _patch_protector(
        self,
        namespace: str,
        name: str,
        protector: Mapping[str, Any] | None,
        metadata_patch: dict[str, Any],
    ) -> dict[str, Any]:
        resource_version = ((protector or {}).get("metadata") or {}).get("resourceVersion")
        patch = {"metadata": {**metadata_patch, "resourceVersion": resource_version}}
        return self.client.patch(PODPROTECTORS, namespace, name, patch)

    def _delete_protector(
        self,
        plugin: WorkloadPlugin,
        namespace: str,
        name: str,
        protector: Mapping[str, Any] | None,
    ) -> None:
        uid = ((protector or {}).get("metadata") or {}).get("uid")
        body = {"preconditions": {"uid": uid}} if uid else None
        try:
            self.client.delete(PODPROTECTORS, namespace, name, body=body)
        except KubeError as error:
            if not error.is_not_found:
                raise
            return
        self.observer.protector_written(plugin.key, "delete", namespace, name, "deleted")
