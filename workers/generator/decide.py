"""The generator's reconcile decision for one workload, as a pure function (design.md §4).

Inputs: the workload as cached now (or None when it is gone), its last state seen before it
went away (a tombstone, or None when it was never seen), the protector of the same name (or
None), the kind's protection selector and options. Output: the writes to make, in order, and
whether the protector is dangling. ``executor`` carries the writes out; nothing here talks to
the API, so every rule is tested with tables of cases.

Rules:
- *required* = the workload matches the selector and is not terminating; with
  ``protect_non_zero`` a terminating workload stays required while its replicas > 0.
- required → the workload gets the generator finalizer first (never on a terminating workload:
  the API forbids new finalizers there, and no protector is created then), then the protector
  is created, or has its labels, finalizer, ownerReference and spec put right. (The
  ``remove-cell-once`` annotation is not a workload matter: ``cell_removal`` carries it out on
  every PodProtector, generated or not.)
- not required → our protector loses its finalizer and is deleted; then the workload loses the
  generator finalizer. A protector that is not ours (no source labels, finalizer or controller
  reference for this workload) is never touched.
- the workload is gone: if it was last seen terminating (or not matching), the deletion is
  simply finishing (the protector cache lags): the protector is deleted as above. If it was
  last seen required, or never seen at all (after a restart), it disappeared without an
  explicit deletion — etcd lost it, or someone stripped its finalizer: the protector is kept
  and reported *dangling*; it still guards the pods, and an operator decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from protectors.selectors import LabelSelector
from protectors.specs import WorkloadSpecError
from workers.generator.plugins import WorkloadPlugin
from workers.generator.protector import (
    has_generator_finalizer,
    is_managed,
    is_terminating,
    reconciled_protector,
    render_protector,
)

__all__ = [
    "Action",
    "AddWorkloadFinalizer",
    "CreateProtector",
    "Decision",
    "DeleteProtector",
    "Options",
    "RemoveProtectorFinalizer",
    "RemoveWorkloadFinalizer",
    "UpdateProtector",
    "decide",
    "is_required",
]


@dataclass(frozen=True)
class Options:
    selector: LabelSelector
    protect_non_zero: bool = False


# --- actions, in the order the executor applies them ----------------------------------------


@dataclass(frozen=True)
class AddWorkloadFinalizer:
    pass


@dataclass(frozen=True)
class CreateProtector:
    body: dict[str, Any] = field(compare=False)


@dataclass(frozen=True)
class UpdateProtector:
    """Write ``body`` (the protector with labels/finalizer/owner/spec put right, carrying the
    cached resourceVersion) through the main resource."""

    body: dict[str, Any] = field(compare=False)


@dataclass(frozen=True)
class RemoveProtectorFinalizer:
    pass


@dataclass(frozen=True)
class DeleteProtector:
    pass


@dataclass(frozen=True)
class RemoveWorkloadFinalizer:
    pass


Action = (
    AddWorkloadFinalizer
    | CreateProtector
    | UpdateProtector
    | RemoveProtectorFinalizer
    | DeleteProtector
    | RemoveWorkloadFinalizer
)


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...] = ()
    required: bool = False
    # The workload is gone without an explicit deletion; the protector is kept.
    dangling: bool = False
    # Something the operator must fix (an unreadable workload spec); reported as an error.
    problem: str | None = None
    # Why nothing was done although protection is required (logged, not an error).
    note: str | None = None

    @property
    def action_names(self) -> list[str]:
        return [type(a).__name__ for a in self.actions]


def is_required(plugin: WorkloadPlugin, workload: Mapping[str, Any], options: Options) -> bool:
    labels = (workload.get("metadata") or {}).get("labels") or {}
    if not options.selector.matches(labels):
        return False
    if not is_terminating(workload):
        return True
    return options.protect_non_zero and plugin.replicas(workload) > 0


def decide(
    plugin: WorkloadPlugin,
    workload_name: str,
    workload: Mapping[str, Any] | None,
    protector: Mapping[str, Any] | None,
    options: Options,
    *,
    last_seen: Mapping[str, Any] | None = None,
) -> Decision:
    managed = protector is not None and is_managed(plugin, workload_name, protector)

    if workload is None:
        if not managed:
            return Decision()
        assert protector is not None
        if last_seen is not None and not is_required(plugin, last_seen, options):
            # The explicit deletion is finishing; our cache of protectors lags behind.
            return Decision(_release_protector(protector))
        return Decision(required=True, dangling=True)

    if not is_required(plugin, workload, options):
        actions: list[Action] = []
        if protector is not None and managed:
            actions += _release_protector(protector)
        if has_generator_finalizer(workload):
            actions.append(RemoveWorkloadFinalizer())
        return Decision(tuple(actions))

    problem = None
    try:
        spec = plugin.protector_spec(workload)
    except WorkloadSpecError as error:
        spec = None
        namespace = (workload.get("metadata") or {}).get("namespace", "")
        problem = f"{plugin.kind} {namespace}/{workload_name}: {error}"

    workload_needs_finalizer = not has_generator_finalizer(workload)
    if protector is None:
        if spec is None:
            return Decision(required=True, problem=problem)
        if workload_needs_finalizer and is_terminating(workload):
            return Decision(
                required=True,
                note="workload is terminating without the generator finalizer; "
                "a new protector could outlive it, so none is created",
            )
        actions = [AddWorkloadFinalizer()] if workload_needs_finalizer else []
        actions.append(CreateProtector(render_protector(plugin, workload, spec)))
        return Decision(tuple(actions), required=True)

    actions = []
    if workload_needs_finalizer and not is_terminating(workload):
        actions.append(AddWorkloadFinalizer())
    body = reconciled_protector(plugin, workload, spec, protector)
    if body is not None:
        actions.append(UpdateProtector(body))
    return Decision(tuple(actions), required=True, problem=problem)


def _release_protector(protector: Mapping[str, Any]) -> list[Action]:
    actions: list[Action] = []
    if has_generator_finalizer(protector):
        actions.append(RemoveProtectorFinalizer())
    if not is_terminating(protector):
        actions.append(DeleteProtector())
    return actions
