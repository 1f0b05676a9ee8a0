"""Console pages. Thin views: they gather what the templates show and call the services.

Reads come from the same services the REST API uses (the PodProtector cache, reachability
probes, leader states in Redis, webhook registrations); every read tolerates a cluster, the
cache or Redis being unavailable and says so on the page. Actions are CSRF-protected POSTs for
operators only (anyone else gets 403); they redirect back to the page with the outcome as a
message (post/redirect/get), and every attempted action leaves exactly one audit record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from audit import operations
from audit.actions import ActionFailed, ActionResult, InvalidAction
from audit.models import Action, Operation, OperationState, Outcome
from audit.roles import can_operate
from console import charts, services
from console import history as admission_history
from console.cache import SORT_KEYS, CacheNotSynced, RowFilter, protector_cache
from podseidon_site.redaction import redact
from protectors.kube.client import KubeError
from workers import services as worker_services

PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
OVERVIEW_REFRESH_SECONDS = 5
OVERVIEW_CACHE_WAIT_SECONDS = 1.0
# Live pages poll themselves this often (base.html); tiles turn amber past these.
LIVE_SECONDS = 5
SLOW_API_MS = 1000
STALE_HEARTBEAT_SECONDS = 30
# How long the removal form waits for its operation before showing the progress page instead.
REMOVAL_WAIT_SECONDS = 3.0
OPERATION_REFRESH_SECONDS = 2
RECENT_OPERATIONS = 10


# -- shared helpers ----------------------------------------------------------------------------


def _redact_reachability(reach) -> dict | None:
    if reach is None:
        return None
    return {
        "reachable": reach.reachable,
        "version": reach.version,
        "error": redact(reach.error) if reach.error else None,
        "latency_ms": reach.latency_ms,
    }


def require_operator(request: HttpRequest) -> None:
    if not can_operate(request.user):
        raise PermissionDenied("acting on the clusters needs the operator role")


def run_console_action(
    request: HttpRequest, action: Callable[[], ActionResult], *, label: str
) -> None:
    """Run an audited action and report its outcome (or why it was refused) as a message."""
    try:
        result = action()
    except InvalidAction as error:
        messages.error(request, f"{label}: not done: {redact(error.message)}")
        return
    except ActionFailed as failure:
        messages.error(
            request,
            f"{label}: FAILED: {redact(failure.action.message)} "
            f"(audit record #{failure.action.record.pk})",
        )
        return
    prefix = f"{label}{' (dry run)' if result.dry_run else ''}"
    detail = f"{redact(result.message)} (audit record #{result.record.pk})"
    if result.outcome == Outcome.SUCCEEDED:
        messages.success(request, f"{prefix}: {detail}")
    else:
        messages.warning(request, f"{prefix}: PARTLY FAILED: {detail}")


def _int_param(value: str | None, default: int, lowest: int = 1) -> int:
    try:
        number = int(value or default)
    except (TypeError, ValueError):
        return default
    return max(lowest, number)


def _as_of(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def cell_health(cell: dict) -> tuple[str, list[str]]:
    """A cell's colour (ok, warn, bad) and the reasons for anything but ok, in words."""
    reasons_bad: list[str] = []
    reasons_warn: list[str] = []
    reach = cell.get("reachability")
    if not reach or not reach.get("reachable"):
        reasons_bad.append("API unreachable")
    elif (reach.get("latency_ms") or 0) > SLOW_API_MS:
        reasons_warn.append(f"API slow ({reach['latency_ms']} ms)")
    aggregator = cell.get("aggregator")
    leader = (aggregator or {}).get("leader")
    if not leader or not leader.get("active"):
        reasons_bad.append("no aggregator leader")
    elif (leader.get("heartbeat_age_seconds") or 0) > STALE_HEARTBEAT_SECONDS:
        reasons_warn.append(f"aggregator heartbeat {leader['heartbeat_age_seconds']} s old")
    if aggregator and (aggregator.get("switch") or {}).get("paused"):
        reasons_warn.append("aggregator paused")
    webhook = cell.get("webhook") or {}
    if webhook.get("state") != "enabled":
        reasons_bad.append(f"webhook {webhook.get('state', 'unknown')}")
    elif webhook.get("dry_run"):
        reasons_warn.append("webhook in dry run")
    if reasons_bad:
        return "bad", reasons_bad + reasons_warn
    return ("warn" if reasons_warn else "ok"), reasons_warn


# -- overview ----------------------------------------------------------------------------------


@login_required
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    data = services.overview(cache_wait=OVERVIEW_CACHE_WAIT_SECONDS)
    cells = []
    for cell in data["cells"]:
        webhook = dict(cell["webhook"])
        webhook["error"] = redact(webhook.get("error")) if webhook.get("error") else None
        cells.append(
            {**cell, "reachability": _redact_reachability(cell["reachability"]), "webhook": webhook}
        )
    rejections = data["rejections"]
    configured = settings.PODSEIDON.cell_ids
    # Configured cells in config order, then any cell only the webhook's metrics name.
    order = [*configured, *sorted(set(rejections["since_start"]) - set(configured))]
    rejection_rows = [
        {
            "cell": cell,
            "windows": [w["rejected"].get(cell) for w in rejections["windows"]],
            "since_start": rejections["since_start"].get(cell),
        }
        for cell in order
    ]
    context = {
        "refresh_seconds": OVERVIEW_REFRESH_SECONDS,
        "core": _redact_reachability(data["core"]),
        "cells": cells,
        "generator": data["generator"],
        "monitor": data["monitor"],
        "redis_error": redact(data["redis_error"]) if data["redis_error"] else None,
        "counts": data["counts"],
        "cache_error": redact(data["cache_error"]) if data["cache_error"] else None,
        "webhook_dry_run": data["webhook_dry_run"],
        "rejections": {
            **rejections,
            "sources": [
                {**src, "error": redact(src["error"]) if src["error"] else None}
                for src in rejections["sources"]
            ],
        },
        "rejection_rows": rejection_rows,
        "as_of": _as_of(data["as_of"]),
        "live_seconds": LIVE_SECONDS,
    }
    history = data["history"]
    by_cell = {row["id"]: row for row in history["cells"]}
    for cell in cells:
        state, reasons = cell_health(cell)
        cell["health"] = state
        cell["health_reasons"] = reasons
        cell["dot"] = charts.health_dot(state)
        cell["history"] = by_cell.get(cell["id"])
    charted = []
    for row in history["cells"]:
        charted.append(
            {
                **row,
                "svg": charts.admissions_chart(row["id"], row["admitted"], row["refused"]),
            }
        )
    context["history"] = {
        "source": history["source"],
        "error": redact(history["error"]) if history["error"] else None,
        "cells": charted,
        "as_of": _as_of(history["as_of"]),
    }
    return render(request, "console/overview.html", context)


# -- PodProtectors -----------------------------------------------------------------------------


@login_required
@require_GET
def protector_list(request: HttpRequest) -> HttpResponse:
    params = request.GET
    at_risk_param = params.get("at_risk", "")
    row_filter = RowFilter(
        namespace=params.get("namespace", "").strip() or None,
        name=params.get("name", "").strip() or None,
        at_risk={"yes": True, "no": False}.get(at_risk_param),
        cell=params.get("cell", "").strip() or None,
    )
    sort = params.get("sort", "namespace")
    if sort.lstrip("-") not in SORT_KEYS:
        sort = "namespace"
    page_size = _int_param(params.get("page_size"), DEFAULT_PAGE_SIZE)
    if page_size not in PAGE_SIZES:
        page_size = DEFAULT_PAGE_SIZE
    page_number = _int_param(params.get("page"), 1)
    filters = {
        "namespace": row_filter.namespace or "",
        "name": row_filter.name or "",
        "at_risk": at_risk_param if at_risk_param in ("yes", "no") else "",
        "cell": row_filter.cell or "",
    }
    context: dict = {
        "filters": filters,
        "sort": sort,
        "page_size": page_size,
        "page_sizes": PAGE_SIZES,
        "cell_ids": settings.PODSEIDON.cell_ids,
        "error": None,
        "page": None,
    }
    try:
        cache = protector_cache()
        page = cache.query(row_filter, sort=sort, page=page_number, page_size=page_size)
        if page.page > page.pages:  # past the end: show the last page
            page = cache.query(row_filter, sort=sort, page=page.pages, page_size=page_size)
    except (CacheNotSynced, KubeError) as error:
        context["error"] = redact(error)
        return render(request, "console/protectors.html", context, status=200)

    base = {k: v for k, v in filters.items() if v}
    if page_size != DEFAULT_PAGE_SIZE:
        base["page_size"] = str(page_size)

    def link(**extra: object) -> str:
        return "?" + urlencode({**base, **{k: str(v) for k, v in extra.items()}})

    columns = []
    for key, title in (
        ("namespace", "Namespace"),
        ("name", "Name"),
        ("required", "Required"),
        ("aggregated", "Aggregated"),
        ("estimated", "Estimated"),
        ("headroom", "Headroom"),
        ("bucket_lag", "Bucket lag (ms)"),
    ):
        active = sort.lstrip("-") == key
        descending = sort.startswith("-")
        columns.append(
            {
                "key": key,
                "title": title,
                "url": link(sort=f"-{key}" if active and not descending else key),
                "marker": ("▼" if descending else "▲") if active else "",
            }
        )
    rows = [
        {
            "row": row,
            "bar": charts.availability_bar(row.required, row.estimated, row.aggregated, row.total),
        }
        for row in page.rows
    ]
    context.update(
        {
            "page": page,
            "rows": rows,
            "at_risk_first_url": link(sort="at_risk"),
            "as_of": _as_of(time.time()),
            "live_seconds": LIVE_SECONDS,
            "columns": columns,
            "prev_url": link(sort=sort, page=page.page - 1) if page.page > 1 else None,
            "next_url": link(sort=sort, page=page.page + 1) if page.page < page.pages else None,
            "first_row": (page.page - 1) * page.page_size + 1 if page.count else 0,
            "last_row": (page.page - 1) * page.page_size + len(page.rows),
        }
    )
    return render(request, "console/protectors.html", context)


@login_required
@require_GET
def protector_detail(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    try:
        detail = services.protector_detail(namespace, name)
    except (CacheNotSynced, KubeError) as error:
        return render(
            request,
            "console/protector_detail.html",
            {"namespace": namespace, "name": name, "error": redact(error)},
        )
    if detail is None:
        raise Http404(f"no PodProtector {namespace}/{name}")
    status = detail["status"]
    cells = []
    for cell in status.get("cells") or []:
        if not isinstance(cell, dict):
            continue
        history = cell.get("admissionHistory") or {}
        cells.append(
            {
                "id": cell.get("cellID"),
                "aggregation": cell.get("aggregation") or {},
                "buckets": [
                    {**b, "pod": b.get("podName") or b.get("podUID") or ""}
                    for b in history.get("buckets") or []
                    if isinstance(b, dict)
                ],
            }
        )
    now = datetime.now(UTC)
    for cell in cells:
        cell["timeline"] = charts.bucket_timeline(cell["buckets"], now)
    bars = charts.cell_bars(
        [
            {
                "id": str(c["id"]),
                "total": c["aggregation"].get("totalReplicas") or 0,
                "available": c["aggregation"].get("availableReplicas") or 0,
            }
            for c in cells
        ]
    )
    refusal_log = admission_history.refusals(namespace, name)
    refusals = [
        {**entry, "when": _as_of(float(entry.get("at") or 0))} for entry in refusal_log["refusals"]
    ]
    source = dict(detail["source"])
    if source.get("error"):
        source["error"] = redact(source["error"])
    events = dict(detail["events"])
    if events.get("error"):
        events["error"] = redact(events["error"])
    context = {
        "namespace": namespace,
        "name": name,
        "error": None,
        "row": detail["row"],
        "metadata": detail["metadata"],
        "spec": detail["spec"],
        "summary": status.get("summary") or {},
        "cells": cells,
        "source": source,
        "events": events,
        "cell_bars": bars,
        "refusals": refusals,
        "refusals_error": redact(refusal_log["error"]) if refusal_log["error"] else None,
        "as_of": _as_of(now.timestamp()),
        "live_seconds": LIVE_SECONDS,
    }
    return render(request, "console/protector_detail.html", context)


# -- cells -------------------------------------------------------------------------------------


@login_required
@require_GET
def cell_list(request: HttpRequest) -> HttpResponse:
    data = services.list_cells()
    cells = []
    for cell in data["cells"]:
        cells.append({**cell, "reachability": _redact_reachability(cell["reachability"])})
    context = {
        "cells": cells,
        "cache_synced": data["cache_synced"],
        "cache_error": redact(data["cache_error"]) if data["cache_error"] else None,
        "redis_error": redact(data["redis_error"]) if data["redis_error"] else None,
        "can_operate": can_operate(request.user),
        "operations": _recent_removals(),
    }
    return render(request, "console/cells.html", context)


def _recent_removals() -> list[Operation]:
    operations.expire_stale()
    return list(Operation.objects.filter(action=Action.REMOVE_CELL)[:RECENT_OPERATIONS])


@login_required
@require_POST
def cell_remove(request: HttpRequest, cell_id: str) -> HttpResponse:
    require_operator(request)
    label = f"Remove {cell_id} from PodProtectors"
    typed = request.POST.get("confirm_cell", "").strip()
    if typed != cell_id:
        messages.error(
            request,
            f"{label}: not done: type the cell ID {cell_id!r} exactly to confirm "
            f"(you typed {typed!r})",
        )
        return redirect("console:cells")
    selection = {
        "cell_id": cell_id,
        "reason": request.POST.get("reason", ""),
        "namespace": request.POST.get("namespace", ""),
        "label_selector": request.POST.get("label_selector", ""),
        "pause_aggregator": bool(request.POST.get("pause_aggregator")),
    }
    if request.POST.get("dry_run"):
        run_console_action(
            request,
            lambda: services.remove_cell_from_protectors(request.user, dry_run=True, **selection),
            label=label,
        )
        return redirect("console:cells")
    try:
        operation, started = services.start_cell_removal(request.user, **selection)
    except InvalidAction as error:
        messages.error(request, f"{label}: not done: {redact(error.message)}")
        return redirect("console:cells")
    except ActionFailed as failure:  # pausing the aggregator first failed: nothing annotated
        messages.error(
            request,
            f"{label}: not done: pausing the aggregator failed: "
            f"{redact(failure.action.message)} (audit record #{failure.action.record.pk})",
        )
        return redirect("console:cells")
    if not started:
        messages.info(
            request,
            f"{label}: the same removal is already running as operation #{operation.pk} "
            f"(started by {operation.username}); showing its progress",
        )
        return redirect("console:operation", operation.pk)
    # A few hundred protectors finish within this wait and read like any other action; a long
    # removal continues in the background and the operation's page shows its progress.
    operations.wait(operation.pk, REMOVAL_WAIT_SECONDS)
    operation.refresh_from_db()
    if operation.running:
        messages.info(
            request,
            f"{label}: started as operation #{operation.pk}; it continues in the background "
            "(this page follows its progress)",
        )
        return redirect("console:operation", operation.pk)
    _report_operation(request, operation, label)
    return redirect("console:cells")


def _operation_label(operation: Operation) -> str:
    """What the operator asked for, worded as the form's button (and its messages) word it."""
    if operation.action == Action.REMOVE_CELL:
        return f"Remove {operation.parameters.get('cell', '?')} from PodProtectors"
    return operation.get_action_display()


def _report_operation(request: HttpRequest, operation: Operation, label: str) -> None:
    detail = f"{redact(operation.message)} (audit record #{operation.audit_record_id})"
    if operation.state == OperationState.SUCCEEDED:
        messages.success(request, f"{label}: {detail}")
    elif operation.state == OperationState.PARTIAL:
        messages.warning(request, f"{label}: PARTLY FAILED: {detail}")
    else:
        messages.error(request, f"{label}: FAILED: {detail}")


@login_required
@require_GET
def operation_detail(request: HttpRequest, operation_id: int) -> HttpResponse:
    operations.expire_stale()
    try:
        operation = Operation.objects.select_related("audit_record").get(pk=operation_id)
    except Operation.DoesNotExist:
        raise Http404(f"no operation #{operation_id}") from None
    result = operation.result or {}
    failures = [
        {**f, "error": redact(f.get("error"))}
        for f in result.get("failures") or []
        if isinstance(f, dict)
    ]
    counts = dict(operation.counts or {})
    # What happened, in the order it happens: annotated, then removed or still pending.
    headline = [
        (title, counts.pop(kind))
        for kind, title in (
            ("annotated", "Annotated"),
            ("already_pending", "Already pending"),
            ("removed", "Removed from status"),
            ("pending", "Still pending"),
        )
        if kind in counts
    ]
    context = {
        "operation": operation,
        "label": _operation_label(operation),
        "message": redact(operation.message),
        "counts": headline
        + [(kind.replace("_", " ").capitalize(), n) for kind, n in sorted(counts.items())],
        "still_pending": [p for p in result.get("still_pending") or [] if isinstance(p, dict)],
        "aggregator": result.get("aggregator"),
        "failures": failures,
        "refresh_seconds": OPERATION_REFRESH_SECONDS,
    }
    return render(request, "console/operation.html", context)


def _aggregator_switch(paused: bool):
    @login_required
    @require_POST
    def view(request: HttpRequest, cell_id: str) -> HttpResponse:
        require_operator(request)
        run_console_action(
            request,
            lambda: worker_services.set_aggregator_paused(
                request.user, cell_id, paused, reason=request.POST.get("reason", "")
            ),
            label=f"{'Pause' if paused else 'Resume'} the aggregator of {cell_id}",
        )
        return redirect("console:cells")

    view.__name__ = "aggregator_pause" if paused else "aggregator_resume"
    return view


aggregator_pause = _aggregator_switch(True)
aggregator_resume = _aggregator_switch(False)


# -- webhook -----------------------------------------------------------------------------------
# (The webhook's own endpoints live in webhook/views.py; its console page lives here.)


@login_required
@require_GET
def webhook_page(request: HttpRequest) -> HttpResponse:
    from webhook import services as webhook_services

    states = []
    for state in webhook_services.all_states():
        states.append({**state, "error": redact(state["error"]) if state["error"] else None})
    context = {
        "states": states,
        "what_disable_does": webhook_services.WHAT_DISABLE_DOES,
        "what_enable_does": webhook_services.WHAT_ENABLE_DOES,
        "what_restore_does": webhook_services.WHAT_RESTORE_DOES,
        "config": settings.PODSEIDON.webhook,
        "can_operate": can_operate(request.user),
    }
    return render(request, "console/webhook.html", context)


def _webhook_cell_action(action: str, label: str):
    """The POST view running ``webhook.services.<action>`` for one cell."""

    @login_required
    @require_POST
    def view(request: HttpRequest, cell_id: str) -> HttpResponse:
        from webhook import services as webhook_services

        require_operator(request)
        act = getattr(webhook_services, action)
        run_console_action(
            request,
            lambda: act(
                request.user,
                cell_id,
                reason=request.POST.get("reason", ""),
                dry_run=bool(request.POST.get("dry_run")),
            ),
            label=label.format(cell=cell_id),
        )
        return redirect("console:webhook")

    view.__name__ = f"webhook_{action}"
    return view


webhook_disable = _webhook_cell_action("disable", "Disable the webhook in {cell}")
webhook_enable = _webhook_cell_action("enable", "Re-enable the webhook in {cell}")
webhook_restore = _webhook_cell_action(
    "restore", "Restore the webhook in {cell} from the configuration"
)


@login_required
@require_POST
def webhook_disable_all(request: HttpRequest) -> HttpResponse:
    from webhook import services as webhook_services

    require_operator(request)
    label = "Disable the webhook in all worker clusters"
    if not request.POST.get("confirm"):
        messages.error(
            request, f"{label}: not done: tick the box confirming no cell's pods will be protected"
        )
        return redirect("console:webhook")
    run_console_action(
        request,
        lambda: webhook_services.disable_all(
            request.user,
            reason=request.POST.get("reason", ""),
            dry_run=bool(request.POST.get("dry_run")),
        ),
        label=label,
    )
    return redirect("console:webhook")
