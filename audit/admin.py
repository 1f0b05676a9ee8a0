"""The audit log and the tracked operations in Django admin: filterable, never editable."""

from django.contrib import admin

from audit.models import AuditRecord, Operation


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records of what happened: nobody adds, edits or deletes them, not even a superuser."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AuditRecord)
class AuditRecordAdmin(ReadOnlyAdmin):
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


@admin.register(Operation)
class OperationAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "username",
        "action",
        "target",
        "state",
        "done",
        "total",
        "failed",
    )
    list_filter = ("action", "state", "created_at")
    search_fields = ("username", "target", "reason", "message")
    readonly_fields = [f.name for f in Operation._meta.fields]
