"""Request and response shapes of the PodProtector and cell endpoints."""

from __future__ import annotations

from rest_framework import serializers

from console.cache import SORT_KEYS
from podseidon_site.api import DryRunActionRequestSerializer
from workers.serializers import ControllerSerializer

SORT_CHOICES = [k for key in SORT_KEYS for k in (key, f"-{key}")]


class ProtectorQuerySerializer(serializers.Serializer):
    namespace = serializers.CharField(required=False, help_text="Exact namespace.")
    name = serializers.CharField(required=False, help_text="Name contains (case-insensitive).")
    source_kind = serializers.CharField(required=False, help_text="Workload kind, e.g. Deployment.")
    source_name = serializers.CharField(required=False, help_text="Workload name (exact).")
    at_risk = serializers.BooleanField(
        required=False, allow_null=True, default=None, help_text="Estimated ≤ minAvailable."
    )
    cell = serializers.CharField(required=False, help_text="Has this cell in its status.")
    sort = serializers.ChoiceField(
        choices=SORT_CHOICES, default="namespace", help_text="A column; prefix '-' to reverse."
    )
    page = serializers.IntegerField(min_value=1, default=1)
    page_size = serializers.IntegerField(min_value=1, max_value=500, default=50)


class CellNumbersSerializer(serializers.Serializer):
    cell_id = serializers.CharField()
    total = serializers.IntegerField()
    available = serializers.IntegerField()
    ready = serializers.IntegerField()
    scheduled = serializers.IntegerField()
    running = serializers.IntegerField()
    buckets = serializers.IntegerField(help_text="Admitted deletions not yet confirmed.")
    last_event_time = serializers.CharField(allow_null=True)


class ProtectorRowSerializer(serializers.Serializer):
    namespace = serializers.CharField()
    name = serializers.CharField()
    source_kind = serializers.CharField()
    source_name = serializers.CharField()
    required = serializers.IntegerField(help_text="spec.minAvailable")
    aggregated = serializers.IntegerField(help_text="status.summary.aggregatedAvailableReplicas")
    estimated = serializers.IntegerField(help_text="status.summary.estimatedAvailableReplicas")
    total = serializers.IntegerField(help_text="status.summary.totalReplicas")
    bucket_lag = serializers.IntegerField(
        allow_null=True, help_text="status.summary.maxLatencyMillis"
    )
    at_risk = serializers.BooleanField()
    headroom = serializers.IntegerField(
        help_text="estimated - required: deletions that could still be admitted now."
    )
    cells = CellNumbersSerializer(many=True)
    pending_removal = serializers.ListField(child=serializers.CharField())
    terminating = serializers.BooleanField()
    created = serializers.CharField(allow_null=True)


class ProtectorPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    pages = serializers.IntegerField()
    results = ProtectorRowSerializer(many=True)


class ProtectorDetailSerializer(serializers.Serializer):
    row = ProtectorRowSerializer()
    metadata = serializers.DictField()
    spec = serializers.DictField()
    status = serializers.DictField(help_text="Every cell's aggregation and admission buckets.")
    source = serializers.DictField(help_text="The workload it was generated from (one GET).")
    events = serializers.DictField(help_text="Recent events: items, and error if listing failed.")


class ReachabilitySerializer(serializers.Serializer):
    reachable = serializers.BooleanField()
    version = serializers.CharField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    checked_at = serializers.FloatField()
    latency_ms = serializers.FloatField(allow_null=True)


class CellTotalsSerializer(serializers.Serializer):
    protectors = serializers.IntegerField()
    total = serializers.IntegerField()
    available = serializers.IntegerField()
    ready = serializers.IntegerField()
    scheduled = serializers.IntegerField()
    running = serializers.IntegerField()
    buckets = serializers.IntegerField()


class CellSerializer(serializers.Serializer):
    id = serializers.CharField()
    configured = serializers.BooleanField(
        help_text="False for a cell that is only left in some PodProtector's status."
    )
    reachability = ReachabilitySerializer(allow_null=True)
    totals = CellTotalsSerializer(allow_null=True)
    pending_removal = serializers.IntegerField(
        help_text="PodProtectors whose remove-cell-once annotation names this cell."
    )
    aggregator = ControllerSerializer(allow_null=True)


class CellListSerializer(serializers.Serializer):
    cells = CellSerializer(many=True)
    cache_synced = serializers.BooleanField()
    cache_error = serializers.CharField(allow_null=True)
    redis_error = serializers.CharField(allow_null=True)


class RemoveCellRequestSerializer(DryRunActionRequestSerializer):
    namespace = serializers.CharField(
        required=False, allow_blank=True, help_text="Only PodProtectors in this namespace."
    )
    label_selector = serializers.CharField(
        required=False, allow_blank=True, help_text="Only PodProtectors matching this selector."
    )
    names = serializers.ListField(
        child=serializers.CharField(max_length=253),
        required=False,
        max_length=10000,
        help_text="Only PodProtectors with these names.",
    )
    pause_aggregator = serializers.BooleanField(
        default=False,
        help_text="Pause the cell's aggregator first (its own audit record). An aggregator "
        "that keeps running writes the cell's counts back on its next pod event, undoing "
        "the removal.",
    )


class WebhookCellSerializer(serializers.Serializer):
    cell = serializers.CharField()
    state = serializers.CharField(help_text="As in /api/v1/webhook/, or unknown.")
    failure_policy = serializers.CharField(allow_null=True, required=False)
    dry_run = serializers.BooleanField(required=False)
    error = serializers.CharField(allow_null=True, required=False)


class OverviewCellSerializer(serializers.Serializer):
    id = serializers.CharField()
    reachability = ReachabilitySerializer(allow_null=True)
    aggregator = ControllerSerializer(allow_null=True)
    webhook = WebhookCellSerializer()


class OverviewCountsSerializer(serializers.Serializer):
    protectors = serializers.IntegerField()
    at_risk = serializers.IntegerField(help_text="Estimated ≤ minAvailable.")
    terminating = serializers.IntegerField()
    pending_removal = serializers.IntegerField(help_text="With a remove-cell-once annotation.")
    dangling = serializers.IntegerField(
        help_text="Generated PodProtectors whose source workload no longer exists."
    )
    dangling_protectors = serializers.ListField(
        child=serializers.CharField(), help_text="namespace/name of the first 20 dangling."
    )
    dangling_unchecked = serializers.IntegerField(
        help_text="From workload kinds the generator does not watch: not checked."
    )
    dangling_complete = serializers.BooleanField(
        help_text="False while the workload caches are still listing."
    )


class MetricsSourceSerializer(serializers.Serializer):
    url = serializers.CharField(help_text="Without credentials.")
    up = serializers.BooleanField(help_text="Answered the latest scrape.")
    error = serializers.CharField(allow_null=True)
    last_success_age_seconds = serializers.IntegerField(allow_null=True)


class RejectionWindowSerializer(serializers.Serializer):
    minutes = serializers.IntegerField()
    covered_minutes = serializers.FloatField(
        allow_null=True, help_text="How much of the window the in-memory history spans."
    )
    rejected = serializers.DictField(
        child=serializers.IntegerField(allow_null=True),
        help_text="Per cell; null when no source answered or the history is too short.",
    )


class RejectionsSerializer(serializers.Serializer):
    configured = serializers.BooleanField(help_text="console.webhook_metrics_urls is set.")
    scraped = serializers.BooleanField()
    complete = serializers.BooleanField(help_text="Every source answered the latest scrape.")
    since_start = serializers.DictField(
        child=serializers.IntegerField(allow_null=True),
        help_text="Per cell, since each webhook process started (null: no source answered).",
    )
    sources = MetricsSourceSerializer(many=True)
    windows = RejectionWindowSerializer(many=True)


class CellHistorySerializer(serializers.Serializer):
    id = serializers.CharField()
    admitted = serializers.ListField(
        child=serializers.IntegerField(), help_text="Per minute, oldest first (60 values)."
    )
    refused = serializers.ListField(child=serializers.IntegerField())
    admitted_total = serializers.IntegerField()
    refused_total = serializers.IntegerField()
    refused_last_5 = serializers.IntegerField(help_text="Refused in the last 5 minutes.")


class AdmissionHistorySerializer(serializers.Serializer):
    source = serializers.ChoiceField(
        choices=["redis", "prometheus"],
        help_text="prometheus when console.prometheus_url is set, else the webhook's Redis log.",
    )
    error = serializers.CharField(
        allow_null=True, help_text="Why there is no history (the source did not answer)."
    )
    as_of = serializers.FloatField(help_text="Unix time of the read.")
    minutes = serializers.ListField(
        child=serializers.IntegerField(), help_text="Unix time of each minute's start."
    )
    cells = CellHistorySerializer(many=True)


class OverviewSerializer(serializers.Serializer):
    core = ReachabilitySerializer(allow_null=True)
    cells = OverviewCellSerializer(many=True)
    generator = ControllerSerializer(allow_null=True)
    monitor = ControllerSerializer(allow_null=True)
    redis_error = serializers.CharField(allow_null=True)
    counts = OverviewCountsSerializer(allow_null=True, help_text="Null while the cache lists.")
    cache_error = serializers.CharField(allow_null=True)
    webhook_dry_run = serializers.BooleanField()
    rejections = RejectionsSerializer()
    history = AdmissionHistorySerializer(
        help_text="Admitted and refused deletions per cell and minute over the last hour."
    )
    as_of = serializers.FloatField(help_text="Unix time the overview was read.")
