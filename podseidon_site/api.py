"""What every REST endpoint shares: error bodies, permissions, action plumbing, pagination.

Every error answers ``{"error": {"code": ..., "message": ..., "details": ...}}``:

| status | code | when |
|---|---|---|
| 400 | ``invalid`` | a field is missing or wrong (``details`` maps field → messages) |
| 401 | ``not_authenticated`` / ``authentication_failed`` | no or a bad token/session |
| 403 | ``permission_denied`` | an action without the operator role |
| 404 | ``not_found`` / ``unknown_cell`` / ``unknown_node`` / ``unknown_controller`` | absent |
| 409 | ``conflict`` / ``not_registered`` / ``not_disabled_by_console`` | the action cannot apply |
| 409 | ``disabled_by_console`` / ``config_error`` | restore: use enable / nothing to render |
| 415 | ``unsupported_media_type`` | a request body that is not JSON |
| 502 | ``cluster_unreachable`` / ``cluster_error`` / ``patch_failed`` | a cluster failed us |
| 503 | ``cache_not_synced`` | the PodProtector cache is still listing (with Retry-After) |

A failed action's ``details`` hold its audit record id and result.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, JsonResponse
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from audit.actions import ActionFailed, ActionResult, InvalidAction
from audit.roles import can_operate
from console.cache import CacheNotSynced
from protectors.kube.client import KubeError

INVALID_STATUS = {"unknown_cell": 404, "unknown_node": 404, "unknown_controller": 404}


def error_response(
    status_code: int, code: str, message: str, details: Any = None, headers: dict | None = None
) -> Response:
    body = {"error": {"code": code, "message": message, "details": details}}
    return Response(body, status=status_code, headers=headers)


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            inner = _first_message(value)
            return inner if key == "non_field_errors" else f"{key}: {inner}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, InvalidAction):
        details = {exc.field: [exc.message]} if exc.field else None
        return error_response(INVALID_STATUS.get(exc.code, 400), exc.code, exc.message, details)
    if isinstance(exc, ActionFailed):
        return error_response(exc.status, exc.code, exc.action.message, exc.action.as_dict())
    if isinstance(exc, CacheNotSynced):
        return error_response(503, "cache_not_synced", str(exc), headers={"Retry-After": "2"})
    if isinstance(exc, KubeError):
        code = "cluster_unreachable" if exc.status == 0 else "cluster_error"
        return error_response(502, code, str(exc))
    if isinstance(exc, SuspiciousOperation):
        # e.g. more form fields than Django accepts: the client's fault, said in our error shape.
        return error_response(400, "bad_request", str(exc) or type(exc).__name__)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    if isinstance(exc, exceptions.ValidationError):
        code, details = "invalid", exc.detail
        message = _first_message(exc.detail)
    else:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "error"
        details = None
        message = str(exc.detail)
    response.data = {"error": {"code": code, "message": message, "details": details}}
    return response


class CanOperate(permissions.BasePermission):
    """Reads for every authenticated user; anything else needs the operator role."""

    message = "acting on the clusters needs the operator role"

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in permissions.SAFE_METHODS or can_operate(request.user)


class ActionRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(
        max_length=2000, help_text="Why (required; kept in the audit log).", trim_whitespace=True
    )


class DryRunActionRequestSerializer(ActionRequestSerializer):
    dry_run = serializers.BooleanField(
        default=False, help_text="Report what would change without changing anything."
    )


class ActionResponseSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=["succeeded", "partial", "failed"])
    message = serializers.CharField()
    dry_run = serializers.BooleanField()
    audit_id = serializers.IntegerField()
    result = serializers.DictField(help_text="Counts, per-target results, saved selectors.")


def action_response(result: ActionResult) -> Response:
    return Response(result.as_dict(), status=status.HTTP_200_OK)


class ErrorSerializer(serializers.Serializer):
    class Body(serializers.Serializer):
        code = serializers.CharField()
        message = serializers.CharField()
        details = serializers.JSONField(allow_null=True)

    error = Body()


ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid request"),
    401: OpenApiResponse(ErrorSerializer, description="Not authenticated"),
    403: OpenApiResponse(ErrorSerializer, description="Not an operator"),
    404: OpenApiResponse(ErrorSerializer, description="Unknown cell or object"),
    409: OpenApiResponse(ErrorSerializer, description="The action cannot apply"),
    415: OpenApiResponse(ErrorSerializer, description="The body is not JSON"),
    502: OpenApiResponse(ErrorSerializer, description="A cluster failed (audited)"),
    503: OpenApiResponse(ErrorSerializer, description="Cache still syncing"),
}


def errors(*codes: int) -> dict:
    """The documented error answers of an operation, for `extend_schema(responses=...)`."""
    return {code: ERRORS[code] for code in codes}


def document_unsupported_media_type(result: dict, generator: Any, **kwargs: Any) -> dict:
    """Schema hook: every operation that takes a body answers 415 to a body that is not JSON
    (the API's only parser), in the API's error shape."""
    error = {"$ref": "#/components/schemas/Error"}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation["responses"].setdefault(
                    "415",
                    {
                        "content": {"application/json": {"schema": error}},
                        "description": "The body is not JSON",
                    },
                )
    return result


def not_found(request: Any, *args: Any, **kwargs: Any) -> JsonResponse:
    """Any path under /api/ that no route matches: the API's error body, not Django's page."""
    return JsonResponse(
        {"error": {"code": "not_found", "message": "No such API endpoint.", "details": None}},
        status=404,
    )


class StandardPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
