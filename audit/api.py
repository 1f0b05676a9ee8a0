"""The audit log over REST (`/api/v1/audit/`): list with filters, and one record."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics

from audit.models import Action, AuditRecord, Outcome
from audit.serializers import AuditRecordSerializer
from podseidon_site.api import StandardPagination


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


@extend_schema_view(get=extend_schema(summary="The audit log, newest first", tags=["audit"]))
class AuditList(generics.ListAPIView):
    queryset = AuditRecord.objects.all()
    serializer_class = AuditRecordSerializer
    filterset_class = AuditFilter
    pagination_class = StandardPagination


@extend_schema_view(get=extend_schema(summary="One audit record", tags=["audit"]))
class AuditDetail(generics.RetrieveAPIView):
    queryset = AuditRecord.objects.all()
    serializer_class = AuditRecordSerializer
