"""The three roles, on Django's own users, groups and permissions.

- **viewer**: any authenticated user sees everything (console pages and every GET of the API).
  The ``viewer`` group names the role explicitly; membership grants nothing more.
- **operator**: members of the ``operator`` group (or anyone granted ``audit.operate``) may act.
- **admin**: superusers; they manage users, groups and tokens in Django admin and may act.

Both groups are created by a data migration (``audit/migrations/0002_roles.py``).
"""

from __future__ import annotations

from typing import Any

OPERATE_PERMISSION = "audit.operate"
VIEWER_GROUP = "viewer"
OPERATOR_GROUP = "operator"


def can_operate(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.has_perm(OPERATE_PERMISSION))
