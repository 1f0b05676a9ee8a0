"""The webhook's process-wide state: cluster clients, the PodProtector cache, the batcher.

One runtime per process, built on first use (or eagerly by the webhook's gunicorn hook) from
the validated config. Nothing here touches the database or Redis: the webhook must keep
answering when both are down.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from podseidon_site.config import PodseidonConfig
from protectors.history_config import EffectiveHistoryConfig
from protectors.kube.client import PODPROTECTORS, PODS, KubeClient
from protectors.kube.informer import Informer
from webhook.batching import RetryBatcher
from webhook.decision import Decider
from webhook.observer import WebhookObserver
from webhook.protector_index import ProtectorIndex
from webhook.status_writer import StatusWriter


def _utcnow() -> datetime:
    return datetime.now(UTC)


class WebhookRuntime:
    def __init__(self, config: PodseidonConfig) -> None:
        self.config = config
        self.started_at = time.monotonic()
        self.observer = WebhookObserver(config.metrics)
        self.core = KubeClient.from_access(config.core)
        self._cells: dict[str, KubeClient] = {}
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
        writer = StatusWriter(
            self.core,
            self.index,
            self.history_defaults,
            _utcnow,
            on_write=self.observer.status_written,
            refresh_after=timedelta(milliseconds=config.webhook.bucket_refresh_after_millis),
        )
        webhook = config.webhook
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
        )

    def start(self) -> None:
        self.informer.start()

    def stop(self) -> None:
        self.informer.stop()

    @property
    def ready(self) -> bool:
        return self.informer.has_synced

    def cell_client(self, cell_id: str) -> KubeClient:
        with self._cells_lock:
            client = self._cells.get(cell_id)
            if client is None:
                cell = self.config.cell(cell_id)
                if cell is None:
                    raise KeyError(cell_id)
                client = self._cells[cell_id] = KubeClient.from_access(cell)
            return client

    def fetch_pod(self, cell_id: str, namespace: str, name: str) -> dict:
        return self.cell_client(cell_id).get(PODS, namespace, name)


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
