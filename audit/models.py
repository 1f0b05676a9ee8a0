"""The audit log: one record per operator action, written whatever the action's outcome.

The model also carries the ``operate`` permission (``audit.operate``): the right to act on the
clusters. Whoever acts is audited, so the right lives beside the record of its use.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Action(models.TextChoices):
    REMOVE_CELL = "remove-cell", "Remove a cell from PodProtectors"
    WEBHOOK_DISABLE = "webhook-disable", "Disable the webhook in a cell"
    WEBHOOK_ENABLE = "webhook-enable", "Re-enable the webhook in a cell"
    WEBHOOK_RESTORE = "webhook-restore", "Restore the webhook of a cell from the configuration"
    WEBHOOK_DISABLE_ALL = "webhook-disable-all", "Disable the webhook in every cell"
    CONTROLLER_PAUSE = "controller-pause", "Pause a controller"
    CONTROLLER_RESUME = "controller-resume", "Resume a controller"


class Outcome(models.TextChoices):
    SUCCEEDED = "succeeded", "Succeeded"
    PARTIAL = "partial", "Partly succeeded"
    FAILED = "failed", "Failed"


class AuditRecord(models.Model):
    """Who did what to which target, why, with which parameters, and how it ended."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # The account, while it exists; ``username`` keeps the name after the account is deleted.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150, db_index=True)
    action = models.CharField(max_length=40, choices=Action.choices, db_index=True)
    # "cell/<id>", "webhook/<cell>", "webhook/*", "controller/<key>", with the selection of
    # PodProtectors (if any) in ``parameters``.
    target = models.CharField(max_length=300, db_index=True)
    reason = models.TextField()
    # What the operator asked for (filters, flags). Never credentials or kubeconfig paths.
    parameters = models.JSONField(default=dict, blank=True)
    dry_run = models.BooleanField(default=False)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, db_index=True)
    # One line for people: the cause of a failure or what was done.
    message = models.TextField(blank=True, default="")
    # Machine-readable detail: counts, per-target results, saved selectors, first failures.
    result = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            (
                "operate",
                "Can act on the clusters: remove cells, switch the webhook, pause controllers",
            )
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.username} {self.action} {self.target}"


class OperationState(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = Outcome.SUCCEEDED.value, Outcome.SUCCEEDED.label
    PARTIAL = Outcome.PARTIAL.value, Outcome.PARTIAL.label
    FAILED = Outcome.FAILED.value, Outcome.FAILED.label


class Operation(models.Model):
    """A long action (removing a cell from thousands of PodProtectors) running in the background
    of a web process: its progress while it runs, its final outcome and audit record after.

    ``selection_key`` names what the operation acts on (action, target and filters); at most one
    operation per key runs at a time, so repeating a request joins the running operation instead
    of starting a second one over the same objects.
    """

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150)
    action = models.CharField(max_length=40, choices=Action.choices)
    target = models.CharField(max_length=300)
    selection_key = models.CharField(max_length=64)
    reason = models.TextField()
    parameters = models.JSONField(default=dict, blank=True)
    state = models.CharField(
        max_length=20, choices=OperationState.choices, default=OperationState.RUNNING
    )
    # None until the objects to act on have been listed.
    total = models.IntegerField(null=True, blank=True)
    done = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    # Per kind of result (e.g. annotated / already_pending / not_in_status / failed, then
    # removed / pending once the removal is confirmed).
    counts = models.JSONField(default=dict, blank=True)
    # What the running work is doing now (e.g. "annotating", "confirming"); blank once ended.
    phase = models.CharField(max_length=40, blank=True, default="")
    message = models.TextField(blank=True, default="")
    result = models.JSONField(default=dict, blank=True)
    # Written by the running thread at least every few seconds; a running operation whose
    # heartbeat stops was lost with its process (see ``audit.operations.expire_stale``).
    heartbeat_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    audit_record = models.OneToOneField(
        AuditRecord, null=True, blank=True, on_delete=models.SET_NULL, related_name="operation"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["selection_key"],
                condition=models.Q(state="running"),
                name="one_running_operation_per_selection",
            )
        ]

    @property
    def running(self) -> bool:
        return self.state == OperationState.RUNNING

    @property
    def percent(self) -> int | None:
        if not self.total:
            return 100 if self.total == 0 and not self.running else None
        return min(100, round(100 * self.done / self.total))

    def __str__(self) -> str:
        return f"operation #{self.pk} {self.action} {self.target} ({self.state})"
