"""The generator as a ``Controller``: informers, a keyed work queue and reconcile workers.

On ``start`` it opens one Informer per enabled workload kind (all workloads of the kind, not
only selected ones, so a workload that stops matching is noticed) and one on PodProtectors, all
in the core cluster. Workload events and PodProtector events (mapped back to their source
workload) enqueue ``(kind, namespace, name)``; ``generator.workers`` threads reconcile keys once
every cache has synced. Each reconcile reads both caches, asks ``decide`` what to do and lets
the ``Executor`` write through ``context.core`` (fenced).

The same PodProtector informer also feeds a second queue: every PodProtector carrying the
``remove-cell-once`` annotation, generated or not (``cell_removal``), handled by its own
``generator.workers`` threads so a thousand annotated protectors do not wait behind workload
reconciles, nor the other way round. The generator therefore runs even when no workload kind is
configured for generation. Both queues record Kubernetes Events on the protectors they change
through one ``EventRecorder`` (a background thread; a reconcile never waits for it).

Dangling protectors: when a workload's DELETE event arrives, its last cached state is kept as a
tombstone. If that state was not terminating (no deletionTimestamp was ever seen), the workload
vanished without an explicit deletion and its protector is kept and reported dangling; after a
restart, a managed protector whose workload is absent is judged the same way (no tombstone). A
dangling protector stops being dangling when its workload reappears or the protector goes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from podseidon_site.config import PodseidonConfig
from protectors.kube.client import PODPROTECTORS, KubeError
from protectors.kube.events import EventRecorder
from protectors.kube.informer import FunctionHandler, Informer
from workers.controller import ControllerContext, LostLeadership
from workers.generator.cell_removal import CellRemover, has_remove_cell_once
from workers.generator.decide import Decision, Options, decide
from workers.generator.executor import Executor, Outcome
from workers.generator.expectations import Expectations
from workers.generator.observer import GeneratorObserver
from workers.generator.plugins import EnabledKind, enabled_kinds
from workers.generator.protector import SourceKey, source_keys
from workers.workqueue import ShutDown, WorkQueue

__all__ = ["GeneratorController"]

_STOP_TIMEOUT = 3.0
EVENT_COMPONENT = "podseidon-generator"
# While a cache has not shown our own last write yet, look again this often (events usually
# re-enqueue the key sooner).
_EXPECTATION_POLL = 0.2


class GeneratorController:
    """``Controller`` named ``generator``; one instance may be started and stopped repeatedly."""

    name = "generator"

    def __init__(
        self, config: PodseidonConfig, *, observer: GeneratorObserver | None = None
    ) -> None:
        self.config = config
        self.kinds = enabled_kinds(config.generator)
        self.observer = observer or GeneratorObserver()
        self._lock = threading.Lock()
        self._session: _Session | None = None

    def start(self, context: ControllerContext) -> None:
        with self._lock:
            if self._session is not None:
                raise RuntimeError("generator already started")
            session = _Session(self, context)
            self._session = session
        try:
            session.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.stop()

    # -- introspection (tests, console) ------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._session is not None

    def wait_synced(self, timeout: float | None = None) -> bool:
        session = self._session
        return session is not None and session.wait_synced(timeout)

    def flush_events(self, timeout: float) -> bool:
        """Wait until the Events recorded so far are written (tests)."""
        session = self._session
        return session is None or session.recorder.flush(timeout)

    def dangling(self) -> list[SourceKey]:
        """Workloads whose protector is currently dangling, sorted."""
        session = self._session
        return session.dangling_keys() if session is not None else []


def _relevant_workload(obj: Mapping[str, Any]) -> tuple[Any, ...]:
    metadata = obj.get("metadata") or {}
    return (
        metadata.get("uid"),
        metadata.get("labels"),
        metadata.get("deletionTimestamp"),
        metadata.get("finalizers"),
        obj.get("spec"),
    )


def _relevant_protector(obj: Mapping[str, Any]) -> tuple[Any, ...]:
    # Status changes (the aggregators write them all the time) and annotations (remove-cell-once
    # has a queue of its own) do not concern the workload reconcile.
    metadata = obj.get("metadata") or {}
    return (
        metadata.get("uid"),
        metadata.get("labels"),
        metadata.get("deletionTimestamp"),
        metadata.get("finalizers"),
        metadata.get("ownerReferences"),
        obj.get("spec"),
    )


class _ReportingInformerObserver:
    """The generator observer for informers, also reporting failed list/watch calls to the
    runtime, so the console shows e.g. a missing CRD instead of a silently idle generator."""

    def __init__(self, observer: GeneratorObserver, context: ControllerContext) -> None:
        self._observer = observer
        self._context = context

    def listed(self, informer: str, count: int, resource_version: str) -> None:
        self._observer.listed(informer, count, resource_version)

    def watch_failed(self, informer: str, error: Exception, retry_in: float) -> None:
        self._observer.watch_failed(informer, error, retry_in)
        self._context.report(f"informer {informer}: {error}")

    def relist_needed(self, informer: str, reason: str) -> None:
        self._observer.relist_needed(informer, reason)

    def event(self, informer: str, event_type: str) -> None:
        self._observer.event(informer, event_type)


@dataclass
class _Session:
    """Everything one ``start`` … ``stop`` owns."""

    controller: GeneratorController
    context: ControllerContext
    queue: WorkQueue = field(default_factory=WorkQueue)
    # (namespace, name) of PodProtectors carrying remove-cell-once.
    removal_queue: WorkQueue = field(default_factory=WorkQueue)
    stopping: threading.Event = field(default_factory=threading.Event)
    workload_informers: dict[str, Informer] = field(default_factory=dict)
    protector_informer: Informer | None = None
    threads: list[threading.Thread] = field(default_factory=list)
    # Last cached state of workloads whose DELETE event arrived, until their reconcile settles.
    tombstones: dict[SourceKey, Mapping[str, Any]] = field(default_factory=dict)
    dangling: dict[SourceKey, str] = field(default_factory=dict)
    expectations: Expectations = field(default_factory=Expectations)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        config = self.controller.config
        core = self.context.core
        observer = self.controller.observer
        informer_observer = _ReportingInformerObserver(observer, self.context)
        namespace = config.core.namespace or None
        self.kinds: dict[str, EnabledKind] = {k.plugin.key: k for k in self.controller.kinds}
        self.recorder = EventRecorder(core, EVENT_COMPONENT)
        self.executor = Executor(core, observer)
        self.remover = CellRemover(core, observer, self.recorder, config.admission_history)
        for key, kind in self.kinds.items():
            informer = Informer(
                core,
                kind.plugin.resource,
                name=f"generator-{key}",
                namespace=namespace,
                transform=kind.plugin.trim,
                observer=informer_observer,
            )
            informer.add_handler(self._workload_handler(key))
            self.workload_informers[key] = informer
        self.protector_informer = Informer(
            core,
            PODPROTECTORS,
            name="generator-podprotectors",
            namespace=namespace,
            observer=informer_observer,
        )
        self.protector_informer.add_handler(
            FunctionHandler(
                add=self._protector_event,
                update=self._protector_update,
                delete=self._protector_delete,
            )
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        for informer in self._informers():
            informer.start()
        workers = self.controller.config.generator.workers
        for index in range(workers):
            thread = threading.Thread(
                target=self._work, name=f"generator-worker-{index}", daemon=True
            )
            thread.start()
            self.threads.append(thread)
        for index in range(workers):
            thread = threading.Thread(
                target=self._remove_cells, name=f"generator-cell-removal-{index}", daemon=True
            )
            thread.start()
            self.threads.append(thread)
        self.controller.observer.started(list(self.kinds), workers)

    def stop(self) -> None:
        deadline = time.monotonic() + _STOP_TIMEOUT
        self.stopping.set()
        self.queue.shutdown()
        self.removal_queue.shutdown()
        informers = self._informers()
        for informer in informers:
            informer.stop(timeout=0)  # signal all first, then wait for all
        for informer in informers:
            informer.stop(timeout=max(deadline - time.monotonic(), 0))
        for thread in self.threads:
            thread.join(max(deadline - time.monotonic(), 0))
        self.recorder.stop(timeout=max(min(deadline - time.monotonic(), 1.0), 0))
        self.controller.observer.dangling_reset()
        self.controller.observer.remove_cell_once_queue(0)
        self.controller.observer.stopped()

    def _informers(self) -> list[Informer]:
        informers = list(self.workload_informers.values())
        if self.protector_informer is not None:
            informers.append(self.protector_informer)
        return informers

    def synced(self) -> bool:
        return all(i.has_synced for i in self._informers())

    def wait_synced(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for informer in self._informers():
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0)
            if not informer.wait_synced(remaining):
                return False
        return True

    def dangling_keys(self) -> list[SourceKey]:
        with self.lock:
            return sorted(self.dangling)

    # -- event handlers (informer threads: quick, no API calls) -----------------------------

    def _workload_handler(self, kind_key: str) -> FunctionHandler:
        def key_of(obj: Mapping[str, Any]) -> SourceKey:
            metadata = obj.get("metadata") or {}
            return (kind_key, metadata.get("namespace", ""), metadata.get("name", ""))

        def on_add(obj: dict) -> None:
            key = key_of(obj)
            self.expectations.observe(("workload", *key), obj)
            self.queue.add(key)

        def on_update(old: dict, new: dict) -> None:
            key = key_of(new)
            self.expectations.observe(("workload", *key), new)
            if _relevant_workload(old) != _relevant_workload(new):
                self.queue.add(key)

        def on_delete(obj: dict) -> None:
            key = key_of(obj)
            self.expectations.observe_deleted(("workload", *key))
            with self.lock:
                self.tombstones[key] = obj
            self.queue.add(key)

        return FunctionHandler(add=on_add, update=on_update, delete=on_delete)

    def _protector_key(self, obj: Mapping[str, Any]) -> tuple[str, str, str]:
        metadata = obj.get("metadata") or {}
        return ("protector", metadata.get("namespace", ""), metadata.get("name", ""))

    def _protector_event(self, obj: dict, *, deleted: bool = False) -> None:
        if not deleted and has_remove_cell_once(obj):
            self._queue_removal(obj)
        if deleted:
            self.expectations.observe_deleted(self._protector_key(obj))
        else:
            self.expectations.observe(self._protector_key(obj), obj)
        for key in source_keys(obj, (k.plugin for k in self.kinds.values())):
            self.queue.add(key)

    def _queue_removal(self, obj: Mapping[str, Any]) -> None:
        metadata = obj.get("metadata") or {}
        self.removal_queue.add((metadata.get("namespace", ""), metadata.get("name", "")))
        self.controller.observer.remove_cell_once_queue(len(self.removal_queue))

    def _protector_update(self, old: dict, new: dict) -> None:
        if _relevant_protector(old) != _relevant_protector(new):
            self._protector_event(new)
            return
        if has_remove_cell_once(new):
            self._queue_removal(new)
        self.expectations.observe(self._protector_key(new), new)

    def _protector_delete(self, obj: dict) -> None:
        self._protector_event(obj, deleted=True)

    # -- workers -----------------------------------------------------------------------------

    def _work(self) -> None:
        while not self.stopping.is_set():
            if not self.synced():
                self.stopping.wait(0.05)
                continue
            try:
                key = self.queue.get(timeout=0.5)
            except ShutDown:
                return
            if key is None:
                continue
            try:
                self._process(key)  # type: ignore[arg-type]
            finally:
                self.queue.done(key)

    def _remove_cells(self) -> None:
        """A removal worker: no cache needed (each protector is read afresh)."""
        observer = self.controller.observer
        while not self.stopping.is_set():
            try:
                key = self.removal_queue.get(timeout=0.5)
            except ShutDown:
                return
            if key is None:
                continue
            namespace, name = key  # type: ignore[misc]
            try:
                removal = self.remover.process(namespace, name)
            except KubeError as failure:
                delay = self.removal_queue.retry(key)
                result = "conflict" if failure.is_conflict else "error"
                observer.remove_cell_once(
                    namespace, name, result, f"{failure}; retry in {delay:.2f}s"
                )
                if not failure.is_conflict:
                    self.context.report(f"remove-cell-once on {namespace}/{name}: {failure}")
            except LostLeadership as failure:
                self.removal_queue.retry(key)
                observer.lost_leadership(("protector", namespace, name), str(failure))
            except Exception as failure:  # a bug, a malformed protector
                self.removal_queue.retry(key)
                observer.remove_cell_once(
                    namespace, name, "error", f"{type(failure).__name__}: {failure}"
                )
                self.context.report(
                    f"remove-cell-once on {namespace}/{name}: {type(failure).__name__}: {failure}"
                )
            else:
                self.removal_queue.forget(key)
                if removal.result != "absent":
                    observer.remove_cell_once(namespace, name, removal.result)
            finally:
                self.removal_queue.done(key)
                observer.remove_cell_once_queue(len(self.removal_queue))

    def _process(self, key: SourceKey) -> None:
        observer = self.controller.observer
        started = time.monotonic()
        error: str | None = None
        try:
            decision = self._reconcile(key)
            if decision is None:
                return  # deferred until the caches show our own last write
        except KubeError as failure:
            error = str(failure)
            delay = self.queue.retry(key)
            if failure.is_conflict:
                observer.conflict(key, error, delay)
            else:
                observer.failed(key, error, delay)
                self.context.report(error)
        except LostLeadership as failure:
            # The write did not go out; the runtime is stopping us. Keep the key for whoever
            # runs next in this process (a new session starts from a fresh queue anyway).
            error = f"lost leadership: {failure}"
            self.queue.retry(key)
            observer.lost_leadership(key, error)
        except Exception as failure:  # a bug, a malformed object
            error = f"{type(failure).__name__}: {failure}"
            self.queue.retry(key)
            observer.crashed(key)
            self.context.report(error)
        else:
            self.queue.forget(key)
            if decision.problem:
                error = decision.problem
                observer.problem(key, decision.problem)
            elif decision.note:
                observer.note(key, decision.note)
            self.context.report(decision.problem)
        observer.reconciled(key, time.monotonic() - started, error)

    def _reconcile(self, key: SourceKey) -> Decision | None:
        """One reconcile; None when deferred because a cache lags behind our own write."""
        kind_key, namespace, name = key
        kind = self.kinds.get(kind_key)
        if kind is None:
            return Decision()
        plugin = kind.plugin
        protector_name = plugin.protector_name(name)
        workload_key = ("workload", *key)
        protector_key = ("protector", namespace, protector_name)
        assert self.protector_informer is not None
        workload = self.workload_informers[kind_key].get_by_name(namespace, name)
        protector = self.protector_informer.get_by_name(namespace, protector_name)
        wait = max(
            self.expectations.wait_for(workload_key, workload),
            self.expectations.wait_for(protector_key, protector),
        )
        if wait > 0:
            self.queue.add(key, min(wait, _EXPECTATION_POLL))
            return None
        with self.lock:
            if workload is not None:
                self.tombstones.pop(key, None)
            last_seen = self.tombstones.get(key)
        options = Options(
            selector=kind.selector,
            protect_non_zero=self.controller.config.generator.protect_non_zero,
        )
        decision = decide(plugin, name, workload, protector, options, last_seen=last_seen)
        self._track_dangling(key, plugin.kind, protector_name, decision.dangling)
        outcome = Outcome(workload, protector)
        try:
            self.executor.apply(plugin, namespace, name, decision, outcome)
        finally:
            # Also after a failure part-way: the writes that did go out are still ours.
            if outcome.workload_written and outcome.workload is not None:
                self.expectations.expect_written(workload_key, outcome.workload)
            if outcome.protector_written:
                if outcome.protector is not None:
                    self.expectations.expect_written(protector_key, outcome.protector)
                else:
                    uid = ((protector or {}).get("metadata") or {}).get("uid")
                    self.expectations.expect_deleted(protector_key, uid)
        if workload is None and not decision.dangling:
            with self.lock:
                self.tombstones.pop(key, None)
        return decision

    def _track_dangling(
        self, key: SourceKey, kind: str, protector_name: str, dangling: bool
    ) -> None:
        observer = self.controller.observer
        _, namespace, name = key
        with self.lock:
            was = key in self.dangling
            if dangling and not was:
                self.dangling[key] = protector_name
                observer.dangling_started(kind, namespace, name, protector_name, len(self.dangling))
            elif not dangling and was:
                del self.dangling[key]
                observer.dangling_ended(kind, namespace, name, protector_name, len(self.dangling))
