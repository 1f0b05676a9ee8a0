from rest_framework import serializers

from audit.models import AuditRecord


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
