"""Executes one batch of deletion requests against one PodProtector: quota, then one status write.

The protector comes from the informer cache; right after our own write the cache may still hold
the version we wrote over, so we remember what we wrote and start from it until the cache
catches up (otherwise every second batch would pay a 409 and a backoff). Any version the cache
shows that we did not supersede ourselves is newer than ours, and wins.

What we remember is the object we sent, with the metadata the core cluster answered: the CRD
declares every field we write and defaults none, so it is what the cluster stored, and the next
batch of a sequence of deletions starts from it without parsing the status again (a hundred
buckets cost half a millisecond to parse) once the cache shows that same version.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from protectors.history_config import EffectiveHistoryConfig, effective_config
from protectors.kube.client import PODPROTECTORS, KubeError, Resource
from protectors.model import PodProtector
from protectors.quota import AdmissionResult, DeletionRequest, admit_batch
from webhook.batching import NeedRetry
from webhook.bounded_client import NoAnswer
from webhook.core_breaker import CoreBreaker
from webhook.status_body import StatusBodies


class ProtectorSource(Protocol):
    def get(self, namespace: str, name: str) -> PodProtector | None: ...

    def resource_version(self, namespace: str, name: str) -> str | None: ...


class StatusClient(Protocol):
    def replace_status(
        self, resource: Resource, namespace: str | None, name: str, obj: dict, budget: float
    ) -> dict: ...

    def get(self, resource: Resource, namespace: str | None, name: str, budget: float) -> dict: ...


# A write whose budget the review's deadline cut below this share of the configured one says
# nothing about the core cluster when it times out: it does not open the breaker.
_FULL_BUDGET_SHARE = 0.5


@dataclass
class _Written:
    """Our last write of one protector, and the cached versions it is newer than."""

    protector: PodProtector
    superseded: set[str] = field(default_factory=set)


class StatusWriter:
    """The RetryBatcher executor: ``writer(key, requests, deadline) -> results``.

    Each write waits at most ``write_timeout`` seconds, and never past ``deadline`` (the batch
    runner's own: its answer is due then); silence opens ``breaker``.
    """

    def __init__(
        self,
        core: StatusClient,
        protectors: ProtectorSource,
        defaults: EffectiveHistoryConfig,
        now: Callable[[], datetime],
        *,
        on_write: Callable[[str, int], None] | None = None,
        on_phase: Callable[[str, float], None] | None = None,
        on_conflict: Callable[[str], None] | None = None,
        refresh_after: timedelta = timedelta(0),
        write_timeout: float = 3.0,
        breaker: CoreBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._core = core
        self._on_phase = on_phase or (lambda phase, seconds: None)
        self._on_conflict = on_conflict or (lambda key: None)
        self._protectors = protectors
        self._defaults = defaults
        self._now = now
        self._on_write = on_write
        self._refresh_after = refresh_after
        self._write_timeout = write_timeout
        self._breaker = breaker or CoreBreaker()
        self._clock = clock
        self._lock = threading.Lock()
        self._written: dict[str, _Written] = {}
        self._bodies = StatusBodies()

    def __call__(
        self, key: str, requests: Sequence[DeletionRequest], deadline: float | None = None
    ) -> list[AdmissionResult]:
        started = time.perf_counter()
        namespace, name = key.split("/", 1)
        base = self._freshest(key, namespace, name)
        if base is None:
            # Gone since the lookup: nothing left to protect with it.
            return [AdmissionResult.OK] * len(requests)
        try:
            return self._write(key, requests, deadline, base, started)
        except NeedRetry:
            self._on_conflict(key)
        # Somebody wrote since our copy (the aggregator, another webhook process). Rather than
        # back off 100-200 ms, read the object now and run the quota again on it: the write
        # still carries that object's resourceVersion, so a second race loses again (and then
        # the batch backs off), and nothing is ever decided on a stale copy.
        budget = self._budget(deadline)
        try:
            fresh = self._core.get(PODPROTECTORS, namespace, name, budget)
        except KubeError as error:
            if error.is_not_found:
                return [AdmissionResult.OK] * len(requests)
            raise NeedRetry from None
        return self._write(
            key,
            requests,
            deadline,
            PodProtector.from_dict(fresh),
            time.perf_counter(),
            older=base.resource_version,
        )

    def _budget(self, deadline: float | None) -> float:
        if deadline is None:
            return self._write_timeout
        return min(self._write_timeout, deadline - self._clock())

    def _write(
        self,
        key: str,
        requests: Sequence[DeletionRequest],
        deadline: float | None,
        base: PodProtector,
        started: float,
        *,
        older: str = "",
    ) -> list[AdmissionResult]:
        namespace, name = base.namespace, base.name
        config = effective_config(base.spec.admission_history_config, self._defaults)
        outcome = admit_batch(
            base,
            config,
            requests,
            self._now(),
            record_pod_names=True,
            refresh_after=self._refresh_after,
        )
        if not outcome.changed:
            self._on_phase("quota", time.perf_counter() - started)
            return list(outcome.results)
        sent = base.with_status(outcome.status)
        body = self._bodies.body(key, sent, base)
        writing = time.perf_counter()
        self._on_phase("quota", writing - started)
        budget = self._budget(deadline)
        probe = self._breaker.before_write()
        try:
            written = self._core.replace_status(PODPROTECTORS, namespace, name, body, budget)
        except KubeError as error:
            if not error.is_conflict:
                # What the core holds now is unknown: start again from the cache.
                with self._lock:
                    self._written.pop(key, None)
            if isinstance(error, NoAnswer) and budget >= self._write_timeout * _FULL_BUDGET_SHARE:
                self._breaker.silent(budget, probe)
            elif error.status == 0:
                # Refused or reset: nobody answered, but it took no time either; a probe is over.
                self._breaker.abandoned(probe)
            else:
                self._breaker.answered(probe)
            if error.is_conflict:
                raise NeedRetry from None
            if error.is_not_found:
                return [AdmissionResult.OK] * len(requests)
            raise
        except BaseException:
            self._breaker.abandoned(probe)
            raise
        self._breaker.answered(probe)
        self._on_phase("status_write", time.perf_counter() - writing)
        self._bodies.written(key, sent, body)
        if self._on_write:
            self._on_write(key, len(requests))
        metadata = written.get("metadata") if isinstance(written, dict) else None
        ours = sent.evolve(metadata=metadata) if isinstance(metadata, dict) else None
        with self._lock:
            entry = self._written.get(key)
            # Every version we have built on is older than this write.
            superseded = entry.superseded if entry else set()
            superseded.add(base.resource_version)
            if older:
                superseded.add(older)
            if ours is not None:
                self._written[key] = _Written(ours, superseded)
            else:
                self._written.pop(key, None)
        return list(outcome.results)

    def _freshest(self, key: str, namespace: str, name: str) -> PodProtector | None:
        version = self._protectors.resource_version(namespace, name)
        if version is None:
            return None
        with self._lock:
            entry = self._written.get(key)
            if entry is not None:
                if version == entry.protector.resource_version or version in entry.superseded:
                    # The cache shows our write, or a version it replaced: ours is current.
                    return entry.protector
                # The cache moved past our write: it is authoritative again.
                del self._written[key]
                self._bodies.forget(key)
        return self._protectors.get(namespace, name)
