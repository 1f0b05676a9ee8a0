"""The webhook's process-wide state: cluster clients, the PodProtector cache, the batcher.

One runtime per process, built on first use (or eagerly by the webhook's gunicorn hook) from
the validated config. Nothing here touches the database or Redis: the webhook must keep
answering when both are down.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta

from podseidon_site.config import PodseidonConfig
from protectors.history_config import EffectiveHistoryConfig
from protectors.kube.client import PODPROTECTORS, PODS, KubeClient
from protectors.kube.informer import Informer
from webhook.batching import RetryBatcher
from webhook.bounded_client import BoundedClient
from webhook.core_breaker import CoreBreaker
from webhook.decision import Decider
from webhook.observer import WebhookObserver
from webhook.protector_index import ProtectorIndex
from webhook.status_writer import StatusWriter

# Answer this long before kube-apiserver's own deadline, so it gets our error, not a timeout.
DEADLINE_MARGIN_SECONDS = 0.5
# While the core cluster is silent, one protected review per interval tries a real write.
CORE_PROBE_INTERVAL_SECONDS = 1.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


# Set by the webhook's gunicorn config: the request threads of each worker process.
THREADS_ENV = "PODSEIDON_WEBHOOK_THREADS"


def server_threads() -> int:
    """Request threads of this process (0: not known, e.g. outside gunicorn)."""
    try:
        return max(0, int(os.environ.get(THREADS_ENV, "0")))
    except ValueError:
        return 0


def max_core_waiters(threads: int) -> int:
    """How many of ``threads`` may wait for status writes at once: the rest stay free for
    reviews that need no write, whatever the core cluster does (0: no bound)."""
    if threads <= 0:
        return 0
    return max(1, threads - max(2, threads // 8))


def review_span(timeout: float) -> float:
    """How long we may take for a review kube-apiserver gives ``timeout`` seconds."""
    return max(timeout - DEADLINE_MARGIN_SECONDS, timeout * 0.8)


class WebhookRuntime:
    def __init__(self, config: PodseidonConfig) -> None:
        self.config = config
        self.review_timeout = float(config.webhook.timeout_seconds)
        self.started_at = time.monotonic()
        self.observer = WebhookObserver(config.metrics)
        self.core = KubeClient.from_access(config.core)
        # Status writes and pod reads on the review path: bounded, never retried.
        self.core_writes = BoundedClient(self.core.api_client)
        self._cells: dict[str, BoundedClient] = {}
        self._cells_lock = threading.Lock()
        self.index = ProtectorIndex()
        self.informer = Informer(
            self.core,
            PODPROTECTORS,
            name="webhook-podprotectors",
            namespace=config.core.namespace or None,
        )
        self.informer.add_handler(self.index)
        history = config.admission_history
        self.history_defaults = EffectiveHistoryConfig.from_millis(
            history.max_concurrent_lag,
            history.compact_threshold,
            history.aggregation_rate_millis,
        )
        webhook = config.webhook
        self.core_breaker = CoreBreaker(
            CORE_PROBE_INTERVAL_SECONDS,
            max_waiting=max_core_waiters(server_threads()),
            on_change=self.observer.core_silent,
        )
        writer = StatusWriter(
            self.core_writes,
            self.index,
            self.history_defaults,
            _utcnow,
            on_write=self.observer.status_written,
            on_phase=self.observer.phase,
            on_conflict=self.observer.status_conflict,
            refresh_after=timedelta(milliseconds=webhook.bucket_refresh_after_millis),
            write_timeout=min(
                webhook.core_write_timeout_millis / 1000, review_span(webhook.timeout_seconds)
            ),
            breaker=self.core_breaker,
        )
        self.batcher: RetryBatcher = RetryBatcher(
            writer,
            backoff_base=webhook.retry_backoff_base_millis / 1000,
            backoff_jitter=webhook.retry_jitter_millis / 1000,
            window=webhook.batch_window_millis / 1000,
            observer=self.observer,
        )
        self.decider = Decider(
            config=config,
            protectors=self.index,
            synced=lambda: self.informer.has_synced,
            batcher=self.batcher,
            fetch_pod=self.fetch_pod,
            observer=self.observer,
            started_at=self.started_at,
            history_defaults=self.history_defaults,
            now=_utcnow,
            core_breaker=self.core_breaker,
            on_phase=self.observer.phase,
        )

    def start(self) -> None:
        self.informer.start()

    def stop(self) -> None:
        self.informer.stop()

    @property
    def ready(self) -> bool:
        return self.informer.has_synced

    def cell_client(self, cell_id: str) -> BoundedClient:
        with self._cells_lock:
            client = self._cells.get(cell_id)
            if client is None:
                cell = self.config.cell(cell_id)
                if cell is None:
                    raise KeyError(cell_id)
                api = KubeClient.from_access(cell).api_client
                client = self._cells[cell_id] = BoundedClient(api, pool_size=4)
            return client

    def fetch_pod(self, cell_id: str, namespace: str, name: str, deadline: float) -> dict:
        return self.cell_client(cell_id).get(PODS, namespace, name, deadline - time.monotonic())


_lock = threading.Lock()
_runtime: WebhookRuntime | None = None


def get_runtime() -> WebhookRuntime:
    """The process's runtime, started on first use."""
    global _runtime
    if _runtime is None:
        with _lock:
            if _runtime is None:
                from django.conf import settings

                runtime = WebhookRuntime(settings.PODSEIDON)
                runtime.start()
                _runtime = runtime
    return _runtime


def reset_runtime() -> None:
    """Stop and forget the runtime (tests, and gunicorn's worker shutdown)."""
    global _runtime
    with _lock:
        if _runtime is not None:
            _runtime.stop()
        _runtime = None
