"""The aggregator controller for one cell: informers, work queue, reconcile workers, update
trigger (design.md §4 "Aggregator").

Flow:
- pod event (cell) → the cell's sync time advances; when it moved, every protector in the
  next-event pool is re-enqueued; every protector whose aggregation selector matches the pod
  (before or after the event) is enqueued after its aggregationRate * U[rate_jitter];
- protector event (core) → that protector is enqueued likewise, unless the event is our own
  status write or only touches other cells' status;
- a worker reconciles one protector: ``reconcile.reconcile_cell`` over the candidate pods, the
  sync time and now; the status is written (PUT /status with the cached resourceVersion) only
  when it changed; 409 → requeue with backoff; protectors still holding buckets the sync time
  has not passed wait in the pool; a pod turning available later requeues the protector then.

Every ``start`` builds a fresh run (queue, informers, threads) from the context it is given, so a
controller stopped on a lost lease or a pause can be started again under a new fence. The
PodProtector informer is the exception: the aggregators of one process share it (shared.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from podseidon_site.config import PodseidonConfig
from protectors import constants
from protectors.history_config import EffectiveHistoryConfig
from protectors.kube.client import PODPROTECTORS, PODS, KubeClient, KubeError
from protectors.kube.informer import (
    FunctionHandler,
    Informer,
    LoggingInformerObserver,
    object_key,
)
from protectors.model import PodProtector, PodProtectorFormatError, Spec, Status
from protectors.selectors import SelectorError
from workers.aggregator.index import PodCandidates, ProtectorLookup
from workers.aggregator.observer import AggregatorObserver, ReconcileError
from workers.aggregator.podcache import (
    counting_view,
    pod_transform,
    slim_pod_with_times,
)
from workers.aggregator.pool import NextEventPool
from workers.aggregator.reconcile import history_defaults, jittered_delay, reconcile_cell
from workers.aggregator.shared import SharedProtectors, acquire_protectors
from workers.aggregator.synctime import SyncClock, SyncTimeAlgorithm, event_time
from workers.aggregator.update_trigger import UpdateTrigger
from workers.controller import ControllerContext, LostLeadership
from workers.workqueue import ShutDown, WorkQueue

__all__ = ["AggregatorController", "aggregation_rate", "status_body", "trim_pod"]

logger = logging.getLogger("podseidon.aggregator")

# Requeue a little after a pod's availability moment, never before it.
_AVAILABILITY_MARGIN = 0.01
# How long stop() waits for threads in all.
_STOP_TIMEOUT = 5.0
# The metadata a status write sends: the object's identity and the write's preconditions.
_STATUS_WRITE_METADATA = ("name", "namespace", "resourceVersion", "uid")
# How often, at most, the next-event pool's gauges are refreshed while its size stays the same.
_POOL_PUBLISH_INTERVAL = 1.0

# The pod cache transform that keeps everything either sync-time algorithm reads (tests and the
# benchmark's memory probe use it; a run picks the one for its algorithm, see podcache.py).
trim_pod = slim_pod_with_times


def aggregation_rate(obj: Mapping[str, Any], defaults: EffectiveHistoryConfig) -> timedelta:
    """A raw protector's aggregationRate: its own positive value, else the default."""
    spec = obj.get("spec") or {}
    millis = (spec.get("admissionHistoryConfig") or {}).get("aggregationRateMillis")
    if isinstance(millis, int) and not isinstance(millis, bool) and millis > 0:
        return timedelta(milliseconds=millis)
    return defaults.aggregation_rate


def _resource_version(obj: Mapping[str, Any] | None) -> str | None:
    return ((obj or {}).get("metadata") or {}).get("resourceVersion")


def _labels(obj: Mapping[str, Any] | None) -> dict[str, str]:
    return ((obj or {}).get("metadata") or {}).get("labels") or {}


def _cell_entry(obj: Mapping[str, Any], cell_id: str) -> Any:
    for cell in (obj.get("status") or {}).get("cells") or ():
        if isinstance(cell, Mapping) and cell.get("cellID") == cell_id:
            return cell
    return None


def status_body(obj: Mapping[str, Any], status: Status) -> dict[str, Any]:
    """The PUT body of a status write: the new status, with the cached resourceVersion (and UID)
    as preconditions. The API server takes only the status from a /status write, so metadata
    (managedFields, annotations) is not sent back; the spec goes as it came (it is small)."""
    metadata = obj.get("metadata") or {}
    sent = {k: metadata[k] for k in _STATUS_WRITE_METADATA if k in metadata}
    body: dict[str, Any] = {
        "apiVersion": obj.get("apiVersion") or constants.API_VERSION,
        "kind": obj.get("kind") or constants.KIND,
        "metadata": sent,
    }
    if "spec" in obj:
        body["spec"] = obj["spec"]
    body["status"] = status.to_dict()
    return body


@dataclass(frozen=True)
class _OwnWrite:
    """Our last status write of one protector.

    Until the cache shows it, reconcile from the written object rather than from an older
    cached one (that write would only meet a 409); its watch event is recognised by
    ``version`` and does not trigger another reconcile.
    """

    # The resourceVersion our write produced.
    version: str | None
    # Versions known to be older than it: the bases of our writes the cache has not shown yet.
    superseded: frozenset[str | None]
    # The written object, until the cache has caught up with it.
    obj: dict | None


class AggregatorController:
    """Counts one cell's pods into every PodProtector's status."""

    def __init__(
        self,
        config: PodseidonConfig,
        cell_id: str,
        *,
        workers: int | None = None,
        observer: AggregatorObserver | None = None,
    ) -> None:
        self.config = config
        self.cell_id = cell_id
        self.name = f"aggregator/{cell_id}"
        self.workers = workers if workers is not None else config.aggregator.workers
        self.observer = observer or AggregatorObserver(cell_id)
        self._lock = threading.Lock()
        self._run: _Run | None = None

    def start(self, context: ControllerContext) -> None:
        with self._lock:
            if self._run is not None:
                raise RuntimeError(f"{self.name} already started")
            if self.cell_id not in context.cells:
                raise ValueError(f"{self.name}: no client for cell {self.cell_id!r}")
            self._run = _Run(self, context)
            self._run.start()

    def stop(self) -> None:
        with self._lock:
            run, self._run = self._run, None
        if run is not None:
            run.stop()

    @property
    def running(self) -> bool:
        return self._run is not None

    # For tests and the console: a view of the current run.
    @property
    def sync_time(self) -> datetime | None:
        run = self._run
        return run.sync_time if run is not None else None

    @property
    def pool_size(self) -> int:
        run = self._run
        return run.pool_size if run is not None else 0

    def waiting(self) -> list[str]:
        """Keys of the protectors in the next-event pool, oldest first."""
        run = self._run
        if run is None:
            return []
        with run.lock:
            return list(run.pool.keys())


class _StreamObserver(LoggingInformerObserver):
    """The pod informer's observer: logs like every informer, and tells the run what matters
    to it: a failing watch is reported to the runtime (the console shows why a cell is not
    aggregated), and a completed pod list proves the pod cache current. (The PodProtector
    informer is shared by the process's aggregators: workers/aggregator/shared.py.)"""

    def __init__(self, run: _Run) -> None:
        self._run = run

    def listed(self, informer: str, count: int, resource_version: str) -> None:
        super().listed(informer, count, resource_version)
        self._run.pods_listed()

    def watch_failed(self, informer: str, error: Exception, retry_in: float) -> None:
        super().watch_failed(informer, error, retry_in)
        if not self._run.stopping.is_set():
            self._run.context.report(f"{informer}: {error}")


class _Run:
    """One started period of the controller; discarded on stop."""

    def __init__(self, controller: AggregatorController, context: ControllerContext) -> None:
        config = controller.config
        self.controller = controller
        self.context = context
        self.cell_id = controller.cell_id
        self.observer = controller.observer
        self.algorithm = SyncTimeAlgorithm(config.aggregator.sync_time_algorithm)
        self.jitter = (
            float(config.aggregator.rate_jitter[0]),
            float(config.aggregator.rate_jitter[1]),
        )
        self.defaults = history_defaults(config.admission_history)
        self.core: KubeClient = context.core
        self.cell: KubeClient = context.cells[self.cell_id]

        self.stopping = threading.Event()
        self.synced = threading.Event()
        self.queue = WorkQueue()
        self.lock = threading.Lock()  # guards sync clock, pool and own writes
        self.sync = SyncClock()
        self.pool = NextEventPool()
        self.own_writes: dict[str, _OwnWrite] = {}
        # key -> (spec as cached, parsed): a spec is parsed once per change, not per reconcile.
        self.specs: dict[str, tuple[Any, Spec]] = {}
        self.threads: list[threading.Thread] = []
        self._pool_published: tuple[int, float] = (-1, 0.0)  # (size, monotonic time)

        # Created in start(): the PodProtector informer is shared with the process's other
        # aggregators of the same core cluster (shared.py).
        self.protector_handler = FunctionHandler(
            add=self.protector_added,
            update=self.protector_updated,
            delete=self.protector_deleted,
        )
        self.shared: SharedProtectors | None = None
        self.protectors: Informer
        self.lookup: ProtectorLookup

        cell_config = config.cell(self.cell_id)
        self.pods = Informer(
            self.cell,
            PODS,
            name=f"{controller.name}/pods",
            namespace=(cell_config.namespace if cell_config else "") or None,
            label_selector=config.aggregator.pod_label_selector or None,
            transform=pod_transform(self.algorithm.value),
            observer=_StreamObserver(self),
        )
        self.candidates = PodCandidates(self.pods)
        self.pods.add_handler(
            FunctionHandler(
                add=lambda pod: self.pod_event(None, pod),
                update=self.pod_event,
                delete=lambda pod: self.pod_event(None, pod),
            )
        )

        self.trigger: UpdateTrigger | None = None
        trigger_config = config.aggregator.update_trigger
        if trigger_config.enabled:
            watched = self.pods.namespace
            if watched and watched != trigger_config.dummy_pod_namespace:
                logger.warning(
                    "cell %s: the update trigger's pod is in namespace %s but only %s is "
                    "watched; its events will not be seen",
                    self.cell_id,
                    trigger_config.dummy_pod_namespace,
                    watched,
                )
            self.trigger = UpdateTrigger(
                self.cell,
                trigger_config,
                pod_label_selector=config.aggregator.pod_label_selector,
                on_result=self.observer.update_trigger,
            )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.observer.started()
        self.shared = acquire_protectors(
            self.core,
            self.controller.config.core.namespace or None,
            self.protector_handler,
            self.protector_watch_failed,
        )
        self.protectors = self.shared.informer
        self.lookup = self.shared.lookup
        self.pods.start()
        for index in range(max(self.controller.workers, 1)):
            thread = threading.Thread(
                target=self.work, name=f"{self.controller.name}-worker-{index}", daemon=True
            )
            thread.start()
            self.threads.append(thread)
        if self.trigger is not None:
            self.trigger.start()

    def stop(self) -> None:
        deadline = time.monotonic() + _STOP_TIMEOUT
        self.stopping.set()
        self.queue.shutdown()
        if self.trigger is not None:
            self.trigger.stop(timeout=0)
        # Signal everything before waiting for anything: the threads wind down together.
        self.pods.stop(timeout=0)
        # The last user stops the shared informer (signalled now, waited for below).
        last = self.shared.release(timeout=0) if self.shared is not None else False
        if self.trigger is not None:
            self.trigger.stop(timeout=max(deadline - time.monotonic(), 0.1))
        self.pods.stop(timeout=max(deadline - time.monotonic(), 0.1))
        if last:
            self.protectors.stop(timeout=max(deadline - time.monotonic(), 0.1))
        for thread in self.threads:
            if thread is not threading.current_thread():
                # A worker in the middle of a write finishes it (the fence stops it when the
                # lease is gone); we do not wait longer than the runtime allows.
                thread.join(max(deadline - time.monotonic(), 0.1))
        self.observer.stopped()

    @property
    def sync_time(self) -> datetime | None:
        with self.lock:
            return self.sync.value

    @property
    def pool_size(self) -> int:
        with self.lock:
            return len(self.pool)

    # -- events ------------------------------------------------------------------------------

    def schedule(self, key: str, obj: Mapping[str, Any] | None = None) -> None:
        if obj is None:
            obj = self.protectors.get(key)
            if obj is None:
                return
        delay = jittered_delay(aggregation_rate(obj, self.defaults), self.jitter)
        self.queue.add(key, delay)

    def advance(self, moment: datetime | None) -> list[str]:
        """Move the sync time; the protectors woken from the pool when it moved."""
        with self.lock:
            if self.sync.advance(moment):
                return self.pool.drain()
            return []

    def pods_listed(self) -> None:
        if self.algorithm is SyncTimeAlgorithm.CLOCK:
            for key in self.advance(datetime.now(UTC)):
                self.schedule(key)

    def pod_event(self, old: dict | None, new: dict) -> None:
        received = datetime.now(UTC)
        keys = set(self.advance(event_time(self.algorithm, new, received)))
        if old is not None and counting_view(old) == counting_view(new):
            # Nothing a count reads changed (an IP, a container restart, a probe time): no
            # protector needs a reconcile for it; only the sync time moved.
            for key in keys:
                self.schedule(key)
            return
        namespace = (new.get("metadata") or {}).get("namespace", "")
        labels = _labels(new)
        keys |= self.lookup.matching(namespace, labels)
        if old is not None:
            old_labels = _labels(old)
            if old_labels != labels:
                keys |= self.lookup.matching(namespace, old_labels)
        for key in keys:
            self.schedule(key)

    def protector_watch_failed(self, message: str) -> None:
        if not self.stopping.is_set():
            self.context.report(message)

    def protector_added(self, obj: dict) -> None:
        if self.stopping.is_set():
            return  # the shared informer may deliver one last event while we leave it
        self.schedule(object_key(obj), obj)

    def protector_updated(self, old: dict, new: dict) -> None:
        if self.stopping.is_set():
            return
        key = object_key(new)
        with self.lock:
            own = self.own_writes.get(key)
        if own is not None and own.version == _resource_version(new):
            return  # the event of our own write
        if old.get("spec") == new.get("spec") and _cell_entry(old, self.cell_id) == _cell_entry(
            new, self.cell_id
        ):
            return  # only other cells' status (or metadata) moved: nothing for this cell
        self.schedule(key, new)

    def protector_deleted(self, obj: dict) -> None:
        key = object_key(obj)
        self.lookup.forget(key)
        self.specs.pop(key, None)
        with self.lock:
            self.pool.discard(key)
            self.own_writes.pop(key, None)
        self.queue.forget(key)

    # -- work --------------------------------------------------------------------------------

    def work(self) -> None:
        while not self.stopping.is_set():
            if not self.synced.is_set():
                # Never aggregate from a cache that has not listed yet: it would count zero.
                if self.protectors.wait_synced(0.1) and self.pods.wait_synced(0.1):
                    with self.lock:
                        first = not self.synced.is_set()
                        self.synced.set()
                    if first:
                        self.observer.synced()
                continue
            try:
                key = self.queue.get(timeout=0.5)
            except ShutDown:
                return
            if key is not None:
                try:
                    self.reconcile(str(key))
                finally:
                    self.queue.done(key)
            self.publish_pool()

    def publish_pool(self) -> None:
        now = time.monotonic()
        with self.lock:
            size = len(self.pool)
            last_size, last_at = self._pool_published
            if size == last_size and now - last_at < _POOL_PUBLISH_INTERVAL:
                return
            self._pool_published = (size, now)
            latency = self.pool.latency()
        self.observer.pool(size, latency)

    def current(self, key: str) -> dict | None:
        """The protector as cached, or our newer write if the cache has not caught up."""
        obj = self.protectors.get(key)
        if obj is None:
            return None
        version = _resource_version(obj)
        with self.lock:
            own = self.own_writes.get(key)
            if own is None:
                return obj
            if own.obj is not None and version in own.superseded:
                return own.obj
            if version == own.version:
                # Caught up: keep the version (its event may still be on its way), drop the copy.
                if own.obj is not None:
                    self.own_writes[key] = replace(own, obj=None, superseded=frozenset())
                return obj
            # Someone wrote after us: the cache is the newest we know.
            self.own_writes.pop(key, None)
            return obj

    def parse(self, key: str, obj: Mapping[str, Any]) -> PodProtector:
        """The protector for reconciling: its spec parsed once per change of the spec, its
        status parsed, its metadata shared with the cache (read only)."""
        raw_spec = obj.get("spec")
        cached = self.specs.get(key)
        if cached is not None and cached[0] == raw_spec:
            spec = cached[1]
        else:
            if raw_spec is None:
                raise PodProtectorFormatError("spec", "required field is missing")
            spec = Spec.from_dict(raw_spec, path="spec")
            spec.aggregation_label_selector  # noqa: B018 - parse (and validate) it once too
            self.specs[key] = (raw_spec, spec)
        raw_status = obj.get("status")
        status = None if raw_status is None else Status.from_dict(raw_status, path="status")
        return PodProtector(metadata=obj.get("metadata") or {}, spec=spec, status=status)

    def reconcile(self, key: str) -> None:
        started = time.perf_counter()
        error, message = ReconcileError.NONE, None
        try:
            error, message = self._reconcile(key)
        except LostLeadership as exc:
            error, message = ReconcileError.LOST_LEADERSHIP, str(exc) or "lost leadership"
            self.queue.retry(key)
        except KubeError as exc:
            error, message = ReconcileError.KUBE, str(exc)
            self.queue.retry(key)
        except Exception as exc:  # a bug must not kill the worker
            logger.exception("cell %s: reconciling PodProtector %s crashed", self.cell_id, key)
            error, message = ReconcileError.INTERNAL, f"{type(exc).__name__}: {exc}"
            self.queue.retry(key)
        self.observer.reconciled(key, time.perf_counter() - started, error, message)
        reportable = error not in (ReconcileError.NONE, ReconcileError.CONFLICT)
        self.context.report(f"{key}: {message}" if reportable else None)

    def _reconcile(self, key: str) -> tuple[ReconcileError, str | None]:
        obj = self.current(key)
        if obj is None:
            with self.lock:
                self.pool.discard(key)
            self.queue.forget(key)
            return ReconcileError.NONE, None
        try:
            protector = self.parse(key, obj)
            selector = protector.spec.aggregation_label_selector
        except (PodProtectorFormatError, SelectorError) as exc:
            # Not retried: the next change of the object brings it back.
            return ReconcileError.INVALID, str(exc)

        with self.lock:
            sync_time = self.sync.value
        # Read the pods after the sync time: the cache is at least as new as the sync time.
        pods = self.candidates.for_selector(protector.namespace, selector)
        now = datetime.now(UTC)
        decision = reconcile_cell(protector, self.cell_id, pods, sync_time, now, self.defaults)

        if decision.status is not None:
            if self.stopping.is_set():
                return ReconcileError.NONE, None
            body = status_body(obj, decision.status)
            try:
                written = self.core.replace_status(
                    PODPROTECTORS, protector.namespace, protector.name, body
                )
            except KubeError as exc:
                if exc.is_conflict:
                    self.queue.retry(key)
                    return ReconcileError.CONFLICT, str(exc)
                if exc.is_not_found:
                    return ReconcileError.NONE, None
                raise
            base = protector.resource_version or None
            with self.lock:
                previous = self.own_writes.get(key)
                superseded = frozenset({base})
                if previous is not None and previous.obj is not None and previous.version == base:
                    superseded |= previous.superseded  # chained writes ahead of the cache
                self.own_writes[key] = _OwnWrite(_resource_version(written), superseded, written)
            self.observer.status_written(key, decision)
        self.queue.forget(key)

        requeue_now = False
        with self.lock:
            if not decision.waiting:
                self.pool.discard(key)
            elif self.sync.value != sync_time:
                requeue_now = True  # an event moved the sync time while we worked
            else:
                self.pool.add(key)
        if requeue_now:
            self.schedule(key, obj)
        if decision.requeue_at is not None:
            delay = (decision.requeue_at - now).total_seconds() + _AVAILABILITY_MARGIN
            self.queue.add(key, max(delay, 0.0))
        return ReconcileError.NONE, None
