"""The generator's one observer: every log line and metric of the component goes through here.

Metric names follow design.md §6; labels stay bounded (``error`` true/false, the workload kind
from the config, the write action from a fixed set; never namespaces or names):
- ``generator_reconcile`` (histogram, seconds, ``error``): one reconcile of one workload; a
  conflict counts as an error (the reconcile did not complete and is retried);
- ``generator_dangling_protectors`` (gauge): protectors kept although their workload
  disappeared without an explicit deletion;
- ``generator_protector_writes_total`` (counter, ``kind``, ``action`` = create, update,
  delete): writes to the PodProtectors of workloads (cell removals are counted below);
- ``generator_workload_finalizer_writes_total`` (counter, ``kind``, ``action`` = add, remove);
- ``generator_remove_cell_once_total`` (counter, ``result`` = removed, not_in_status, gone,
  conflict, error): ``remove-cell-once`` annotations processed on any PodProtector;
- ``generator_removed_cells_total`` (counter): cell entries dropped from PodProtector status;
- ``generator_remove_cell_once_queue`` (gauge): PodProtectors whose annotation waits.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram

logger = logging.getLogger("podseidon.generator")

RECONCILE = Histogram(
    "generator_reconcile",
    "Time to reconcile one workload against its PodProtector, in seconds.",
    ["error"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DANGLING = Gauge(
    "generator_dangling_protectors",
    "PodProtectors kept although their workload disappeared without being deleted.",
    multiprocess_mode="livemax",
)
PROTECTOR_WRITES = Counter(
    "generator_protector_writes",
    "Writes the generator made to PodProtectors, by workload kind and action.",
    ["kind", "action"],
)
WORKLOAD_FINALIZER_WRITES = Counter(
    "generator_workload_finalizer_writes",
    "Generator finalizers added to or removed from workloads, by workload kind.",
    ["kind", "action"],
)


REMOVE_CELL_ONCE = Counter(
    "generator_remove_cell_once",
    "remove-cell-once annotations processed on PodProtectors (generated, hand-made or "
    "dangling), by result.",
    ["result"],
)
REMOVED_CELLS = Counter(
    "generator_removed_cells",
    "Cell entries the generator dropped from PodProtector status (remove-cell-once).",
)
REMOVE_CELL_ONCE_QUEUE = Gauge(
    "generator_remove_cell_once_queue",
    "PodProtectors whose remove-cell-once annotation waits to be processed.",
    multiprocess_mode="livemax",
)


class GeneratorObserver:
    # -- reconcile -------------------------------------------------------------------------

    def reconciled(self, key: tuple[str, str, str], seconds: float, error: str | None) -> None:
        RECONCILE.labels("true" if error else "false").observe(seconds)

    def conflict(self, key: tuple[str, str, str], message: str, retry_in: float) -> None:
        logger.debug(
            "conflict reconciling %s %s/%s (%s); retrying in %.2fs", *key, message, retry_in
        )

    def failed(self, key: tuple[str, str, str], error: str, retry_in: float) -> None:
        logger.warning("reconciling %s %s/%s failed: %s; retrying in %.2fs", *key, error, retry_in)

    def lost_leadership(self, key: tuple[str, str, str], message: str) -> None:
        logger.info("not writing for %s %s/%s: %s", *key, message)

    def crashed(self, key: tuple[str, str, str]) -> None:
        logger.exception("reconciling %s %s/%s raised unexpectedly", *key)

    def problem(self, key: tuple[str, str, str], message: str) -> None:
        logger.error("cannot protect %s %s/%s: %s", *key, message)

    def note(self, key: tuple[str, str, str], message: str) -> None:
        logger.info("%s %s/%s: %s", *key, message)

    # -- writes ----------------------------------------------------------------------------

    def protector_written(
        self, kind: str, action: str, namespace: str, name: str, what: str | None = None
    ) -> None:
        PROTECTOR_WRITES.labels(kind, action).inc()
        logger.info("PodProtector %s/%s: %s", namespace, name, what or action)

    def cells_removed(self, namespace: str, name: str, cell_ids: tuple[str, ...]) -> None:
        REMOVED_CELLS.inc(len(cell_ids))
        logger.info(
            "PodProtector %s/%s: removed cell(s) %s from status (remove-cell-once)",
            namespace,
            name,
            ", ".join(cell_ids),
        )

    def remove_cell_once(
        self, namespace: str, name: str, result: str, error: str | None = None
    ) -> None:
        """One ``remove-cell-once`` handled (or failed: ``conflict``, ``error``)."""
        REMOVE_CELL_ONCE.labels(result).inc()
        if result == "error":
            logger.warning(
                "remove-cell-once on PodProtector %s/%s failed: %s", namespace, name, error
            )
        elif result == "conflict":
            logger.debug("remove-cell-once on PodProtector %s/%s: %s", namespace, name, error)
        else:
            logger.info("PodProtector %s/%s: remove-cell-once done (%s)", namespace, name, result)

    def remove_cell_once_queue(self, size: int) -> None:
        REMOVE_CELL_ONCE_QUEUE.set(size)

    def workload_finalizer(self, kind: str, action: str, namespace: str, name: str) -> None:
        WORKLOAD_FINALIZER_WRITES.labels(kind, action).inc()
        logger.info("%s %s/%s: generator finalizer %s", kind, namespace, name, action)

    # -- dangling protectors ---------------------------------------------------------------

    def dangling_started(
        self, kind: str, namespace: str, name: str, protector: str, total: int
    ) -> None:
        DANGLING.set(total)
        logger.warning(
            "PodProtector %s/%s is dangling: its %s %s/%s disappeared without being deleted "
            "(no deletionTimestamp seen). It is kept and still protects the pods; remove it by "
            "hand (drop its finalizer, delete it) once they are safe.",
            namespace,
            protector,
            kind,
            namespace,
            name,
        )

    def dangling_ended(
        self, kind: str, namespace: str, name: str, protector: str, total: int
    ) -> None:
        DANGLING.set(total)
        logger.info(
            "PodProtector %s/%s is no longer dangling (its %s %s/%s is back, or the "
            "protector is gone)",
            namespace,
            protector,
            kind,
            namespace,
            name,
        )

    def dangling_reset(self) -> None:
        """This process no longer runs the generator: it no longer knows of any."""
        DANGLING.set(0)

    # -- lifecycle and caches (also the InformerObserver of the generator's informers) -------

    def started(self, kinds: list[str], workers: int) -> None:
        logger.info("generator started for %s with %d workers", ", ".join(kinds), workers)

    def stopped(self) -> None:
        logger.info("generator stopped")

    def listed(self, informer: str, count: int, resource_version: str) -> None:
        logger.info(
            "generator informer %s listed %d objects at resourceVersion %s",
            informer,
            count,
            resource_version,
        )

    def watch_failed(self, informer: str, error: Exception, retry_in: float) -> None:
        logger.warning(
            "generator informer %s watch failed (%s); retrying in %.1fs", informer, error, retry_in
        )

    def relist_needed(self, informer: str, reason: str) -> None:
        logger.info("generator informer %s relisting: %s", informer, reason)

    def event(self, informer: str, event_type: str) -> None:
        pass
