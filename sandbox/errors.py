"""Kubernetes `Status` error bodies.

Clients (client-go, the Python client, kubectl) parse these bodies to decide what happened, so
field names, order and wording follow what a real kube-apiserver v1.24 writes (see the recorded
transcripts in tests/fixtures/kube-apiserver-v1.24/).
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An API failure carrying the exact Status body the HTTP layer must send."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body.get("message", ""))
        self.body = body

    @property
    def code(self) -> int:
        return int(self.body.get("code", 500))

    @property
    def reason(self) -> str:
        return str(self.body.get("reason", ""))


def status_body(
    code: int,
    message: str,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Failure Status; key order matches the apiserver's JSON encoding."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
    }
    if reason:
        body["reason"] = reason
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def success_status(
    details: dict[str, Any] | None = None, code: int | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
    }
    if details:
        body["details"] = details
    if code is not None:
        body["code"] = code
    return body


def _details(name: str, group: str, kind: str, **extra: Any) -> dict[str, Any]:
    # The apiserver omits empty fields of StatusDetails (omitempty), group included.
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = kind
    details.update(extra)
    return details


def qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        status_body(
            404,
            f'{qualified(plural, group)} "{name}" not found',
            "NotFound",
            _details(name, group, plural),
        )
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        status_body(
            409,
            f'{qualified(plural, group)} "{name}" already exists',
            "AlreadyExists",
            _details(name, group, plural),
        )
    )


def conflict(plural: str, group: str, name: str, detail: str | None = None) -> ApiError:
    detail = detail or (
        "the object has been modified; please apply your changes to the latest version and "
        "try again"
    )
    return ApiError(
        status_body(
            409,
            f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": {detail}',
            "Conflict",
            _details(name, group, plural),
        )
    )


def invalid(kind: str, group: str, name: str, causes: list[dict[str, str]]) -> ApiError:
    """422 Invalid; `causes` are {reason, message, field} as field.Error renders them."""
    rendered = [f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes]
    summary = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    qkind = f"{kind}.{group}" if group else kind
    return ApiError(
        status_body(
            422,
            f'{qkind} "{name}" is invalid: {summary}',
            "Invalid",
            _details(name, group, kind, causes=causes),
        )
    )


def bad_request(message: str) -> ApiError:
    return ApiError(status_body(400, message, "BadRequest"))


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> ApiError:
    return ApiError(status_body(405, message, "MethodNotAllowed", {}))


def unsupported_media_type(content_type: str, accepted: list[str], detail: str = "") -> ApiError:
    message = (
        f"the body of the request was in an unknown format - accepted media types "
        f"include: {', '.join(accepted)}"
    )
    if detail:
        message = f"{message} ({detail})"
    return ApiError(status_body(415, message, "UnsupportedMediaType"))


def gone(message: str) -> ApiError:
    return ApiError(status_body(410, message, "Expired"))


def internal(message: str) -> ApiError:
    return ApiError(
        status_body(
            500,
            f"Internal error occurred: {message}",
            "InternalError",
            {"causes": [{"message": message}]},
        )
    )


def forbidden(plural: str, group: str, name: str, message: str) -> ApiError:
    return ApiError(
        status_body(
            403,
            f'{qualified(plural, group)} "{name}" is forbidden: {message}',
            "Forbidden",
            _details(name, group, plural),
        )
    )


def unauthorized_body() -> dict[str, Any]:
    return status_body(401, "Unauthorized", "Unauthorized")


def page_not_found() -> dict[str, Any]:
    # What the apiserver's NotFound handler answers for an unknown path.
    return status_body(404, "the server could not find the requested resource", "NotFound", {})
