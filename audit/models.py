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
