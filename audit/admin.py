"""The audit log in Django admin: filterable and searchable, never editable."""

from django.contrib import admin

from audit.models import AuditRecord


@admin.register(AuditRecord)
class AuditRecordAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "username",
        "action",
        "target",
        "dry_run",
        "outcome",
        "message",
    )
    list_filter = ("action", "outcome", "dry_run", "created_at", "username")
    search_fields = ("username", "target", "reason", "message")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in AuditRecord._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
