"""Serializers of the controllers' state (leaders, switches), shared by the controllers' API and
the console's."""

from __future__ import annotations

from rest_framework import serializers


class SwitchSerializer(serializers.Serializer):
    paused = serializers.BooleanField()
    reason = serializers.CharField(allow_blank=True)
    changed_by = serializers.CharField(allow_blank=True)
    changed_at = serializers.DateTimeField(allow_null=True)


class LeaderSerializer(serializers.Serializer):
    active = serializers.BooleanField()
    worker = serializers.CharField()
    hostname = serializers.CharField()
    pid = serializers.IntegerField()
    token = serializers.IntegerField()
    since = serializers.DateTimeField()
    renewed_at = serializers.DateTimeField()
    heartbeat_age_seconds = serializers.FloatField()
    lease_duration_seconds = serializers.FloatField()
    paused = serializers.BooleanField()
    running = serializers.BooleanField()
    released = serializers.BooleanField()
    last_reconcile_at = serializers.DateTimeField(allow_null=True)
    last_reconcile_failed = serializers.BooleanField()
    last_error = serializers.CharField(allow_null=True)
    last_error_at = serializers.DateTimeField(allow_null=True)


class ControllerSerializer(serializers.Serializer):
    key = serializers.CharField()
    configured = serializers.BooleanField()
    switch = SwitchSerializer()
    leader = LeaderSerializer(allow_null=True)
