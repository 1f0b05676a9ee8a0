"""The webhook's decision for one AdmissionReview (design.md §4 "Webhook decision").

Framework-free: the Django view parses the body, calls ``Decider.decide`` and writes the verdict.
Everything that talks to the outside (the PodProtector cache, the cell's apiserver for evictions,
the batched status writes, metrics) comes in through constructor arguments, so tests drive the
same code with fakes and the integration tests with real clusters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Protocol

from podseidon_site.config import PodseidonConfig
from protectors.health import HealthCriterion, PodHealth
from protectors.history_config import (
    DEFAULT_HISTORY_CONFIG,
    EffectiveHistoryConfig,
    effective_config,
)
from protectors.kube.client import KubeError
from protectors.model import PodProtector
from protectors.quota import AdmissionResult, DeletionRequest, admit_batch, refresh_due
from webhook.batching import BatchTimeout
from webhook.bounded_client import NoAnswer
from webhook.core_breaker import CoreBreaker, CoreBusy, CoreUnavailable
from webhook.review import (
    MalformedReview,
    PodMetadata,
    ReviewRequest,
    Verdict,
    eviction_annotations,
)

# Keys as the webhook writes them; kube-apiserver files them under "<webhook name>/<key>", which
# gives the podseidon.kubewharf.io/dry-run and .../reject-by-podprotector names of the audit log.
AUDIT_KEY_DRY_RUN = "dry-run"
AUDIT_KEY_REJECT_BY = "reject-by-podprotector"


class WebhookUnavailable(Exception):
    """The webhook cannot judge anything yet (cold start, cache not synced): an HTTP 500, so
    kube-apiserver applies the configured failurePolicy. ``cause`` labels the error metric."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


class ProtectorLookup(Protocol):
    def matching(self, namespace: str, labels: Mapping[str, str]) -> list[PodProtector]:
        """The protectors selecting ``labels``; their ``status`` may be left unparsed (None)."""
        ...

    def get(self, namespace: str, name: str) -> PodProtector | None:
        """One protector with its status (None when gone, or its status unreadable)."""
        ...

    def admitted_at(self, namespace: str, name: str, cell_id: str, pod_uid: str) -> datetime | None:
        """Start of the newest admission bucket of ``pod_uid`` in the cached status, if any."""
        ...


class BatchSubmitter(Protocol):
    def submit(self, key: str, item: DeletionRequest, deadline: float) -> AdmissionResult: ...


class DecisionObserver(Protocol):
    def pod_in_protector(
        self, cell_id: str, protector: PodProtector, result: str, rejected: bool
    ) -> None: ...


# (cell ID, namespace, name, deadline on the monotonic clock) -> the pod
PodFetcher = Callable[[str, str, str, float], dict]

# The observer's result for a pod that is ready but not yet available for a protector.
NOT_YET_AVAILABLE = "NotYetAvailable"


# -- the parts of a decision the drain planner (console/planner.py) shares -------------------


def skips_judging(health: PodHealth) -> bool:
    """Already going, or contributing to nothing that a deletion could take away: allowed
    without asking any PodProtector."""
    return health.terminating or not health.ready


def judged_as_dry_run(config: PodseidonConfig, pod_annotations: Mapping[str, str]) -> bool:
    """Decided and recorded as if live, then allowed: global dry run or the force annotation."""
    webhook = config.webhook
    return webhook.dry_run or webhook.force_delete_annotation in pod_annotations


def deletion_criterion(
    config: PodseidonConfig,
    eviction_annotations: Mapping[str, str],
    pod_annotations: Mapping[str, str],
) -> HealthCriterion:
    """The health level the deletion is judged at: the Eviction's annotation, else the pod's."""
    key = config.webhook.health_criterion_annotation
    return HealthCriterion.parse(eviction_annotations.get(key) or pod_annotations.get(key))


def deletion_request(
    cell_id: str,
    pod_uid: str,
    health: PodHealth,
    protector: PodProtector,
    criterion: HealthCriterion,
    now: datetime,
    *,
    pod_name: str | None = None,
) -> DeletionRequest | None:
    """What ``protector`` is asked to admit for this pod; None when the pod is ready but not
    for the protector's minReadySeconds yet: it is not counted as available there, so deleting
    it costs this protector nothing."""
    min_ready = protector.spec.min_ready_seconds
    if not health.is_available(min_ready, now):
        return None
    return DeletionRequest(
        cell_id=cell_id,
        pod_uid=pod_uid,
        contributions=health.contributions(min_ready, now),
        criterion=criterion,
        pod_name=pod_name,
    )


def refusal(
    protector: PodProtector, result: AdmissionResult, criterion: HealthCriterion
) -> Verdict | None:
    """The webhook's answer when the quota's ``result`` refuses the deletion, else None."""
    if result.allows_deletion:
        return None
    name = f"{protector.namespace}/{protector.name}"
    audit = {AUDIT_KEY_REJECT_BY: name}
    if result is AdmissionResult.RETRY:
        return Verdict.reject(
            409,
            f"PodProtector {name} has full admission buffer and is temporarily unable to "
            "admit pod deletion",
            audit,
        )
    if result is AdmissionResult.DENIED:
        return Verdict.reject(
            429,
            f"PodProtector {name} reports too few {criterion.value.lower()} replicas to "
            "admit pod deletion",
            audit,
        )
    return None


@dataclass
class Decider:
    config: PodseidonConfig
    protectors: ProtectorLookup
    synced: Callable[[], bool]
    batcher: BatchSubmitter
    fetch_pod: PodFetcher
    observer: DecisionObserver
    started_at: float
    history_defaults: EffectiveHistoryConfig = DEFAULT_HISTORY_CONFIG
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    monotonic: Callable[[], float] = time.monotonic
    # Open while the core cluster does not answer status writes: refuse without waiting.
    core_breaker: CoreBreaker | None = None
    on_phase: Callable[[str, float], None] = lambda phase, seconds: None

    def decide(self, cell_id: str, review: ReviewRequest, deadline: float) -> Verdict:
        webhook = self.config.webhook
        if review.is_pod_eviction and not webhook.handle_eviction:
            return Verdict.allow()
        if not (review.is_pod_delete or review.is_pod_eviction):
            return Verdict.reject(500, "Unexpected review subject")

        criterion_source: Mapping[str, str] = {}
        if review.is_pod_delete:
            if review.old_object is None:
                raise MalformedReview("request.oldObject is missing from a pod DELETE review")
            pod = review.old_object
        else:
            if not review.name or not review.namespace:
                raise MalformedReview("an eviction review needs request.name and namespace")
            criterion_source = eviction_annotations(review.object or {})
            try:
                pod = self.fetch_pod(cell_id, review.namespace, review.name, deadline)
            except KubeError as error:
                if error.is_not_found:
                    return Verdict.reject(404, error.message)
                raise WebhookUnavailable(
                    f"cannot read the evicted pod: {error}", "cell-unreachable"
                ) from None

        try:
            health = PodHealth.from_pod(pod)
        except ValueError as error:
            raise MalformedReview(f"pod in review: {error}") from None
        if skips_judging(health):
            return Verdict.allow()
        try:
            metadata = PodMetadata.of(pod)
        except MalformedReview as error:
            raise MalformedReview(f"pod in review: {error}") from None
        annotations = metadata.annotations

        dry_run = judged_as_dry_run(self.config, annotations)
        if self.monotonic() - self.started_at < webhook.cold_start_delay_seconds:
            raise WebhookUnavailable("cold start: not judging deletions yet", "cold-start")
        if not self.synced():
            raise WebhookUnavailable("PodProtector cache has not synced yet", "not-synced")

        criterion = deletion_criterion(self.config, criterion_source, annotations)
        namespace = metadata.namespace or review.namespace
        pod_name = metadata.name or review.name
        record_name = self._requires_pod_name(cell_id)
        now = self.now()

        rejection: Verdict | None = None
        looking = time.perf_counter()
        matching = self.protectors.matching(namespace, metadata.labels)
        self.on_phase("index", time.perf_counter() - looking)
        for protector in matching:
            request = deletion_request(
                cell_id,
                metadata.uid,
                health,
                protector,
                criterion,
                now,
                pod_name=pod_name if record_name else None,
            )
            if request is None:
                self.observer.pod_in_protector(cell_id, protector, NOT_YET_AVAILABLE, False)
                continue
            verdict = self._judge(
                cell_id,
                protector,
                request,
                criterion,
                deadline,
                read_only=review.dry_run,
                pod=f"{namespace}/{pod_name}",
            )
            if verdict is not None:
                rejection = verdict
                break

        audit: dict[str, str] = {}
        if rejection is not None:
            audit.update(rejection.audit_annotations)
        if dry_run:
            audit[AUDIT_KEY_DRY_RUN] = "1"
            return Verdict.allow(audit)
        return rejection or Verdict.allow()

    def _judge(
        self,
        cell_id: str,
        protector: PodProtector,
        request: DeletionRequest,
        criterion: HealthCriterion,
        deadline: float,
        *,
        read_only: bool,
        pod: str,
    ) -> Verdict | None:
        """None when this protector lets the deletion through, else the rejection.

        ``read_only`` is for dry-run requests (``kubectl delete --dry-run=server``): we are
        registered with sideEffects NoneOnDryRun, so they are judged but never recorded.
        """
        name = protector.key
        audit = {AUDIT_KEY_REJECT_BY: name}
        try:
            if read_only:
                full = self.protectors.get(protector.namespace, protector.name)
                if full is None:
                    return None  # gone since the lookup: nothing left to protect with it
                config = effective_config(full.spec.admission_history_config, self.history_defaults)
                result = admit_batch(full, config, [request], self.now()).results[0]
            elif self._admitted_moments_ago(protector, request):
                # What the batch would answer, without waiting for a batch that writes nothing.
                result = AdmissionResult.ALREADY_ADMITTED
            elif self.core_breaker is not None:
                with self.core_breaker.waiting():
                    result = self.batcher.submit(protector.key, request, deadline)
            else:
                result = self.batcher.submit(protector.key, request, deadline)
        except BatchTimeout:
            self.observer.pod_in_protector(cell_id, protector, "Timeout", True)
            return Verdict.reject(
                500,
                f"PodProtector {name}: timed out waiting for its status update",
                audit,
                cause="deadline",
            )
        except (NoAnswer, CoreUnavailable, CoreBusy) as error:
            self.observer.pod_in_protector(cell_id, protector, "Timeout", True)
            if isinstance(error, NoAnswer):
                why = f"core cluster did not answer within {error.budget * 1000:.0f} ms"
                cause = "core-timeout"
            elif isinstance(error, CoreBusy):
                why, cause = str(error), "core-busy"
            else:
                why, cause = str(error), "core-unavailable"
            return Verdict.reject(
                500,
                f"cannot record the admission of pod {pod} in PodProtector {name}: {why}",
                audit,
                cause=cause,
            )
        except Exception as error:
            self.observer.pod_in_protector(cell_id, protector, "Error", True)
            cause = "core-error" if isinstance(error, KubeError) else "internal"
            return Verdict.reject(500, f"PodProtector {name}: {error}", audit, cause=cause)
        verdict = refusal(protector, result, criterion)
        self.observer.pod_in_protector(cell_id, protector, result.value, verdict is not None)
        return verdict

    def _admitted_moments_ago(self, protector: PodProtector, request: DeletionRequest) -> bool:
        """The cached protector holds this pod's bucket and it is not due a refresh:
        kube-apiserver's repeat review of a DELETE just admitted (see protectors.quota)."""
        refresh_after = self._refresh_after
        if not request.pod_uid or refresh_after <= timedelta(0):
            return False
        # Read from the cached object without parsing its whole status: this is the second
        # review of nearly every protected DELETE, and the status can hold a hundred buckets.
        started = self.protectors.admitted_at(
            protector.namespace, protector.name, request.cell_id, request.pod_uid
        )
        return started is not None and not refresh_due(started, self.now(), refresh_after)

    @cached_property
    def _refresh_after(self) -> timedelta:
        return timedelta(milliseconds=self.config.webhook.bucket_refresh_after_millis)

    def _requires_pod_name(self, cell_id: str) -> bool:
        mode = self.config.webhook.requires_pod_name
        if mode == "always":
            return True
        if mode == "by-cell":
            cell = self.config.cell(cell_id)
            return bool(cell and cell.requires_pod_name)
        return False
