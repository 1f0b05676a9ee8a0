"""Request and response shapes of the drain planner's endpoint."""

from __future__ import annotations

from rest_framework import serializers

from console.planner import OPERATIONS, Verdict
from console.planning import MAX_NAMED_PODS
from protectors.health import HealthCriterion


class PodRefSerializer(serializers.Serializer):
    namespace = serializers.CharField(max_length=63)
    name = serializers.CharField(max_length=253)


class PlanRequestSerializer(serializers.Serializer):
    node = serializers.CharField(
        required=False, max_length=253, help_text="Every pod on this node, as `kubectl drain`."
    )
    selector = serializers.CharField(
        required=False,
        max_length=4000,
        help_text="A label selector (`app=web,tier in (a,b)`): alone, or narrowing a node.",
    )
    namespace = serializers.CharField(
        required=False, max_length=63, help_text="Only pods of this namespace (with node/selector)."
    )
    pods = PodRefSerializer(
        many=True,
        required=False,
        max_length=MAX_NAMED_PODS,
        help_text="Pods named one by one (instead of node/selector).",
    )
    # Named as the health-criterion annotation's values are spelt, as the API documents it.
    healthCriterion = serializers.ChoiceField(
        choices=[c.value for c in HealthCriterion],
        required=False,
        help_text="What the evictions ask for (the Eviction's health-criterion annotation); "
        "by default each pod's own annotation, else Available.",
    )
    operation = serializers.ChoiceField(
        choices=list(OPERATIONS),
        default="eviction",
        help_text="`eviction` (what kubectl drain sends) or `delete` (kubectl delete pod).",
    )


class RefusalSerializer(serializers.Serializer):
    protector = serializers.CharField(help_text="namespace/name of the refusing PodProtector")
    code = serializers.IntegerField(help_text="429: too few replicas; 409: buffer full")
    message = serializers.CharField(help_text="Exactly the webhook's message.")


class StepSerializer(serializers.Serializer):
    protector = serializers.CharField()
    result = serializers.CharField(
        help_text="Ok, AlreadyAdmitted, AlreadyUnhealthy, Retry, Denied or NotYetAvailable"
    )


class PodPlanSerializer(serializers.Serializer):
    namespace = serializers.CharField()
    name = serializers.CharField()
    node = serializers.CharField(allow_null=True)
    verdict = serializers.ChoiceField(choices=[v.value for v in Verdict])
    reason = serializers.CharField()
    refusal = RefusalSerializer(allow_null=True)
    contended = serializers.BooleanField(
        help_text="Its protector admits only some of this plan's pods: which ones go depends "
        "on the order the requests arrive in."
    )
    protectors = StepSerializer(many=True, help_text="Each PodProtector asked, in order.")
    drain_notes = serializers.ListField(
        child=serializers.CharField(), help_text="What kubectl drain must be told to evict it."
    )


class ProtectorPlanSerializer(serializers.Serializer):
    namespace = serializers.CharField()
    name = serializers.CharField()
    min_available = serializers.IntegerField()
    aggregated_available = serializers.IntegerField()
    estimated_available = serializers.IntegerField()
    unconfirmed = serializers.IntegerField(help_text="Admitted deletions not yet confirmed.")
    requested = serializers.IntegerField(help_text="Pods of this plan that reach it.")
    admitted = serializers.IntegerField()
    refused = serializers.IntegerField()
    can_go_now = serializers.IntegerField(
        help_text="How many of its pods could go at once now, whatever this plan holds."
    )


class SelectionSerializer(serializers.Serializer):
    node = serializers.CharField(allow_null=True)
    selector = serializers.CharField(allow_null=True)
    namespace = serializers.CharField(allow_null=True)
    pods = PodRefSerializer(many=True)


class PlanSerializer(serializers.Serializer):
    cell = serializers.CharField()
    operation = serializers.ChoiceField(choices=list(OPERATIONS))
    health_criterion = serializers.CharField(allow_null=True)
    planned_at = serializers.DateTimeField()
    selection = SelectionSerializer(allow_null=True)
    blocked = serializers.BooleanField(help_text="Some pod would be refused.")
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="Per verdict.")
    notes = serializers.ListField(child=serializers.CharField())
    pods = PodPlanSerializer(many=True)
    protectors = ProtectorPlanSerializer(many=True)
