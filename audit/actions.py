"""How every operator action runs: check, act, write exactly one audit record, report.

A service (``console.services``, ``webhook.services``, ``workers.services``) validates its
input first (``InvalidAction``: nothing was attempted, nothing is audited, the API answers 400),
then hands the work to ``run_action``. Whatever the work does (succeeds, partly succeeds, fails
with a cluster error, or raises something unexpected) exactly one ``AuditRecord`` is written.
A failure then surfaces as ``ActionFailed`` carrying the record, so the API and the console can
show its cause and point at the audit entry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied

from audit.models import AuditRecord, Outcome
from audit.roles import can_operate
from protectors.kube.client import KubeError

logger = logging.getLogger("podseidon.audit")

MAX_REASON_CHARS = 2000


class InvalidAction(Exception):
    """The request is wrong (no reason, unknown cell, bad selector); nothing was attempted."""

    def __init__(self, message: str, *, field: str | None = None, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


@dataclass
class Done:
    """What the work of an action returns."""

    outcome: str  # an Outcome value
    message: str
    result: dict[str, Any] = field(default_factory=dict)
    # The HTTP status an API should answer a FAILED/PARTIAL outcome with, and an error code.
    error_status: int = 502
    error_code: str = "action_failed"


class Failure(Exception):
    """Raised inside an action's work to end it as failed with a clear cause."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "action_failed",
        status: int = 502,
        result: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.result = dict(result or {})


@dataclass
class ActionResult:
    record: AuditRecord
    outcome: str
    message: str
    result: dict[str, Any]
    dry_run: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "message": self.message,
            "dry_run": self.dry_run,
            "audit_id": self.record.pk,
            "result": self.result,
        }


class ActionFailed(Exception):
    """An action that was attempted, audited, and failed (``record.outcome == "failed"``)."""

    def __init__(self, action: ActionResult, *, code: str, status: int) -> None:
        super().__init__(action.message)
        self.action = action
        self.code = code
        self.status = status


def clean_reason(reason: Any) -> str:
    text = reason.strip() if isinstance(reason, str) else ""
    if not text:
        raise InvalidAction("a reason is required for every action", field="reason")
    if len(text) > MAX_REASON_CHARS:
        raise InvalidAction(
            f"the reason is longer than {MAX_REASON_CHARS} characters", field="reason"
        )
    return text


def require_operator(user: Any) -> None:
    if not can_operate(user):
        raise PermissionDenied("acting on the clusters needs the operator role")


def kube_cause(error: KubeError) -> str:
    if error.status == 0:
        return f"cluster unreachable: {error.message}"
    return f"{error.status} {error.reason}: {error.message}"


def run_action(
    *,
    user: Any,
    action: str,
    target: str,
    reason: str,
    parameters: Mapping[str, Any],
    dry_run: bool,
    work: Callable[[], Done],
) -> ActionResult:
    """Run ``work`` and audit it once. Raises ActionFailed when the outcome is ``failed``."""
    code, status = "action_failed", 502
    unexpected: BaseException | None = None
    try:
        done = work()
        code, status = done.error_code, done.error_status
    except Failure as failure:
        done = Done(Outcome.FAILED, failure.message, failure.result)
        code, status = failure.code, failure.status
    except KubeError as error:
        done = Done(Outcome.FAILED, kube_cause(error), {"kube_status": error.status})
        code = "cluster_unreachable" if error.status == 0 else "cluster_error"
    except Exception as error:  # audited as failed, then re-raised: a bug must stay visible
        done = Done(Outcome.FAILED, f"internal error: {type(error).__name__}: {error}")
        unexpected = error
    record = AuditRecord.objects.create(
        user=user if getattr(user, "pk", None) else None,
        username=user.get_username() if user is not None else "",
        action=action,
        target=target,
        reason=reason,
        parameters=dict(parameters),
        dry_run=dry_run,
        outcome=done.outcome,
        message=done.message,
        result=done.result,
    )
    logger.info(
        "audit #%s: %s %s %s%s by %s: %s (%s)",
        record.pk,
        action,
        target,
        "(dry run) " if dry_run else "",
        done.outcome,
        record.username,
        done.message,
        reason,
    )
    if unexpected is not None:
        raise unexpected
    result = ActionResult(record, done.outcome, done.message, done.result, dry_run)
    if done.outcome == Outcome.FAILED:
        raise ActionFailed(result, code=code, status=status)
    return result
