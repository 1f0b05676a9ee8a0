"""The audit log over REST (`/api/v1/audit/`): list with filters, and one record; and the
tracked operations (`/api/v1/operations/`) whose progress clients poll."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics

from audit import operations
from audit.models import Action, AuditRecord, Operation, OperationState, Outcome
from audit.serializers import AuditRecordSerializer, OperationSerializer
from podseidon_site.api import StandardPagination, errors


class AuditFilter(django_filters.FilterSet):
    user = django_filters.CharFilter(field_name="username", help_text="Username (exact).")
    action = django_filters.ChoiceFilter(choices=Action.choices)
    target = django_filters.CharFilter(lookup_expr="icontains", help_text="Target contains.")
    outcome = django_filters.ChoiceFilter(choices=Outcome.choices)
    dry_run = django_filters.BooleanFilter()
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditRecord
        fields = ["user", "action", "target", "outcome", "dry_run", "since", "until"]


@extend_schema_view(
    get=extend_schema(
        summary="The audit log, newest first",
        responses={200: AuditRecordSerializer(many=True), **errors(400, 401, 404)},
        tags=["audit"],
    )
)
class AuditList(generics.ListAPIView):
    queryset = AuditRecord.objects.all()
    serializer_class = AuditRecordSerializer
    filterset_class = AuditFilter
    pagination_class = StandardPagination


@extend_schema_view(
    get=extend_schema(
        summary="One audit record",
        responses={200: AuditRecordSerializer, **errors(401, 404)},
        tags=["audit"],
    )
)
class AuditDetail(generics.RetrieveAPIView):
    queryset = AuditRecord.objects.all()
    serializer_class = AuditRecordSerializer


class OperationFilter(django_filters.FilterSet):
    action = django_filters.ChoiceFilter(choices=Action.choices)
    state = django_filters.ChoiceFilter(choices=OperationState.choices)
    target = django_filters.CharFilter(lookup_expr="icontains", help_text="Target contains.")

    class Meta:
        model = Operation
        fields = ["action", "state", "target"]


class _ExpiringStale:
    """Reading operations first ends those whose web process died (see audit.operations)."""

    queryset = Operation.objects.all()

    def get_queryset(self):
        if not getattr(self, "swagger_fake_view", False):  # not while building the schema
            operations.expire_stale()
        return super().get_queryset()


@extend_schema_view(
    get=extend_schema(
        summary="Tracked operations (long actions), newest first",
        responses={200: OperationSerializer(many=True), **errors(400, 401, 404)},
        tags=["audit"],
    )
)
class OperationList(_ExpiringStale, generics.ListAPIView):
    serializer_class = OperationSerializer
    filterset_class = OperationFilter
    pagination_class = StandardPagination


@extend_schema_view(
    get=extend_schema(
        summary="One tracked operation: progress, outcome, audit id",
        responses={200: OperationSerializer, **errors(401, 404)},
        tags=["audit"],
    )
)
class OperationDetail(_ExpiringStale, generics.RetrieveAPIView):
    serializer_class = OperationSerializer
