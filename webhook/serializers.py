"""Shapes of the webhook endpoints."""

from rest_framework import serializers

STATES = [
    "enabled",
    "disabled-by-console",
    "disabled-by-someone-else",
    "partly-disabled",
    "not-registered",
    "unreachable",
    "error",
]


class WebhookStateSerializer(serializers.Serializer):
    cell = serializers.CharField()
    state = serializers.ChoiceField(choices=STATES)
    dry_run = serializers.BooleanField(help_text="webhook.dry_run of the config: never refuses.")
    failure_policy = serializers.CharField(allow_null=True, help_text="As registered.")
    configured_failure_policy = serializers.CharField()
    object_selectors = serializers.DictField(help_text="Per webhook name, as registered now.")
    saved_selectors = serializers.DictField(
        allow_null=True, help_text="What re-enabling restores (disabled by the console only)."
    )
    disabled_by = serializers.CharField(allow_null=True)
    disabled_at = serializers.CharField(allow_null=True)
    resource_version = serializers.CharField(allow_null=True)
    error = serializers.CharField(allow_null=True)


class WebhookListSerializer(serializers.Serializer):
    cells = WebhookStateSerializer(many=True)
    what_disable_does = serializers.CharField()
    what_enable_does = serializers.CharField()
    what_restore_does = serializers.CharField()
