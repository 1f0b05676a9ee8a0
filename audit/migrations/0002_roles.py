"""Create the `viewer` and `operator` groups; operators get `audit.operate`.

Permissions are normally created after all migrations (post_migrate), so this migration creates
the two it needs itself; the post_migrate pass then finds them and leaves them alone.
"""

from django.db import migrations

PERMISSIONS = {
    "operate": "Can act on the clusters: remove cells, switch the webhook, pause controllers",
    "view_auditrecord": "Can view audit record",
}


def create_roles(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    content_type, _ = ContentType.objects.get_or_create(app_label="audit", model="auditrecord")
    perms = {}
    for codename, name in PERMISSIONS.items():
        perms[codename], _ = Permission.objects.get_or_create(
            codename=codename, content_type=content_type, defaults={"name": name}
        )
    viewer, _ = Group.objects.get_or_create(name="viewer")
    viewer.permissions.add(perms["view_auditrecord"])
    operator, _ = Group.objects.get_or_create(name="operator")
    operator.permissions.add(perms["operate"], perms["view_auditrecord"])


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["viewer", "operator"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
