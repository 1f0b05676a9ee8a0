"""The console's read-only audit log page (the admin keeps the same records read-only too)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from audit.models import Action, AuditRecord, Outcome

PAGE_SIZE = 50


@login_required
@require_GET
def audit_list(request: HttpRequest) -> HttpResponse:
    records = AuditRecord.objects.all()
    user = request.GET.get("user", "").strip()
    action = request.GET.get("action", "")
    outcome = request.GET.get("outcome", "")
    if user:
        records = records.filter(username__icontains=user)
    if action in Action.values:
        records = records.filter(action=action)
    else:
        action = ""
    if outcome in Outcome.values:
        records = records.filter(outcome=outcome)
    else:
        outcome = ""
    filters = {"user": user, "action": action, "outcome": outcome}
    page = Paginator(records, PAGE_SIZE).get_page(request.GET.get("page"))
    base = {k: v for k, v in filters.items() if v}

    def link(number: int) -> str:
        return "?" + urlencode({**base, "page": number})

    context = {
        "page": page,
        "filters": filters,
        "actions": Action.choices,
        "outcomes": Outcome.choices,
        "prev_url": link(page.previous_page_number()) if page.has_previous() else None,
        "next_url": link(page.next_page_number()) if page.has_next() else None,
    }
    return render(request, "console/audit.html", context)
