"""What the console and the API do with PodProtectors and cells: read from the cache, act with an
audit record.

Reads come from ``console.cache`` (Informers, never an API call per row); a detail adds one
GET of the source workload and one list of the protector's events; the overview adds the
dangling protectors (from the workload cache) and the webhook's recent rejections
(``webhook.rejections``). The one action here,
``remove_cell_from_protectors``, lists the matching protectors afresh from the core cluster (an
incident is no time to act on a stale cache) and merge-patches the ``remove-cell-once``
annotation onto each that still has the cell in its status; the generator then drops the cell
from status and removes the annotation. The action reports what happened, not what was asked:
it waits until no targeted protector's status holds the cell any more (re-reading the
selection), and names those that still do when it gives up. Over thousands of protectors that
takes a while, so the console and the API run it as a tracked operation
(``start_cell_removal``, ``audit.operations``) whose progress they poll; dry runs only list and
count, and answer within the request.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any

from audit import operations
from audit.actions import (
    ActionResult,
    Done,
    InvalidAction,
    clean_reason,
    kube_cause,
    require_operator,
    run_action,
)
from audit.models import Action, Operation, Outcome
from audit.operations import Progress
from console.cache import (
    CacheNotSynced,
    ProtectorRow,
    cell_totals,
    protector_cache,
    workload_cache,
)
from podseidon_site.config import CELL_ID_PATTERN
from protectors import constants
from protectors.clusters import CORE, client_for, config, probe_many, recorder_for
from protectors.kube.client import PODPROTECTORS, KubeClient, KubeError, Resource
from protectors.kube.events import EVENTS
from protectors.selectors import SelectorError, parse_selector_string
from workers.generator.protector import cell_ids_in_status, parse_remove_cell_once

READ_TIMEOUT = 5.0
MAX_EVENTS = 20
PATCH_THREADS = 8
CONFLICT_RETRIES = 3
# How many per-protector entries an answer (and the audit record) lists.
MAX_LISTED = 200
# How often a running removal reports progress (and beats) while patches are outstanding.
PROGRESS_SECONDS = 1.0
# How long a removal waiting for the generator pauses before it lists the selection again
# after a failed list or watch (doubling up to 5 s).
CONFIRM_RETRY_SECONDS = 0.5
# How long one watch of a removal's selection stays open before it is taken up again from its
# last resourceVersion (the operation reports progress, and so beats, at least this often).
CONFIRM_WATCH_SECONDS = 10.0
# How long a removal that paused the aggregator waits for it to stop before annotating (a
# worker applies a switch within a retry period, 2 s by default).
AGGREGATOR_STOP_SECONDS = 10.0
# While it waits it reads the leader state when the leader announces a start or stop, and at
# least this often: an announcement can be lost (pub/sub keeps nothing), and a leader that lost
# its lease stops without writing its state (the lease then expires).
AGGREGATOR_RECHECK_SECONDS = 1.0
# The Event the console leaves on each protector it annotates.
REASON_REQUESTED = "RemoveCellRequested"


# -- reads ------------------------------------------------------------------------------------


def source_workload(client: KubeClient, row: ProtectorRow, obj: Mapping[str, Any]) -> dict:
    """The workload a protector was generated from (one GET), or why it cannot be shown."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    resource = labels.get(constants.LABEL_SOURCE_RESOURCE)
    name = labels.get(constants.LABEL_SOURCE_NAME)
    if not resource or not name:
        return {"found": False, "error": "not generated from a workload (no source labels)"}
    group = labels.get(constants.LABEL_SOURCE_GROUP, "")
    reference = {"kind": row.source_kind, "group": group, "resource": resource, "name": name}
    try:
        workload = client.get(Resource(group, "v1", resource), row.namespace, name)
    except KubeError as error:
        missing = error.is_not_found
        return {
            **reference,
            "found": False,
            "error": "the workload does not exist (the protector is dangling)"
            if missing
            else kube_cause(error),
        }
    metadata = workload.get("metadata") or {}
    return {
        **reference,
        "found": True,
        "uid": metadata.get("uid"),
        "created": metadata.get("creationTimestamp"),
        "deleting": bool(metadata.get("deletionTimestamp")),
        "generation": metadata.get("generation"),
        "replicas": (workload.get("spec") or {}).get("replicas"),
        "status": workload.get("status") or {},
    }


def recent_events(client: KubeClient, namespace: str, name: str) -> dict:
    """The protector's newest events (one list with a field selector); failures are shown."""
    try:
        listing = client.list(EVENTS, namespace, field_selector=f"involvedObject.name={name}")
    except KubeError as error:
        return {"items": [], "error": kube_cause(error)}

    def when(event: Mapping[str, Any]) -> str:
        return (
            event.get("lastTimestamp")
            or event.get("eventTime")
            or (event.get("metadata") or {}).get("creationTimestamp")
            or ""
        )

    events = sorted(listing.get("items") or [], key=when, reverse=True)[:MAX_EVENTS]
    return {
        "items": [
            {
                "type": e.get("type"),
                "reason": e.get("reason"),
                "message": e.get("message"),
                "count": e.get("count"),
                "last_seen": when(e) or None,
                "source": (e.get("source") or {}).get("component") or e.get("reportingComponent"),
                "object_kind": (e.get("involvedObject") or {}).get("kind"),
            }
            for e in events
        ],
        "error": None,
    }


def protector_detail(namespace: str, name: str) -> dict | None:
    """Spec, every cell's aggregation and buckets, source workload, events; None if unknown."""
    cache = protector_cache()
    obj = cache.get(namespace, name)
    row = cache.row(namespace, name)
    if obj is None or row is None:
        return None
    client = client_for(CORE, timeout=READ_TIMEOUT)
    metadata = obj.get("metadata") or {}
    return {
        "row": row,
        "metadata": {
            "namespace": metadata.get("namespace"),
            "name": metadata.get("name"),
            "uid": metadata.get("uid"),
            "resourceVersion": metadata.get("resourceVersion"),
            "creationTimestamp": metadata.get("creationTimestamp"),
            "deletionTimestamp": metadata.get("deletionTimestamp"),
            "labels": metadata.get("labels") or {},
            "annotations": metadata.get("annotations") or {},
            "finalizers": metadata.get("finalizers") or [],
            "ownerReferences": metadata.get("ownerReferences") or [],
        },
        "spec": obj.get("spec") or {},
        "status": obj.get("status") or {},
        "source": source_workload(client, row, obj),
        "events": recent_events(client, namespace, name),
    }


def list_cells() -> dict:
    """Every configured cell (and any other cell still in some status) with totals and health."""
    from workers.keys import aggregator_key
    from workers.services import controller_states

    cfg = config()
    configured = cfg.cell_ids
    try:
        rows = protector_cache().rows()
        totals: dict[str, dict[str, int]] | None = cell_totals(rows)
        pending: dict[str, int] = {}
        for row in rows:
            for cell_id in row.pending_removal:
                pending[cell_id] = pending.get(cell_id, 0) + 1
        cache_error = None
    except (CacheNotSynced, KubeError) as error:
        totals, pending, cache_error = None, {}, str(error)
    extra = sorted(set(totals or ()) - set(configured))
    reachability = probe_many(configured)
    states = controller_states([aggregator_key(c) for c in (*configured, *extra)])
    cells = []
    for cell_id in (*configured, *extra):
        is_configured = cell_id in configured
        cells.append(
            {
                "id": cell_id,
                "configured": is_configured,
                "reachability": reachability.get(cell_id),
                "totals": None if totals is None else totals.get(cell_id, _zero_totals()),
                "pending_removal": pending.get(cell_id, 0),
                "aggregator": states["controllers"].get(aggregator_key(cell_id)),
            }
        )
    return {
        "cells": cells,
        "cache_synced": totals is not None,
        "cache_error": cache_error,
        "redis_error": states["redis_error"],
    }


MAX_DANGLING_LISTED = 20


def overview(*, cache_wait: float = 1.0) -> dict:
    """Everything the overview shows: clusters, controllers, webhook per cell, counts (with the
    dangling protectors, from the watch caches) and recent rejections per cell (scraped from the
    webhook's metrics). Every part tolerates its source being down and says so."""
    from console import history
    from webhook import rejections
    from webhook import services as webhook_services
    from workers.keys import aggregator_key
    from workers.services import controller_states

    cfg = config()
    as_of = time.time()
    reach = probe_many([CORE, *cfg.cell_ids])
    states = controller_states()
    controllers = states["controllers"]
    webhook_by_cell = {s["cell"]: s for s in webhook_services.all_states()}
    counts: dict[str, Any] | None = None
    cache_error = None
    try:
        rows = protector_cache(wait=cache_wait).rows()
        dangling = workload_cache().dangling(rows, time.time())
        counts = {
            "protectors": len(rows),
            "at_risk": sum(1 for r in rows if r.at_risk),
            "terminating": sum(1 for r in rows if r.terminating),
            "pending_removal": sum(1 for r in rows if r.pending_removal),
            "dangling": dangling.count,
            "dangling_protectors": list(dangling.keys[:MAX_DANGLING_LISTED]),
            "dangling_unchecked": dangling.unchecked,
            "dangling_complete": dangling.synced,
        }
    except (CacheNotSynced, KubeError) as error:
        cache_error = str(error)
    return {
        "core": reach.get(CORE),
        "cells": [
            {
                "id": cell_id,
                "reachability": reach.get(cell_id),
                "aggregator": controllers.get(aggregator_key(cell_id)),
                "webhook": webhook_by_cell.get(cell_id) or {"cell": cell_id, "state": "unknown"},
            }
            for cell_id in cfg.cell_ids
        ],
        "generator": controllers.get("generator"),
        "monitor": controllers.get("monitor"),
        "redis_error": states["redis_error"],
        "counts": counts,
        "cache_error": cache_error,
        "webhook_dry_run": cfg.webhook.dry_run,
        "rejections": rejections.recent_rejections(cfg.console, cfg.cell_ids),
        "history": history.admissions(cfg.console, cfg.cell_ids, now=as_of),
        "as_of": as_of,
    }


def _zero_totals() -> dict[str, int]:
    return dict.fromkeys(
        ("protectors", "total", "available", "ready", "scheduled", "running", "buckets"), 0
    )


def known_cell(cell_id: str) -> bool:
    """Configured, or still present in some protector's status (a cell removed from the config
    can still be removed from the protectors)."""
    if config().cell(cell_id) is not None:
        return True
    try:
        return cell_id in protector_cache(wait=1.0).cell_ids_in_status()
    except (CacheNotSynced, KubeError):
        return False


# -- the action ---------------------------------------------------------------------------------


def _clean_selection(
    namespace: str | None, label_selector: str | None, names: Iterable[str] | None
) -> tuple[str | None, str | None, tuple[str, ...]]:
    restricted = config().core.namespace
    namespace = (namespace or "").strip() or None
    if restricted and namespace and namespace != restricted:
        raise InvalidAction(f"the console only watches namespace {restricted!r}", field="namespace")
    label_selector = (label_selector or "").strip() or None
    if label_selector:
        try:
            parse_selector_string(label_selector)
        except SelectorError as error:
            raise InvalidAction(
                f"invalid label selector: {error}", field="label_selector"
            ) from None
    cleaned = tuple(dict.fromkeys(n.strip() for n in names or () if n and n.strip()))
    return namespace or restricted or None, label_selector, cleaned


def _annotate_one(
    client: KubeClient, obj: dict, cell_id: str, dry_run: bool, why: str | None = None
) -> tuple[str, str]:
    """One protector: ("annotated" | "already_pending" | "not_in_status" | "failed", detail).
    ``why`` (who asked, in which operation) becomes an Event on the protector."""
    metadata = obj.get("metadata") or {}
    namespace, name = metadata.get("namespace"), metadata.get("name")
    for _attempt in range(CONFLICT_RETRIES):
        metadata = obj.get("metadata") or {}
        annotations = metadata.get("annotations") or {}
        pending = parse_remove_cell_once(annotations.get(constants.ANNOTATION_REMOVE_CELL_ONCE))
        if cell_id in pending:
            return "already_pending", ""
        if cell_id not in cell_ids_in_status(obj):
            return "not_in_status", ""
        if dry_run:
            return "annotated", ""
        patch = {
            "metadata": {
                # Optimistic concurrency: the generator may be dropping the annotation right now;
                # a stale merge would bring back cells it has already removed.
                "resourceVersion": metadata.get("resourceVersion"),
                "annotations": {
                    constants.ANNOTATION_REMOVE_CELL_ONCE: ",".join((*pending, cell_id))
                },
            }
        }
        try:
            written = client.patch(PODPROTECTORS, namespace, name, patch)
        except KubeError as error:
            if error.is_not_found:
                return "not_in_status", "deleted meanwhile"
            if not error.is_conflict:
                return "failed", kube_cause(error)
        else:
            if why:
                recorder_for(CORE).normal(written, REASON_REQUESTED, why)
            return "annotated", ""
        try:
            obj = client.get(PODPROTECTORS, namespace, name)
        except KubeError as error:
            if error.is_not_found:
                return "not_in_status", "deleted meanwhile"
            return "failed", kube_cause(error)
    return "failed", f"conflict: still changing after {CONFLICT_RETRIES} attempts"


def _validated_removal(
    user: Any,
    cell_id: str,
    reason: Any,
    namespace: str | None,
    label_selector: str | None,
    names: Iterable[str] | None,
    pause_aggregator: bool = False,
) -> tuple[str, dict[str, Any]]:
    """Check who asks and what for (InvalidAction: nothing attempted); (reason, parameters)."""
    require_operator(user)
    reason = clean_reason(reason)
    if not isinstance(cell_id, str) or not CELL_ID_PATTERN.match(cell_id):
        raise InvalidAction(f"{cell_id!r} is not a cell ID", field="cell", code="unknown_cell")
    if not known_cell(cell_id):
        raise InvalidAction(
            f"unknown cell {cell_id!r}: not configured and in no PodProtector's status",
            field="cell",
            code="unknown_cell",
        )
    namespace, label_selector, cleaned = _clean_selection(namespace, label_selector, names)
    parameters = {
        "cell": cell_id,
        "namespace": namespace,
        "label_selector": label_selector,
        "names": list(cleaned),
    }
    if pause_aggregator:
        # Only when asked: operations started before this option keep their selection key.
        parameters["pause_aggregator"] = True
    return reason, parameters


def _list_selection(client: KubeClient, parameters: Mapping[str, Any]) -> list[dict]:
    listing = client.list_all(
        PODPROTECTORS, parameters["namespace"], label_selector=parameters["label_selector"]
    )
    items = listing.get("items") or []
    if parameters["names"]:
        wanted = set(parameters["names"])
        items = [i for i in items if (i.get("metadata") or {}).get("name") in wanted]
    return items


def _key(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    return f"{metadata.get('namespace')}/{metadata.get('name')}"


def pending_reason(obj: Mapping[str, Any] | None, cell_id: str) -> str | None:
    """Why ``obj`` still counts ``cell_id`` (None: it does not, or it is gone)."""
    if obj is None or cell_id not in cell_ids_in_status(obj):
        return None
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if cell_id in parse_remove_cell_once(annotations.get(constants.ANNOTATION_REMOVE_CELL_ONCE)):
        return "annotated, not processed yet (is the generator running?)"
    return f"{cell_id} was written back after its removal (is the aggregator of {cell_id} paused?)"


def _confirm(
    client: KubeClient,
    parameters: Mapping[str, Any],
    targeted: list[str],
    progress: Progress | None,
    timeout: float,
) -> dict[str, str]:
    """Follow the selection until no targeted protector holds the cell, or ``timeout``;
    returns the ones still holding it, with why. A protector deleted meanwhile holds nothing.

    One list, then a watch from its resourceVersion: each protector is judged again as its
    changes arrive, so a removal is confirmed as soon as the generator's write is seen, and a
    selection of thousands is not listed again and again while the generator works through it.
    A watch that has expired (410) is followed by a new list; a failed list or watch is
    retried while time is left, and if none succeeds the unconfirmed ones say so."""
    cell_id = parameters["cell"]
    deadline = time.monotonic() + timeout
    pending = dict.fromkeys(sorted(targeted), "not re-read yet")
    pause = CONFIRM_RETRY_SECONDS

    def report() -> None:
        if progress is not None:
            progress.set_counts(removed=len(targeted) - len(pending), pending=len(pending))

    while True:
        try:
            listing = client.list_all(
                PODPROTECTORS, parameters["namespace"], label_selector=parameters["label_selector"]
            )
        except KubeError as error:
            pending = {key: f"could not re-read it: {kube_cause(error)}" for key in pending}
        else:
            current = {_key(o): o for o in listing.get("items") or []}
            pending = {
                key: why
                for key in sorted(pending)
                if (why := pending_reason(current.get(key), cell_id)) is not None
            }
            report()
            version = (listing.get("metadata") or {}).get("resourceVersion")
            if pending and version and time.monotonic() < deadline:
                try:
                    _follow(client, parameters, version, pending, deadline, report)
                except KubeError as error:
                    if error.is_gone:
                        continue  # too old to take up again: list afresh at once
                    # Broken: what the list and the events said stands; a new list after the
                    # pause takes up from there.
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(min(pause, max(deadline - time.monotonic(), 0)))
        pause = min(pause * 2, 5.0)


def _follow(
    client: KubeClient,
    parameters: Mapping[str, Any],
    resource_version: str,
    pending: dict[str, str],
    deadline: float,
    on_change: Callable[[], None],
) -> None:
    """Judge the selection's watch events into ``pending`` (removing what no longer holds the
    cell) until it is empty or ``deadline`` passes. The watch is taken up again from the last
    resourceVersion it delivered every CONFIRM_WATCH_SECONDS, and whenever the server ends it,
    so the operation keeps beating while nothing happens; a failed or expired (410) watch
    raises KubeError."""
    cell_id = parameters["cell"]
    while pending:
        now = time.monotonic()
        if now >= deadline:
            return
        window = min(deadline - now, CONFIRM_WATCH_SECONDS)
        stream = client.watch(
            PODPROTECTORS,
            parameters["namespace"],
            resource_version=resource_version,
            label_selector=parameters["label_selector"],
            timeout_seconds=max(1, math.ceil(window)),
        )
        # The server ends a watch only to the second, and a quiet one sends nothing until
        # then: closing it at the end of the window stops the reading at once.
        closer = threading.Timer(window, stream.close)
        closer.daemon = True
        closer.start()
        opened, received = time.monotonic(), 0
        try:
            for event in stream:
                received += 1
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    raise KubeError.from_watch_error(obj)
                resource_version = (obj.get("metadata") or {}).get(
                    "resourceVersion"
                ) or resource_version
                key = _key(obj)
                if kind == "BOOKMARK" or key not in pending:
                    continue
                # DELETED also says the protector left the selection (its labels changed).
                why = None if kind == "DELETED" else pending_reason(obj, cell_id)
                if why is None:
                    del pending[key]
                else:
                    pending[key] = why
                on_change()
                if not pending:
                    return
        finally:
            closer.cancel()
            stream.close()
        if not received and time.monotonic() - opened < min(window, 1.0) / 2:
            # Ended at once with nothing in it: not a watch to open again straight away.
            raise KubeError(0, "ShortWatch", "the server ended the watch at once")
        on_change()  # the heartbeat of a quiet window


def _pause_first(user: Any, cell_id: str, reason: str, dry_run: bool) -> dict[str, Any]:
    """Pause the cell's aggregator (its own audited action) before any annotation."""
    from workers import services as worker_services

    if config().cell(cell_id) is None:
        return {"paused": False, "message": f"{cell_id} is not configured: it has no aggregator"}
    outcome = worker_services.set_aggregator_paused(
        user, cell_id, True, reason=f"before removing {cell_id}: {reason}", dry_run=dry_run
    )
    return {"paused": True, "message": outcome.message, "audit_id": outcome.record.pk}


def _aggregator_stopped(cell_id: str, timeout: float) -> bool | None:
    """Wait until the paused aggregator's leader reports it stopped: True; False when it still
    runs after ``timeout``; None when no leader state can be read (Redis down).

    Subscribed to the workers' events channel before the first read, so a stop announced after
    that read wakes the wait at once."""
    from workers.keys import aggregator_key, settings_keys, settings_redis
    from workers.leadership import read_states

    key = aggregator_key(cell_id)
    keys = settings_keys()
    deadline = time.monotonic() + timeout
    try:
        client = settings_redis()
    except Exception:  # no usable REDIS_URL: no worker can lead it either
        return None
    announcements = _Announcements(client, keys.events, key)
    try:
        while True:
            try:
                states = read_states([key], client=client, keys=keys)
            except Exception:  # Redis unreachable: the workers cannot run it either
                return None
            if not any(s.running and s.is_active() for s in states):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            announcements.wait(min(remaining, AGGREGATOR_RECHECK_SECONDS))
    finally:
        announcements.close()
        client.close()


class _Announcements:
    """The workers' events channel, as far as one controller's start/stop announcements go."""

    def __init__(self, client: Any, channel: str, key: str) -> None:
        self._key = key
        self._pubsub: Any = client.pubsub(ignore_subscribe_messages=True)
        try:
            self._pubsub.subscribe(channel)
        except Exception:  # Redis unreachable: the reads say so, or run every recheck
            self.close()

    def wait(self, seconds: float) -> None:
        """Return when ``key`` announces a change, or after ``seconds``."""
        import redis

        from workers.keys import RELEASED_EVENT, STATE_EVENT, decode_event

        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            if self._pubsub is None:
                time.sleep(left)
                return
            try:
                message = self._pubsub.get_message(timeout=left)
            except (redis.RedisError, OSError):
                self.close()
                continue
            if message is None or message.get("type") != "message":
                continue
            event = decode_event(message["data"])
            if event in ((STATE_EVENT, self._key), (RELEASED_EVENT, self._key)):
                return

    def close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):  # a broken connection: nothing left to do
                pubsub.close()


def _removal_work(
    parameters: Mapping[str, Any],
    dry_run: bool,
    progress: Progress | None,
    *,
    requested_by: str = "",
    pause: dict[str, Any] | None = None,
) -> Done:
    """List the matching protectors afresh, annotate each that still has the cell, then (not
    in a dry run) wait until the generator has dropped the cell from each, and count."""
    from django.conf import settings

    cell_id = parameters["cell"]
    client = client_for(CORE)
    aggregator: dict[str, Any] | None = None
    if pause is not None:
        aggregator = dict(pause)
        if pause.get("paused") and not dry_run:
            if progress is not None:
                progress.set_phase("waiting for the aggregator to stop")
            aggregator["stopped"] = _aggregator_stopped(cell_id, AGGREGATOR_STOP_SECONDS)
    if progress is not None:
        progress.set_phase("listing")
    items = _list_selection(client, parameters)
    if progress is not None:
        progress.set_total(len(items))
        progress.set_phase("annotating")
    operation = f" (operation #{progress.operation_id})" if progress is not None else ""
    why = (
        f"{requested_by} asked to remove {cell_id} from status{operation}"
        if requested_by and not dry_run
        else None
    )
    results: list[tuple[str, str] | None] = [None] * len(items)
    with ThreadPoolExecutor(max_workers=PATCH_THREADS) as pool:
        pending_futures = {
            pool.submit(_annotate_one, client, obj, cell_id, dry_run, why): index
            for index, obj in enumerate(items)
        }
        while pending_futures:
            # The timeout keeps the heartbeat going while slow patches are outstanding.
            finished, _ = wait(
                pending_futures, timeout=PROGRESS_SECONDS, return_when=FIRST_COMPLETED
            )
            for future in finished:
                index = pending_futures.pop(future)
                try:
                    what, detail = future.result()
                except Exception as error:  # one protector's surprise must not end the rest
                    what, detail = "failed", f"{type(error).__name__}: {error}"
                results[index] = (what, detail)
                if progress is not None:
                    progress.advance(what, failed=what == "failed")
            if progress is not None:
                progress.flush()
    counts = dict.fromkeys(("annotated", "already_pending", "not_in_status", "failed"), 0)
    changed, failures, targeted = [], [], []
    for obj, outcome in zip(items, results, strict=True):
        what, detail = outcome or ("failed", "not attempted")
        counts[what] += 1
        key = _key(obj)
        if what == "annotated":
            changed.append(key)
        elif what == "failed":
            failures.append({"protector": key, "error": detail})
        if what in ("annotated", "already_pending"):
            targeted.append(key)
    still: dict[str, str] = {}
    if not dry_run:
        if progress is not None:
            progress.set_phase(f"waiting for {cell_id} to leave {len(targeted)} statuses")
        timeout = float(getattr(settings, "PODSEIDON_REMOVAL_CONFIRM_SECONDS", 60.0))
        still = _confirm(client, parameters, targeted, progress, timeout) if targeted else {}
        counts["removed"] = len(targeted) - len(still)
        counts["pending"] = len(still)
    result: dict[str, Any] = {
        "cell": cell_id,
        "matched": len(items),
        **counts,
        "changed": changed[:MAX_LISTED],
        "failures": failures[:MAX_LISTED],
    }
    if not dry_run:
        result["still_pending"] = [
            {"protector": key, "why": why} for key, why in list(still.items())[:MAX_LISTED]
        ]
    if aggregator is not None:
        result["aggregator"] = aggregator
    verb = "would annotate" if dry_run else "annotated"
    message = (
        f"{len(items)} matched; {verb} {counts['annotated']}; "
        f"{counts['already_pending']} already pending; "
        f"{counts['not_in_status']} without {cell_id} in status; {counts['failed']} failed"
    )
    if not dry_run:
        message += f"; {cell_id} removed from {counts['removed']} of {len(targeted)}"
        if still:
            first = ", ".join(list(still)[:5]) + (", …" if len(still) > 5 else "")
            message += (
                f"; still holding {cell_id}: {len(still)} ({first}): {next(iter(still.values()))}"
            )
    if aggregator is not None and aggregator.get("stopped") is False:
        message += f"; the aggregator of {cell_id} was still running when annotating began"
    if counts["failed"] == 0 and not still:
        outcome_value = Outcome.SUCCEEDED
    elif counts["failed"] < len(items):
        outcome_value = Outcome.PARTIAL
        if failures:
            message += f" (first failure: {failures[0]['protector']}: {failures[0]['error']})"
    else:
        outcome_value = Outcome.FAILED
        message = f"every patch failed (first: {failures[0]['error']}); " + message
    return Done(outcome_value, message, result, error_code="patch_failed")


def remove_cell_from_protectors(
    user: Any,
    *,
    cell_id: str,
    reason: Any,
    namespace: str | None = None,
    label_selector: str | None = None,
    names: Iterable[str] | None = None,
    dry_run: bool = False,
    pause_aggregator: bool = False,
) -> ActionResult:
    """Remove the cell from every matching protector that has it, within this call (dry runs,
    scripts); ``start_cell_removal`` runs the same as a tracked operation."""
    reason, parameters = _validated_removal(
        user, cell_id, reason, namespace, label_selector, names, pause_aggregator
    )
    pause = _pause_first(user, cell_id, reason, dry_run) if pause_aggregator else None
    return run_action(
        user=user,
        action=Action.REMOVE_CELL,
        target=f"cell/{cell_id}",
        reason=reason,
        parameters=parameters,
        dry_run=dry_run,
        work=lambda: _removal_work(
            parameters, dry_run, None, requested_by=user.get_username(), pause=pause
        ),
    )


def start_cell_removal(
    user: Any,
    *,
    cell_id: str,
    reason: Any,
    namespace: str | None = None,
    label_selector: str | None = None,
    names: Iterable[str] | None = None,
    pause_aggregator: bool = False,
) -> tuple[Operation, bool]:
    """The removal as a background operation with progress, audited once when it ends.

    With ``pause_aggregator`` the cell's aggregator is paused first (its own audit record), so
    it cannot write the cell's counts back after the removal. The operation ends
    ``succeeded`` only once no targeted protector's status holds the cell; after
    ``PODSEIDON_REMOVAL_CONFIRM_SECONDS`` it ends ``partial``, naming those still pending.

    Returns (operation, started); while the same selection is being removed already, that
    operation is returned with ``started`` False instead of starting a second one.
    """
    reason, parameters = _validated_removal(
        user, cell_id, reason, namespace, label_selector, names, pause_aggregator
    )
    pause = _pause_first(user, cell_id, reason, False) if pause_aggregator else None
    return operations.start(
        user=user,
        action=Action.REMOVE_CELL,
        target=f"cell/{cell_id}",
        reason=reason,
        parameters=parameters,
        work=lambda progress: _removal_work(
            parameters, False, progress, requested_by=user.get_username(), pause=pause
        ),
    )
