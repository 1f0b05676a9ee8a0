"""``remove-cell-once`` on every PodProtector: generated, hand-made or dangling.

Operators create PodProtectors by hand (like PodDisruptionBudgets), and a generated one can
outlive its workload (dangling). The annotation must work on all of them, within seconds of
appearing, not at the next event of some workload. So the generator's PodProtector informer
feeds every protector that carries the annotation into a queue of its own (keyed by
namespace/name), and ``CellRemover.process`` handles one:

1. read it afresh (the cache may lag; an incident is no time to act on a stale copy);
2. if some cell it names is in ``status.cells``: drop those cells and recompute
   ``status.summary`` (``protectors.summarize``), written with the read's resourceVersion;
3. drop the annotation with a merge patch carrying the resourceVersion the status write
   returned, so a cell added to the annotation meanwhile (a second removal) is not lost: the
   patch conflicts and the next attempt starts over from step 1.

Conflicts (aggregators and the webhook write status all the time) are retried inline a few
times, then by the queue with backoff. Each step is recorded as a Kubernetes Event on the
protector (``CellRemoved``, ``RemoveCellOnceProcessed``), so ``kubectl describe ppr`` shows it.

The race this cannot close: an aggregator that is not paused writes its cell's counts back on
its next pod event, after the cell was removed here. That is why the runbook pauses the cell's
aggregator first (docs/operations.md, "A worker control plane down").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from podseidon_site.config import AdmissionHistoryDefaults
from protectors import constants
from protectors.history_config import EffectiveHistoryConfig, effective_config
from protectors.kube.client import PODPROTECTORS, KubeClient, KubeError
from protectors.kube.events import EventRecorder
from protectors.model import PodProtector
from protectors.summarize import summarize
from workers.aggregator.reconcile import history_defaults as history_config
from workers.generator.observer import GeneratorObserver
from workers.generator.protector import cell_ids_in_status, parse_remove_cell_once

__all__ = [
    "CellRemover",
    "Removal",
    "RemovalPlan",
    "has_remove_cell_once",
    "removal_plan",
    "removed_status",
]

# Inline attempts before the queue's backoff takes over.
ATTEMPTS = 3

REASON_REMOVED = "CellRemoved"
REASON_PROCESSED = "RemoveCellOnceProcessed"


def _annotations(protector: Mapping[str, Any]) -> Mapping[str, Any]:
    return (protector.get("metadata") or {}).get("annotations") or {}


def has_remove_cell_once(protector: Mapping[str, Any]) -> bool:
    return constants.ANNOTATION_REMOVE_CELL_ONCE in _annotations(protector)


@dataclass(frozen=True)
class RemovalPlan:
    """What the annotation asks of one protector as it is now."""

    annotation: str
    # The cell IDs it names, in order, without blanks and duplicates.
    requested: tuple[str, ...]
    # Those of them that are in status: what to remove.
    present: tuple[str, ...]


def removal_plan(protector: Mapping[str, Any]) -> RemovalPlan | None:
    """None when the protector has no ``remove-cell-once`` annotation."""
    annotations = _annotations(protector)
    if constants.ANNOTATION_REMOVE_CELL_ONCE not in annotations:
        return None
    value = str(annotations[constants.ANNOTATION_REMOVE_CELL_ONCE] or "")
    requested = parse_remove_cell_once(value)
    in_status = cell_ids_in_status(protector)
    return RemovalPlan(value, requested, tuple(c for c in requested if c in in_status))


def removed_status(
    protector: Mapping[str, Any], cell_ids: tuple[str, ...], defaults: EffectiveHistoryConfig
) -> dict[str, Any]:
    """The protector's status without ``cell_ids``, with a freshly computed summary."""
    parsed = PodProtector.from_dict(protector)
    status = parsed.status
    assert status is not None, "a protector with cells in status has a status"
    config = effective_config(parsed.spec.admission_history_config, defaults)
    return summarize(status.without_cells(cell_ids), config).to_dict()


def _available(status: Mapping[str, Any] | None) -> Any:
    return ((status or {}).get("summary") or {}).get("aggregatedAvailableReplicas", 0)


@dataclass(frozen=True)
class Removal:
    """What processing one protector did."""

    # "removed": cells dropped and the annotation with them; "not_in_status": only the
    # annotation dropped; "absent": no annotation (any more); "gone": no such protector.
    result: str
    removed: tuple[str, ...] = ()
    requested: tuple[str, ...] = ()


class CellRemover:
    def __init__(
        self,
        client: KubeClient,
        observer: GeneratorObserver,
        recorder: EventRecorder | None = None,
        history_defaults: AdmissionHistoryDefaults | None = None,
    ) -> None:
        self.client = client
        self.observer = observer
        self.recorder = recorder
        self._defaults = history_config(history_defaults or AdmissionHistoryDefaults())

    def process(self, namespace: str, name: str) -> Removal:
        """Carry out the annotation of one protector; raises KubeError (a 409 after ATTEMPTS
        conflicts, or any other failure) for the queue to retry."""
        removed: list[str] = []
        for attempt in range(ATTEMPTS):
            last = attempt + 1 == ATTEMPTS
            try:
                current = self.client.get(PODPROTECTORS, namespace, name)
            except KubeError as error:
                if error.is_not_found:
                    return Removal("gone", tuple(removed))
                raise
            plan = removal_plan(current)
            if plan is None:
                return Removal("absent", tuple(removed))
            written = current
            if plan.present:
                body = {
                    **current,
                    "status": removed_status(current, plan.present, self._defaults),
                }
                try:
                    written = self.client.replace_status(PODPROTECTORS, namespace, name, body)
                except KubeError as error:
                    if error.is_conflict and not last:
                        continue
                    if error.is_not_found:
                        return Removal("gone", tuple(removed))
                    raise
                removed += [c for c in plan.present if c not in removed]
                self.observer.cells_removed(namespace, name, plan.present)
                self._event(
                    written,
                    REASON_REMOVED,
                    f"Removed cell(s) {', '.join(plan.present)} from status "
                    f"(remove-cell-once): aggregated available {_available(current.get('status'))}"
                    f" -> {_available(written.get('status'))}",
                )
            resource_version = (written.get("metadata") or {}).get("resourceVersion")
            patch = {
                "metadata": {
                    "resourceVersion": resource_version,
                    "annotations": {constants.ANNOTATION_REMOVE_CELL_ONCE: None},
                }
            }
            try:
                patched = self.client.patch(PODPROTECTORS, namespace, name, patch)
            except KubeError as error:
                if error.is_conflict and not last:
                    continue
                if error.is_not_found:
                    return Removal("gone", tuple(removed))
                raise
            missing = [c for c in plan.requested if c not in removed]
            result = "removed" if removed else "not_in_status"
            message = f"remove-cell-once={plan.annotation!r} processed: " + (
                f"removed {', '.join(removed)}" if removed else "nothing to remove"
            )
            if missing:
                message += f"; not in status: {', '.join(missing)}"
            self._event(patched, REASON_PROCESSED, message)
            return Removal(result, tuple(removed), plan.requested)
        raise AssertionError("unreachable")  # pragma: no cover - the last attempt raises

    def _event(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        if self.recorder is not None:
            self.recorder.normal(obj, reason, message)
