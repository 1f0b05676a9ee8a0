"""Durable runtime switches of the controllers (the console's pause/resume buttons)."""

from __future__ import annotations

from django.db import models


class ControllerSwitch(models.Model):
    """Whether one controller (``generator``, ``aggregator/<cellID>``, ``monitor``) is paused.

    A row exists once someone flipped the switch; no row means "running". Change it through
    ``workers.switches.set_paused`` so running workers hear about it at once.
    """

    controller_key = models.CharField(max_length=100, unique=True)
    paused = models.BooleanField(default=False)
    reason = models.TextField(blank=True, default="")
    changed_by = models.CharField(max_length=150, blank=True, default="")
    changed_at = models.DateTimeField()

    class Meta:
        ordering = ["controller_key"]

    def __str__(self) -> str:
        return f"{self.controller_key}: {'paused' if self.paused else 'running'}"
