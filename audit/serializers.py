from django.urls import reverse
from rest_framework import serializers

from audit.models import AuditRecord, Operation


class AuditRecordSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditRecord
        fields = [
            "id",
            "created_at",
            "username",
            "action",
            "target",
            "reason",
            "parameters",
            "dry_run",
            "outcome",
            "message",
            "result",
        ]
        read_only_fields = fields


class OperationSerializer(serializers.ModelSerializer):
    """A tracked operation: progress while it runs, outcome and audit record once it ended."""

    status_url = serializers.SerializerMethodField(help_text="Poll this for progress.")
    percent = serializers.IntegerField(
        allow_null=True, read_only=True, help_text="done / total, once the total is known."
    )
    audit_id = serializers.IntegerField(
        source="audit_record_id", allow_null=True, read_only=True, help_text="Once it ended."
    )

    class Meta:
        model = Operation
        fields = [
            "id",
            "status_url",
            "created_at",
            "username",
            "action",
            "target",
            "reason",
            "parameters",
            "state",
            "total",
            "done",
            "failed",
            "percent",
            "counts",
            "phase",
            "message",
            "result",
            "heartbeat_at",
            "finished_at",
            "audit_id",
        ]
        read_only_fields = fields

    def get_status_url(self, operation: Operation) -> str:
        path = reverse("api:operation", args=[operation.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class OperationStartedSerializer(serializers.Serializer):
    operation_id = serializers.IntegerField()
    status_url = serializers.CharField()
    started = serializers.BooleanField(
        help_text="False when the same selection was already being worked on: that operation "
        "is returned instead of starting a second one."
    )
    operation = OperationSerializer()
