"""Long actions as tracked operations: a background thread of the web process does the work,
writes its progress to an ``Operation`` row, and audits the final outcome exactly once.

Why a thread in the web process and not a Celery task: the web tier must keep working when Redis
or the workers are down (that may be the very incident), and the work is I/O-bound patching that
a thread pool does well. The price is that a web process that dies mid-operation takes the thread
with it; such an operation stops beating (``heartbeat_at``) and ``expire_stale`` ends it as failed
(with its audit record) the next time anyone looks at the operations.

Idempotency: an operation is keyed by what it acts on (``selection_key``); while one runs, asking
for the same thing again returns the running operation (a database constraint settles races
between web processes). The work itself must tolerate being run again afterwards.

Progress is written at most every ``FLUSH_SECONDS`` (thousands of objects must not mean
thousands of database writes), and at least that often while the work is alive.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from audit.actions import ActionFailed, Done, Failure, run_action
from audit.models import Operation, OperationState, Outcome

logger = logging.getLogger("podseidon.audit")

FLUSH_SECONDS = 0.5
# Longer than any single step of the work can take (one cluster request is bounded by the action
# timeout), so only a lost thread goes silent this long.
STALE_AFTER_SECONDS = 120.0
# How often a running operation's thread says it is alive, progress or not.
HEARTBEAT_SECONDS = 20.0

_events_lock = threading.Lock()
# Operation id → set when the thread running it in this process has finished.
_finished_events: dict[int, threading.Event] = {}


def selection_key(action: str, target: str, parameters: Mapping[str, Any]) -> str:
    """A short stable name for "this action on this selection" (the idempotency key)."""
    text = json.dumps([action, target, parameters], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class Progress:
    """What the work reports while it runs; thread-safe, flushed to the database in batches."""

    def __init__(self, operation_id: int) -> None:
        self.operation_id = operation_id
        self._lock = threading.Lock()
        self._total: int | None = None
        self._done = 0
        self._failed = 0
        self._counts: dict[str, int] = {}
        self._phase = ""
        self._flushed_at = 0.0

    def set_total(self, total: int) -> None:
        with self._lock:
            self._total = total
        self.flush(force=True)

    def set_phase(self, phase: str) -> None:
        """What the work does now (shown while it runs), written at once."""
        with self._lock:
            self._phase = phase
        self.flush(force=True)

    def set_counts(self, **counts: int) -> None:
        """Overwrite some kinds' counts (results found after the objects were handled, such as
        "removed" and "pending" while a removal is confirmed), without changing ``done``."""
        with self._lock:
            self._counts.update(counts)
        self.flush()

    def advance(self, kind: str, *, failed: bool = False) -> None:
        """One object handled, with its kind of result (``failed`` also counts it as failed)."""
        with self._lock:
            self._done += 1
            self._failed += int(failed)
            self._counts[kind] = self._counts.get(kind, 0) + 1
        self.flush()

    def flush(self, *, force: bool = False) -> None:
        """Write the counts (and the heartbeat) unless that was done less than FLUSH_SECONDS ago."""
        now = time.monotonic()
        with self._lock:
            if not force and now - self._flushed_at < FLUSH_SECONDS:
                return
            self._flushed_at = now
            fields = {
                "total": self._total,
                "done": self._done,
                "failed": self._failed,
                "counts": dict(self._counts),
                "phase": self._phase,
            }
        Operation.objects.filter(pk=self.operation_id, state=OperationState.RUNNING).update(
            heartbeat_at=timezone.now(), **fields
        )


Work = Callable[[Progress], Done]


def start(
    *,
    user: Any,
    action: str,
    target: str,
    reason: str,
    parameters: Mapping[str, Any],
    work: Work,
    _retried: bool = False,
) -> tuple[Operation, bool]:
    """Start ``work`` in a background thread; (operation, True), or (the operation already
    running for the same selection, False)."""
    key = selection_key(action, target, parameters)
    expire_stale()
    now = timezone.now()
    try:
        with transaction.atomic():
            operation = Operation.objects.create(
                user=user if getattr(user, "pk", None) else None,
                username=user.get_username(),
                action=action,
                target=target,
                selection_key=key,
                reason=reason,
                parameters=dict(parameters),
                heartbeat_at=now,
            )
    except IntegrityError:
        running = Operation.objects.filter(selection_key=key, state=OperationState.RUNNING).first()
        if running is None and not _retried:  # it finished between our insert and this read
            return start(
                user=user,
                action=action,
                target=target,
                reason=reason,
                parameters=parameters,
                work=work,
                _retried=True,
            )
        if running is None:
            raise
        return running, False
    finished = threading.Event()
    with _events_lock:
        _finished_events[operation.pk] = finished
    thread = threading.Thread(
        target=_run,
        args=(operation.pk, user, work, finished),
        name=f"operation-{operation.pk}",
        daemon=True,
    )
    thread.start()
    return operation, True


def wait(operation_id: int, timeout: float) -> bool:
    """Wait up to ``timeout`` for an operation this process runs; True once it is not running
    here (finished, or running in another process: read the row to know which)."""
    with _events_lock:
        finished = _finished_events.get(operation_id)
    return True if finished is None else finished.wait(timeout)


def _run(operation_id: int, user: Any, work: Work, finished: threading.Event) -> None:
    # Alive is not the same as progressing: a slow list of thousands of protectors must not
    # look like a dead process to expire_stale() (which would fail and audit it a second time).
    beating = threading.Thread(
        target=_beat, args=(operation_id, finished), name=f"operation-{operation_id}-beat"
    )
    beating.daemon = True
    beating.start()
    try:
        _execute(operation_id, user, work)
    finally:
        finished.set()
        with _events_lock:
            _finished_events.pop(operation_id, None)
        # This thread's database connection is its own; leaving it open would leak it.
        connection.close()


def _beat(operation_id: int, finished: threading.Event) -> None:
    try:
        while not finished.wait(HEARTBEAT_SECONDS):
            Operation.objects.filter(pk=operation_id, state=OperationState.RUNNING).update(
                heartbeat_at=timezone.now()
            )
    finally:
        connection.close()


def _execute(operation_id: int, user: Any, work: Work) -> None:
    operation = Operation.objects.get(pk=operation_id)
    progress = Progress(operation_id)

    def audited_work() -> Done:
        try:
            return work(progress)
        except (Failure, ActionFailed):
            raise
        except Exception as error:
            # Nobody waits on this thread to re-raise to: log the trace, fail the operation.
            if not _is_kube_error(error):
                logger.exception("operation #%s raised unexpectedly", operation_id)
                raise Failure(f"internal error: {type(error).__name__}: {error}") from error
            raise

    try:
        result = run_action(
            user=user,
            action=operation.action,
            target=operation.target,
            reason=operation.reason,
            parameters=operation.parameters,
            dry_run=False,
            work=audited_work,
        )
    except ActionFailed as failure:
        result = failure.action
    progress.flush(force=True)
    # RUNNING only: if expire_stale() ended it meanwhile, its verdict and audit record stand.
    ended = Operation.objects.filter(pk=operation_id, state=OperationState.RUNNING).update(
        state=result.outcome,
        message=result.message,
        result=result.result,
        audit_record=result.record,
        phase="",
        finished_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )
    if not ended:
        logger.warning(
            "operation #%s finished (%s) after it had been ended as stale",
            operation_id,
            result.outcome,
        )


def _is_kube_error(error: Exception) -> bool:
    from protectors.kube.client import KubeError

    return isinstance(error, KubeError)


def expire_stale() -> int:
    """End operations whose thread stopped beating (its process died) as failed, audited once.
    Returns how many were ended."""
    cutoff = timezone.now() - timedelta(seconds=STALE_AFTER_SECONDS)
    ended = 0
    stale = Operation.objects.filter(state=OperationState.RUNNING, heartbeat_at__lt=cutoff)
    for operation in stale:
        message = (
            f"interrupted: no progress reported since {operation.heartbeat_at:%Y-%m-%d %H:%M:%S} "
            f"UTC (the web process running it stopped) after {operation.done} of "
            f"{'?' if operation.total is None else operation.total}; run it again to finish "
            "(it only changes what is left to change)"
        )
        # Only the caller whose update wins writes the audit record.
        claimed = Operation.objects.filter(
            pk=operation.pk, state=OperationState.RUNNING, heartbeat_at=operation.heartbeat_at
        ).update(state=OperationState.FAILED, message=message, phase="", finished_at=timezone.now())
        if not claimed:
            continue
        try:
            run_action(
                user=operation.user,
                action=operation.action,
                target=operation.target,
                reason=operation.reason,
                parameters=operation.parameters,
                dry_run=False,
                work=lambda op=operation, text=message: Done(
                    Outcome.FAILED,
                    text,
                    {"operation": op.pk, "done": op.done, "total": op.total, **op.counts},
                ),
            )
        except ActionFailed as failure:
            Operation.objects.filter(pk=operation.pk).update(audit_record=failure.action.record)
        ended += 1
    return ended
