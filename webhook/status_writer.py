"""Executes one batch of deletion requests against one PodProtector: quota, then one status write.

The protector comes from the informer cache; right after our own write the cache may still hold
the version we wrote over, so we remember what we wrote and start from it until the cache
catches up (otherwise every second batch would pay a 409 and a backoff). Any version the cache
shows that we did not supersede ourselves is newer than ours, and wins.
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


class ProtectorSource(Protocol):
    def get(self, namespace: str, name: str) -> PodProtector | None: ...


class StatusClient(Protocol):
    def replace_status(
        self, resource: Resource, namespace: str | None, name: str, obj: dict, budget: float
    ) -> dict: ...


# A write whose budget the review's deadline cut below this share of the configured one says
# nothing about the core cluster when it times out: it does not open the breaker.
_FULL_BUDGET_SHARE = 0.5


@dataclass
class _Written:
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
        refresh_after: timedelta = timedelta(0),
        write_timeout: float = 3.0,
        breaker: CoreBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._core = core
        self._on_phase = on_phase or (lambda phase, seconds: None)
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

    def __call__(
        self, key: str, requests: Sequence[DeletionRequest], deadline: float | None = None
    ) -> list[AdmissionResult]:
        started = time.perf_counter()
        namespace, name = key.split("/", 1)
        cached = self._protectors.get(namespace, name)
        if cached is None:
            # Gone since the lookup: nothing left to protect with it.
            return [AdmissionResult.OK] * len(requests)
        base = self._freshest(key, cached)
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
        body = base.with_status(outcome.status).to_dict()
        writing = time.perf_counter()
        self._on_phase("quota", writing - started)
        budget = self._write_timeout
        if deadline is not None:
            budget = min(budget, deadline - self._clock())
        probe = self._breaker.before_write()
        try:
            written = self._core.replace_status(PODPROTECTORS, namespace, name, body, budget)
        except KubeError as error:
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
        if self._on_write:
            self._on_write(key, len(requests))
        with self._lock:
            entry = self._written.get(key)
            superseded = entry.superseded if entry else set()
            superseded.add(base.resource_version)
            self._written[key] = _Written(PodProtector.from_dict(written), superseded)
        return list(outcome.results)

    def _freshest(self, key: str, cached: PodProtector) -> PodProtector:
        with self._lock:
            entry = self._written.get(key)
            if entry is None:
                return cached
            if cached.resource_version in entry.superseded:
                return entry.protector
            # The cache reached our write, or moved past it: it is authoritative again.
            del self._written[key]
            return cached
