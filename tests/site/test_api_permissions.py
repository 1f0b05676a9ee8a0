"""Every API endpoint: anonymous 401 (with WWW-Authenticate), viewer reads but may not act (403),
operator acts; the roles come from the data migration; tokens and CSRF-protected sessions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from site_fakes import (
    api_as,
    finished_operation,
    install_cache,
    protector,
    webhook_configuration,
)

from audit.models import AuditRecord
from protectors.kube.client import PODPROTECTORS, VALIDATING_WEBHOOKS

pytestmark = pytest.mark.django_db

READS = [
    "/api/v1/podprotectors/",
    "/api/v1/podprotectors/ns-1/web/",
    "/api/v1/cells/",
    "/api/v1/webhook/",
    "/api/v1/controllers/",
    "/api/v1/audit/",
    "/api/v1/operations/",
    "/api/schema/",
]
ACTIONS = [
    "/api/v1/cells/cell-a/remove-from-protectors/",
    "/api/v1/cells/cell-a/aggregator/pause/",
    "/api/v1/cells/cell-a/aggregator/resume/",
    "/api/v1/webhook/cell-a/disable/",
    "/api/v1/webhook/cell-a/enable/",
    "/api/v1/webhook/cell-a/restore/",
    "/api/v1/webhook/disable-all/",
    "/api/v1/controllers/generator/pause/",
    "/api/v1/controllers/generator/resume/",
]


@pytest.fixture
def world(fakes, operation_threads):
    objects = [protector("ns-1", "web")]
    for obj in objects:
        fakes["core"].add(PODPROTECTORS, obj)
    install_cache(objects)
    for cell in ("cell-a", "cell-b"):
        fakes[cell].add(VALIDATING_WEBHOOKS, webhook_configuration({"matchLabels": {"x": "y"}}))
    return fakes


@pytest.mark.parametrize("path", [*READS, "/api/v1/audit/1/", "/api/v1/operations/1/"])
def test_anonymous_reads_get_401_with_a_challenge(world, anon: APIClient, path: str) -> None:
    response = anon.get(path, HTTP_ACCEPT="application/json")
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize("path", ACTIONS)
def test_anonymous_actions_get_401(world, anon: APIClient, path: str) -> None:
    response = anon.post(path, {"reason": "x"}, format="json")
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"code", "message", "details"}
    assert AuditRecord.objects.count() == 0


@pytest.mark.parametrize("path", READS)
def test_viewer_reads_everything(world, viewer_api: APIClient, path: str) -> None:
    assert viewer_api.get(path).status_code == 200


@pytest.mark.parametrize("path", ACTIONS)
def test_viewer_may_not_act(world, viewer_api: APIClient, path: str) -> None:
    response = viewer_api.post(path, {"reason": "just looking"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert AuditRecord.objects.count() == 0


@pytest.mark.parametrize("path", ACTIONS)
def test_operator_acts(world, operator_api: APIClient, path: str) -> None:
    world["core"].generator = True  # a removal succeeds once the cell has left the status
    response = operator_api.post(path, {"reason": "incident 42"}, format="json")
    if "remove-from-protectors" in path:  # a tracked operation, audited when it ends
        assert finished_operation(operator_api, response)["state"] == "succeeded"
    else:
        assert response.status_code == 200, response.content
        assert response.json()["outcome"] in ("succeeded", "partial")
    assert AuditRecord.objects.count() == 1


@pytest.mark.parametrize("role", ["operator", "admin"])
def test_operator_group_and_superusers_may_operate(users, role) -> None:
    assert users[role].has_perm("audit.operate")
    assert not users["viewer"].has_perm("audit.operate")


def test_roles_come_from_the_migration(db) -> None:
    operator = Group.objects.get(name="operator")
    assert {p.codename for p in operator.permissions.all()} == {"operate", "view_auditrecord"}
    assert {p.codename for p in Group.objects.get(name="viewer").permissions.all()} == {
        "view_auditrecord"
    }


def test_token_authentication(world, users) -> None:
    token = Token.objects.create(user=users["operator"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get("/api/v1/cells/").status_code == 200
    response = client.post("/api/v1/webhook/cell-a/disable/", {"reason": "token"}, format="json")
    assert response.status_code == 200
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token nope")
    assert bad.get("/api/v1/cells/").status_code == 401


def test_session_actions_need_csrf(world, users) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(users["operator"])
    assert client.get("/api/v1/webhook/").status_code == 200
    response = client.post("/api/v1/webhook/cell-a/disable/", {"reason": "r"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]
    assert AuditRecord.objects.count() == 0


def test_docs_are_served_without_a_cdn(users, client) -> None:
    assert client.get("/api/docs/").status_code == 302  # to the login page
    client.force_login(users["viewer"])
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist" in html
    assert "cdn.jsdelivr" not in html and "unpkg" not in html
    assert client.get("/api/redoc/").status_code == 200
    schema = api_as(users["viewer"]).get("/api/schema/", HTTP_ACCEPT="application/json")
    paths = schema.json()["paths"]
    assert "/api/v1/cells/{cell_id}/remove-from-protectors/" in paths
    assert "/api/v1/webhook/disable-all/" in paths


def test_audit_log_is_read_only_in_admin(users, client) -> None:
    client.force_login(users["admin"])
    assert client.get("/admin/audit/auditrecord/").status_code == 200
    assert client.get("/admin/audit/auditrecord/add/").status_code == 403
    record = AuditRecord.objects.create(
        username="x",
        action="webhook-disable",
        target="webhook/cell-a",
        reason="r",
        outcome="failed",
    )
    page = client.get(f"/admin/audit/auditrecord/{record.pk}/change/")
    assert page.status_code == 200  # a view-only page
    assert b'name="_save"' not in page.content
    assert client.post(f"/admin/audit/auditrecord/{record.pk}/delete/").status_code == 403
