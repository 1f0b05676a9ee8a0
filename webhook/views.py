"""HTTP endpoints of the webhook role: the AdmissionReview endpoint and readiness.

No sessions, no database: kube-apiserver authenticates us by TLS, and the webhook has to keep
answering when the console's database or Redis is down. The one middleware of this role is
webhook/client_auth.py's client-certificate gate (``webhook.tls.client_ca_file``).
"""

from __future__ import annotations

import logging
import re
import time

import orjson
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from webhook.decision import AUDIT_KEY_DRY_RUN, WebhookUnavailable
from webhook.review import MalformedReview, Verdict, parse_review, review_response
from webhook.runtime import get_runtime, review_span

logger = logging.getLogger("podseidon.webhook")

# kube-apiserver caps request bodies at 3 MiB; anything larger is not a review it sent.
MAX_BODY_BYTES = 3 * 1024 * 1024
_TIMEOUT_QUERY = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)?$")


def _json(payload: object, status: int = 200) -> HttpResponse:
    body = orjson.dumps(payload)
    response = HttpResponse(body, status=status, content_type="application/json")
    # No CommonMiddleware in this role to add it; without it gunicorn would answer chunked.
    response["Content-Length"] = str(len(body))
    return response


def _error(cell_id: str, code: int, message: str, cause: str) -> HttpResponse:
    get_runtime().observer.http_error(cell_id, code, message, cause)
    return _json({"error": message, "code": code}, status=code)


def _review_timeout(query: str, configured: float) -> float:
    """kube-apiserver appends ``?timeout=10s`` (its deadline for this call) to the URL."""
    raw = ""
    # The raw query string rather than request.GET: a QueryDict per review for one value.
    for pair in query.split("&"):
        if pair.startswith("timeout="):
            raw = pair[8:]
    match = _TIMEOUT_QUERY.match(raw)
    if not match:
        return configured
    value, unit = float(match.group(1)), match.group(2) or "s"
    seconds = value / 1000 if unit == "ms" else value * 60 if unit == "m" else value
    return min(seconds, 30.0) if seconds > 0 else configured


@csrf_exempt
@require_POST
def admission_review(request: HttpRequest, cell_id: str) -> HttpResponse:
    started = time.monotonic()
    runtime = get_runtime()
    config = runtime.config
    if config.cell(cell_id) is None:
        # The path segment is the caller's: counted under one fixed label value, so no caller
        # can grow the metric's label set.
        return _error(
            "unknown",
            400,
            f"unknown cell {cell_id!r}; configured: {config.cell_ids}",
            "unknown-cell",
        )
    try:
        # gunicorn refuses a malformed Content-Length itself; other servers may pass it on.
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = -1
    if length < 0:
        return _error(cell_id, 400, "invalid Content-Length header", "malformed")
    if length > MAX_BODY_BYTES:
        return _error(
            cell_id, 413, f"request body of {length} bytes exceeds {MAX_BODY_BYTES}", "too-large"
        )
    try:
        body = request.body
    except RequestDataTooBig:
        # Django's own cap (DATA_UPLOAD_MAX_MEMORY_SIZE) can be below ours.
        return _error(cell_id, 413, "request body too large", "too-large")
    if len(body) > MAX_BODY_BYTES:
        return _error(cell_id, 413, f"request body exceeds {MAX_BODY_BYTES} bytes", "too-large")
    try:
        review = parse_review(body)
    except MalformedReview as error:
        return _error(cell_id, 400, str(error), "malformed")
    observer = runtime.observer
    observer.phase("parse", time.monotonic() - started)

    timeout = _review_timeout(request.META.get("QUERY_STRING", ""), runtime.review_timeout)
    deadline = started + review_span(timeout)
    try:
        verdict = runtime.decider.decide(cell_id, review, deadline)
    except MalformedReview as error:
        return _error(cell_id, 400, str(error), "malformed")
    except WebhookUnavailable as error:
        if not config.webhook.dry_run:
            return _error(cell_id, 500, str(error), error.cause)
        verdict = Verdict.allow({AUDIT_KEY_DRY_RUN: "1"})
    except Exception as error:
        logger.exception("failed to judge review %s", review.uid)
        if not config.webhook.dry_run:
            return _error(cell_id, 500, f"internal error: {type(error).__name__}", "internal")
        verdict = Verdict.allow({AUDIT_KEY_DRY_RUN: "1"})
    if verdict.cause:
        # A 500 verdict: refused whatever the failurePolicy, but an error all the same.
        observer.error_verdict(cell_id, verdict.code, verdict.cause)
    decided = time.monotonic()
    response = _json(review_response(review.uid, verdict))
    observer.request_done(cell_id, review, verdict, decided - started)
    observer.phase("response", time.monotonic() - decided)
    return response


@require_GET
def readyz(request: HttpRequest) -> HttpResponse:
    runtime = get_runtime()
    if not runtime.ready:
        return HttpResponse(
            "PodProtector cache not synced\n", status=503, content_type="text/plain"
        )
    runtime.observer.beat()
    return HttpResponse("ok\n", content_type="text/plain")
