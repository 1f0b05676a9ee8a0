"""The drain planner: which of a set of pod deletions the webhook would admit now, without
writing anything (design.md §4 "Webhook decision" and "Disruption quota").

"Can I drain node X now?" is answered by running the webhook's own decision steps
(``webhook.decision``: which pods it judges, at which health criterion, what each protector is
asked, the refusal's code and message) and the quota's batch walk (``protectors.quota``) over
the PodProtectors as they are now, on copies: no bucket is recorded anywhere.

The deletions are modelled as arriving together, which is what ``kubectl drain`` does: it
evicts every pod of the node at once, one request each, and retries a 429 every 5 s until its
``--timeout``. Each protector therefore sees all of its pods in one batch. A pod that several
protectors select goes to them in the webhook's order (by name) and stops at the first refusal,
so the walk runs in rounds: round k asks each pod's k-th protector, one batch per protector,
each batch starting from the status the previous round left.

When a protector can admit only some of the plan's pods, which ones go depends on the order the
requests reach the webhook: those pods are marked ``contended``. The number that go is exact.
A refusal that follows admissions of the same protector in an earlier batch comes as a 409
("full admission buffer") rather than the 429 of one shared batch; the plan shows the
one-batch answer.

Pure: no Django, no network. ``console/planning.py`` gathers the inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from podseidon_site.config import PodseidonConfig
from protectors.health import Contributions, HealthCriterion, PodHealth
from protectors.history_config import EffectiveHistoryConfig, effective_config
from protectors.model import PodProtector, Status
from protectors.quota import AdmissionResult, DeletionRequest, admit_batch
from protectors.selectors import LabelSelector, SelectorError
from protectors.summarize import summarize
from webhook.decision import (
    NOT_YET_AVAILABLE,
    deletion_criterion,
    deletion_request,
    judged_as_dry_run,
    refusal,
    skips_judging,
)
from webhook.protector_index import ProtectorIndex
from webhook.registration import object_selector

__all__ = [
    "DELETE",
    "EVICTION",
    "Plan",
    "PodPlan",
    "PodTarget",
    "ProtectorPlan",
    "Refusal",
    "Registration",
    "Verdict",
    "drain_filter",
    "plan_deletions",
]

EVICTION = "eviction"
DELETE = "delete"
OPERATIONS = (EVICTION, DELETE)

# kubectl drain's own filters (k8s.io/kubectl/pkg/drain/filters.go).
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# Bounds the synthetic batch that measures a protector's room: no protector counts more pods.
_MAX_CAPACITY_PROBE = 100_000


class Verdict(StrEnum):
    # The webhook would let it go; it takes (or already took) a share of a protector's quota.
    ADMITTED = "admitted"
    # The webhook would refuse it: see ``refusal``.
    REFUSED = "refused"
    # No PodProtector selects it: it goes freely.
    UNPROTECTED = "unprotected"
    # Not ready, or counted by none of its protectors at the criterion: goes without quota.
    ALREADY_UNHEALTHY = "already-unhealthy"
    # Already being deleted: the webhook lets it through.
    TERMINATING = "terminating"
    # A protector would refuse it, but the webhook is in dry run (globally, or the pod's
    # force-delete annotation): it goes, and the refusal is only recorded.
    DRY_RUN = "dry-run"
    # The webhook never sees this request (not registered, disabled, selectors, evictions off).
    NOT_JUDGED = "not-judged"
    # kubectl drain leaves it where it is (DaemonSet or mirror pod).
    SKIPPED = "skipped"
    # Named in the request but not in the cell.
    NOT_FOUND = "not-found"

    @property
    def goes(self) -> bool:
        return self not in (Verdict.REFUSED, Verdict.SKIPPED, Verdict.NOT_FOUND)


@dataclass(frozen=True)
class PodTarget:
    """One pod to plan for; ``pod`` is None when it does not exist in the cell."""

    namespace: str
    name: str
    pod: Mapping[str, Any] | None


@dataclass(frozen=True)
class Registration:
    """Which requests kube-apiserver sends the webhook in this cell: the selectors of the live
    ValidatingWebhookConfiguration (one pair per webhook entry), or None when none is there."""

    selectors: tuple[tuple[LabelSelector, LabelSelector], ...]  # (namespace, object)
    source: str  # where the selectors come from, for the plan's notes

    LIVE: ClassVar[str] = "the cell's ValidatingWebhookConfiguration"

    @classmethod
    def from_object(cls, obj: Mapping[str, Any] | None) -> Registration | None:
        if obj is None:
            return None
        pairs = []
        for hook in obj.get("webhooks") or ():
            if not isinstance(hook, Mapping):
                continue
            try:
                pairs.append(
                    (
                        _selector(hook.get("namespaceSelector")),
                        _selector(hook.get("objectSelector")),
                    )
                )
            except SelectorError:
                # kube-apiserver rejects such a configuration; it cannot match anything.
                continue
        return cls(tuple(pairs), cls.LIVE)

    @classmethod
    def from_config(cls, config: PodseidonConfig) -> Registration:
        """The selectors ``manage.py webhookconfig`` registers, when the live object is unknown."""
        return cls(
            ((_selector(config.webhook.namespace_selector), _selector(object_selector(config))),),
            "the configuration (the cell's registration could not be read)",
        )

    def sends(self, namespace_labels: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
        """Whether a request whose object carries ``labels`` reaches the webhook.

        ``namespace_labels`` None means unknown: the namespace selector is then assumed to match.
        """
        for namespaces, objects in self.selectors:
            if namespace_labels is not None and not namespaces.matches(namespace_labels):
                continue
            if objects.matches(labels):
                return True
        return False


def _selector(data: Any) -> LabelSelector:
    # An absent selector in a webhook registration matches everything (unlike a PodProtector's).
    if not data:
        return LabelSelector.from_dict({})
    return LabelSelector.from_dict(data)


@dataclass(frozen=True)
class Refusal:
    protector: str  # namespace/name
    code: int  # 429 (too few replicas) or 409 (admission buffer full)
    message: str  # exactly the webhook's; kubectl shows it after 'admission webhook "…" denied'


@dataclass(frozen=True)
class PodPlan:
    namespace: str
    name: str
    node: str | None
    verdict: Verdict
    reason: str
    # How each protector the request reached answered: (namespace/name, AdmissionResult value
    # or NotYetAvailable), in the webhook's order; protectors after a refusal are not asked.
    steps: tuple[tuple[str, str], ...] = ()
    refusal: Refusal | None = None
    # Some but not all of a protector's pods in this plan are admitted: which ones go depends on
    # the order the requests arrive in.
    contended: bool = False
    # What kubectl drain needs to be told before it evicts this pod.
    drain_notes: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ProtectorPlan:
    namespace: str
    name: str
    min_available: int
    aggregated: int  # counted at the plan's criterion by the aggregators
    estimated: int  # aggregated available minus admitted-but-unconfirmed deletions
    unconfirmed: int  # admitted deletions the aggregators have not seen happen yet
    requested: int  # pods of this plan that reached it
    admitted: int
    refused: int
    capacity: int  # how many of its pods could go at once now, whatever this plan holds

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Plan:
    cell_id: str
    operation: str
    criterion: HealthCriterion | None  # asked for (an Eviction's annotation); None: the pod's
    planned_at: datetime
    pods: tuple[PodPlan, ...]
    protectors: tuple[ProtectorPlan, ...]
    notes: tuple[str, ...] = ()

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys((v.value for v in Verdict), 0)
        for pod in self.pods:
            counts[pod.verdict.value] += 1
        return counts

    @property
    def blocked(self) -> bool:
        """Some pod would be refused: the drain would not complete now."""
        return any(p.verdict is Verdict.REFUSED for p in self.pods)


# -- kubectl drain's filters -------------------------------------------------------------------


def drain_filter(pod: Mapping[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """(why kubectl drain skips the pod, or None; what drain must be told to evict it)."""
    metadata = pod.get("metadata") or {}
    if MIRROR_ANNOTATION in (metadata.get("annotations") or {}):
        return "a mirror pod (static, run by the kubelet): kubectl drain leaves it", ()
    controller = next(
        (
            ref
            for ref in metadata.get("ownerReferences") or ()
            if isinstance(ref, Mapping) and ref.get("controller")
        ),
        None,
    )
    if controller is not None and controller.get("kind") == "DaemonSet":
        return (
            "a DaemonSet pod: kubectl drain --ignore-daemonsets leaves it "
            "(without that flag the drain does not start)",
            (),
        )
    notes = []
    finished = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
    if controller is None and not finished:
        notes.append("no controller: needs --force, and nothing recreates it")
    volumes = (pod.get("spec") or {}).get("volumes") or ()
    if any(isinstance(v, Mapping) and "emptyDir" in v for v in volumes):
        notes.append("emptyDir data: needs --delete-emptydir-data, and the data is lost")
    return None, tuple(notes)


# -- the plan ----------------------------------------------------------------------------------


@dataclass
class _Pending:
    """A pod whose request is still travelling down its protectors."""

    index: int
    target: PodTarget
    criterion: HealthCriterion
    dry_run: bool
    chain: list[tuple[PodProtector, DeletionRequest | None]]
    drain_notes: tuple[str, ...]
    at: int = 0
    steps: list[tuple[str, str]] = field(default_factory=list)
    refusal: Refusal | None = None


def plan_deletions(
    config: PodseidonConfig,
    cell_id: str,
    targets: Sequence[PodTarget],
    protectors: Iterable[Mapping[str, Any]],
    now: datetime,
    *,
    operation: str = EVICTION,
    criterion: HealthCriterion | None = None,
    registration: Registration | None,
    namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
    node_drain: bool = False,
    notes: Sequence[str] = (),
) -> Plan:
    """What the webhook would answer if every one of ``targets`` were deleted (or evicted) in
    ``cell_id`` at once, judged against ``protectors`` (PodProtector objects as read).

    ``criterion`` is what an Eviction's health-criterion annotation would ask (evictions only);
    ``registration`` the cell's webhook registration (None: not registered);
    ``namespace_labels`` the labels of the targets' namespaces (None: not known, assumed to
    match the registration's namespace selector); ``node_drain`` applies kubectl drain's
    filters; ``notes`` are added to the plan's. Nothing in the inputs changes.
    """
    if operation not in OPERATIONS:
        raise ValueError(f"operation must be one of {OPERATIONS}, not {operation!r}")
    if criterion is not None and operation != EVICTION:
        raise ValueError("a health criterion can only be asked for by an eviction")
    history = config.admission_history
    defaults = EffectiveHistoryConfig.from_millis(
        history.max_concurrent_lag, history.compact_threshold, history.aggregation_rate_millis
    )
    eviction_annotations = (
        {config.webhook.health_criterion_annotation: criterion.value} if criterion else {}
    )

    index = ProtectorIndex()
    namespaces = {t.namespace for t in targets}
    for obj in protectors:
        if (obj.get("metadata") or {}).get("namespace") in namespaces:
            index.on_add(dict(obj))

    decided: dict[int, PodPlan] = {}
    pending: list[_Pending] = []
    for i, target in enumerate(targets):
        pod = target.pod
        if pod is None:
            decided[i] = _pod_plan(target, Verdict.NOT_FOUND, "no such pod in this cell")
            continue
        metadata = pod.get("metadata") or {}
        labels = metadata.get("labels") or {}
        annotations = metadata.get("annotations") or {}
        drain_notes: tuple[str, ...] = ()
        if node_drain:
            skip, drain_notes = drain_filter(pod)
            if skip is not None:
                decided[i] = _pod_plan(target, Verdict.SKIPPED, skip)
                continue
        ns_labels = None if namespace_labels is None else namespace_labels.get(target.namespace)
        not_sent = _not_sent(config, operation, registration, ns_labels, labels)
        if not_sent is not None:
            decided[i] = _pod_plan(target, Verdict.NOT_JUDGED, not_sent, drain_notes)
            continue
        try:
            health = PodHealth.from_pod(pod)
        except ValueError as error:
            # The webhook answers such a review with an error: kube-apiserver then applies the
            # registration's failurePolicy.
            reason = f"unreadable pod ({error}): the registration's failurePolicy decides"
            decided[i] = _pod_plan(target, Verdict.NOT_JUDGED, reason, drain_notes)
            continue
        if skips_judging(health):
            if health.terminating:
                verdict, reason = Verdict.TERMINATING, "already terminating"
            else:
                verdict, reason = Verdict.ALREADY_UNHEALTHY, "not ready: costs no quota"
            decided[i] = _pod_plan(target, verdict, reason, drain_notes)
            continue
        # matching() hands out protectors without their status (the webhook reads it only when
        # a write needs it); the plan judges against the status, so take the full objects.
        matched = [
            full
            for shell in index.matching(target.namespace, labels)
            if (full := index.get(shell.namespace, shell.name)) is not None
        ]
        if not matched:
            reason = "no PodProtector selects it"
            decided[i] = _pod_plan(target, Verdict.UNPROTECTED, reason, drain_notes)
            continue
        pod_criterion = deletion_criterion(config, eviction_annotations, annotations)
        uid = metadata.get("uid") or ""
        chain = [
            (p, deletion_request(cell_id, uid, health, p, pod_criterion, now)) for p in matched
        ]
        dry_run = judged_as_dry_run(config, annotations)
        pending.append(_Pending(i, target, pod_criterion, dry_run, chain, drain_notes))

    tally = _walk(pending, defaults, now)
    contended = {key for key, counts in tally.items() if counts[3] and counts[2]}
    for item in pending:
        decided[item.index] = _judged_plan(item, contended)

    return Plan(
        cell_id=cell_id,
        operation=operation,
        criterion=criterion,
        planned_at=now,
        pods=tuple(decided[i] for i in range(len(targets))),
        protectors=_protector_plans(
            pending, tally, defaults, cell_id, criterion or HealthCriterion.AVAILABLE, now
        ),
        notes=(*_notes(config, operation, registration), *notes),
    )


def _walk(
    pending: list[_Pending], defaults: EffectiveHistoryConfig, now: datetime
) -> dict[str, tuple[int, int, int, int]]:
    """Run the requests down their protectors in rounds (see the module's docstring); returns
    per protector key (requested, admitted, refused, newly admitted within its quota)."""
    current: dict[str, PodProtector] = {}  # as this plan changed them so far: copies
    tally: dict[str, list[int]] = {}
    active = list(pending)
    while active:
        batches: dict[str, list[_Pending]] = {}
        for item in active:
            protector, request = item.chain[item.at]
            if request is None:
                item.steps.append((protector.key, NOT_YET_AVAILABLE))
            else:
                batches.setdefault(protector.key, []).append(item)
        for key in sorted(batches):
            items = batches[key]
            protector = current.get(key) or items[0].chain[items[0].at][0]
            history = effective_config(protector.spec.admission_history_config, defaults)
            requests = [r for item in items if (r := item.chain[item.at][1]) is not None]
            outcome = admit_batch(protector, history, requests, now)
            current[key] = protector.with_status(outcome.status)
            counts = tally.setdefault(key, [0, 0, 0, 0])
            for item, result in zip(items, outcome.results, strict=True):
                item.steps.append((key, result.value))
                answer = refusal(protector, result, item.criterion)
                counts[0] += 1
                if answer is None:
                    counts[1] += 1
                    counts[3] += result is AdmissionResult.OK
                else:
                    counts[2] += 1
                    item.refusal = Refusal(key, answer.code, answer.message)
        round_items, active = active, []
        for item in round_items:
            item.at += 1
            if item.refusal is None and item.at < len(item.chain):
                active.append(item)
    return {key: (c[0], c[1], c[2], c[3]) for key, c in tally.items()}


def _pod_plan(
    target: PodTarget, verdict: Verdict, reason: str, drain_notes: tuple[str, ...] = ()
) -> PodPlan:
    return PodPlan(
        namespace=target.namespace,
        name=target.name,
        node=_node(target.pod),
        verdict=verdict,
        reason=reason,
        drain_notes=drain_notes,
    )


def _node(pod: Mapping[str, Any] | None) -> str | None:
    return ((pod or {}).get("spec") or {}).get("nodeName") or None


_TAKES_QUOTA = (AdmissionResult.OK, AdmissionResult.ALREADY_ADMITTED)
_OK = AdmissionResult.OK.value


def _judged_plan(item: _Pending, contended: set[str]) -> PodPlan:
    target = item.target
    steps = tuple(item.steps)
    common = {
        "namespace": target.namespace,
        "name": target.name,
        "node": _node(target.pod),
        "steps": steps,
        "drain_notes": item.drain_notes,
    }
    if item.refusal is not None:
        is_contended = item.refusal.protector in contended
        if item.dry_run:
            reason = f"dry run: goes; the webhook only records that {item.refusal.message}"
            return PodPlan(
                verdict=Verdict.DRY_RUN,
                reason=reason,
                refusal=item.refusal,
                contended=is_contended,
                **common,
            )
        return PodPlan(
            verdict=Verdict.REFUSED,
            reason=item.refusal.message,
            refusal=item.refusal,
            contended=is_contended,
            **common,
        )
    taking = [key for key, result in steps if result in _TAKES_QUOTA]
    if not taking:
        reason = (
            f"counted as {item.criterion.value.lower()} by none of its PodProtectors: "
            "costs no quota"
        )
        return PodPlan(verdict=Verdict.ALREADY_UNHEALTHY, reason=reason, **common)
    again = AdmissionResult.ALREADY_ADMITTED.value
    if all(result == again for key, result in steps if key in taking):
        reason = "admitted before (its deletion is still counted): admitted again"
    else:
        reason = "within the quota of " + ", ".join(taking)
    return PodPlan(
        verdict=Verdict.ADMITTED,
        reason=reason,
        contended=any(key in contended for key, result in steps if result == _OK),
        **common,
    )


def _protector_plans(
    pending: list[_Pending],
    tally: Mapping[str, tuple[int, int, int, int]],
    defaults: EffectiveHistoryConfig,
    cell_id: str,
    criterion: HealthCriterion,
    now: datetime,
) -> tuple[ProtectorPlan, ...]:
    """Every protector a pod of the plan reached (or would have), as it is before the plan."""
    seen: dict[str, PodProtector] = {}
    for item in pending:
        for protector, _request in item.chain:
            seen.setdefault(protector.key, protector)
    plans = []
    for key in sorted(seen):
        protector = seen[key]
        history = effective_config(protector.spec.admission_history_config, defaults)
        summary = summarize(protector.status or Status(), history).summary
        requested, admitted, refused, _ = tally.get(key, (0, 0, 0, 0))
        plans.append(
            ProtectorPlan(
                namespace=protector.namespace,
                name=protector.name,
                min_available=protector.spec.min_available,
                aggregated=summary.aggregated_available_replicas,
                estimated=summary.estimated_available_replicas,
                unconfirmed=summary.aggregated_available_replicas
                - summary.estimated_available_replicas,
                requested=requested,
                admitted=admitted,
                refused=refused,
                capacity=capacity(protector, history, cell_id, criterion, now),
            )
        )
    return tuple(plans)


def capacity(
    protector: PodProtector,
    history: EffectiveHistoryConfig,
    cell_id: str,
    criterion: HealthCriterion,
    now: datetime,
) -> int:
    """How many healthy pods of ``protector`` the quota would admit in one batch now.

    Measured by the quota itself, on a batch of made-up healthy pods as large as anything the
    protector counts, so that it can never disagree with the webhook.
    """
    summary = summarize(protector.status or Status(), history).summary
    largest = max(
        summary.total_replicas,
        summary.aggregated_available_replicas,
        summary.aggregated_ready,
        summary.aggregated_running,
        summary.aggregated_scheduled,
        0,
    )
    healthy = Contributions(scheduled=True, running=True, ready=True, available=True)
    requests = [
        DeletionRequest(cell_id, f"planner-probe-{i}", healthy, criterion)
        for i in range(min(largest + 1, _MAX_CAPACITY_PROBE))
    ]
    outcome = admit_batch(protector, history, requests, now)
    return sum(result is AdmissionResult.OK for result in outcome.results)


def _not_sent(
    config: PodseidonConfig,
    operation: str,
    registration: Registration | None,
    namespace_labels: Mapping[str, str] | None,
    pod_labels: Mapping[str, str],
) -> str | None:
    """Why the webhook would not judge this request at all, or None when it would."""
    if registration is None:
        return "the webhook is not registered in this cell"
    # The object selector sees the Eviction for an eviction (kubectl drain's carry no labels)
    # and the pod for a DELETE (design.md §7: kube-apiserver matches the request's object).
    labels = {} if operation == EVICTION else pod_labels
    if not registration.sends(namespace_labels, labels):
        return (
            "the webhook registration's selectors leave this request out "
            "(disabled in this cell, or the pod or its namespace is excluded)"
        )
    if operation == EVICTION and not config.webhook.handle_eviction:
        return "the webhook lets every eviction through (webhook.handle_eviction is off)"
    return None


def _notes(
    config: PodseidonConfig, operation: str, registration: Registration | None
) -> tuple[str, ...]:
    notes = []
    if registration is None:
        notes.append("The webhook is not registered in this cell: nothing here is judged.")
    elif registration.source != Registration.LIVE:
        notes.append(f"The webhook's selectors come from {registration.source}.")
    if config.webhook.dry_run:
        notes.append(
            "The webhook runs in dry run (webhook.dry_run): it refuses nothing; what it would "
            "refuse shows as dry-run."
        )
    if operation == EVICTION and not config.webhook.handle_eviction:
        notes.append("webhook.handle_eviction is off: evictions are never judged.")
    return tuple(notes)
