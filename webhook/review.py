"""AdmissionReview admission.k8s.io/v1: parsing what kube-apiserver sends, building what it expects.

No Django here: the view hands raw bytes in and writes the returned dict out, so the whole wire
contract is testable with plain tables of recorded reviews.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass, field
from typing import Any

import orjson

API_VERSION = "admission.k8s.io/v1"


class MalformedReview(ValueError):
    """The body is not an AdmissionReview we can answer; the view turns this into HTTP 400."""


@dataclass(frozen=True)
class ReviewRequest:
    uid: str
    operation: str
    group: str
    resource: str
    sub_resource: str
    namespace: str
    name: str
    object: dict[str, Any] | None
    old_object: dict[str, Any] | None
    dry_run: bool
    username: str
    user_groups: tuple[str, ...] = field(default=())

    @property
    def is_pod_delete(self) -> bool:
        return (
            self.operation == "DELETE"
            and self.group == ""
            and self.resource == "pods"
            and not self.sub_resource
        )

    @property
    def is_pod_eviction(self) -> bool:
        return (
            self.operation == "CREATE"
            and self.group == ""
            and self.resource == "pods"
            and self.sub_resource == "eviction"
        )


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedReview(f"{where} must be a JSON object")
    return value


def _string(container: dict[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = container.get(key)
    if value is None:
        if required:
            raise MalformedReview(f"{where}.{key} is required")
        return ""
    if not isinstance(value, str):
        raise MalformedReview(f"{where}.{key} must be a string")
    return value


def _string_map(container: dict[str, Any], key: str, where: str) -> dict[str, str]:
    """Labels or annotations: a JSON object of strings; missing or null is empty."""
    value = container.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise MalformedReview(f"{where}.{key} must be a JSON object of strings")
    return value


# repr() cut short: a 400's message names what was wrong, it does not echo a huge body back.
_shown = reprlib.Repr()
_shown.maxstring = _shown.maxother = 80


def parse_review(body: bytes) -> ReviewRequest:
    """Parse a request body; raise MalformedReview with a message fit for an HTTP 400."""
    if not body:
        raise MalformedReview("empty request body; expected an AdmissionReview")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise MalformedReview(f"request body is not valid JSON: {error}") from None
    review = _mapping(document, "AdmissionReview")
    kind, api_version = review.get("kind"), review.get("apiVersion")
    if kind != "AdmissionReview" or api_version != API_VERSION:
        raise MalformedReview(
            f"expected kind AdmissionReview, apiVersion {API_VERSION}; "
            f"got kind {_shown.repr(kind)}, apiVersion {_shown.repr(api_version)}"
        )
    if review.get("request") is None:
        raise MalformedReview("AdmissionReview.request is missing")
    request = _mapping(review["request"], "request")
    resource = _mapping(request.get("resource") or {}, "request.resource")
    user = _mapping(request.get("userInfo") or {}, "request.userInfo")
    old_object = request.get("oldObject")
    new_object = request.get("object")
    if old_object is not None:
        _mapping(old_object, "request.oldObject")
    if new_object is not None:
        _mapping(new_object, "request.object")
    groups = user.get("groups") or []
    if not isinstance(groups, list):
        raise MalformedReview("request.userInfo.groups must be a list")
    return ReviewRequest(
        uid=_string(request, "uid", "request", required=True),
        operation=_string(request, "operation", "request", required=True),
        group=_string(resource, "group", "request.resource"),
        resource=_string(resource, "resource", "request.resource"),
        sub_resource=_string(request, "subResource", "request"),
        namespace=_string(request, "namespace", "request"),
        # Empty for every pod of a DELETECOLLECTION: the pod's identity is in oldObject.
        name=_string(request, "name", "request"),
        object=new_object,
        old_object=old_object,
        dry_run=bool(request.get("dryRun")),
        username=_string(user, "username", "request.userInfo"),
        user_groups=tuple(g for g in groups if isinstance(g, str)),
    )


@dataclass(frozen=True)
class PodMetadata:
    """What the decision reads of a pod's metadata, each of the type Kubernetes gives it."""

    name: str
    namespace: str
    uid: str
    labels: dict[str, str]
    annotations: dict[str, str]

    @classmethod
    def of(cls, pod: dict[str, Any]) -> PodMetadata:
        """Raise MalformedReview naming the field that has the wrong type."""
        metadata = _mapping(pod.get("metadata") or {}, "metadata")
        return cls(
            name=_string(metadata, "name", "metadata"),
            namespace=_string(metadata, "namespace", "metadata"),
            uid=_string(metadata, "uid", "metadata"),
            labels=_string_map(metadata, "labels", "metadata"),
            annotations=_string_map(metadata, "annotations", "metadata"),
        )


def eviction_annotations(eviction: dict[str, Any]) -> dict[str, str]:
    """The annotations of the Eviction in an eviction review's request.object."""
    metadata = _mapping(eviction.get("metadata") or {}, "request.object.metadata")
    return _string_map(metadata, "annotations", "request.object.metadata")


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    code: int = 200
    message: str = ""
    audit_annotations: dict[str, str] = field(default_factory=dict)
    # Why a 500 verdict could not judge (a metrics label, never sent): see observer.ERROR_CAUSES.
    cause: str = ""

    @classmethod
    def allow(cls, audit_annotations: dict[str, str] | None = None) -> Verdict:
        return cls(True, audit_annotations=dict(audit_annotations or {}))

    @classmethod
    def reject(
        cls,
        code: int,
        message: str,
        audit_annotations: dict[str, str] | None = None,
        cause: str = "",
    ) -> Verdict:
        return cls(False, code, message, dict(audit_annotations or {}), cause)


def review_response(uid: str, verdict: Verdict) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": verdict.allowed}
    if not verdict.allowed:
        response["status"] = {"code": verdict.code, "message": verdict.message}
    if verdict.audit_annotations:
        response["auditAnnotations"] = verdict.audit_annotations
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}
