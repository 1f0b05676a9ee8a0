"""The drain planner through the site: the REST endpoint (auth, 400s, 404s, 502, 503, schema),
the console page and ``manage.py plan-drain``, over the fake clusters. Nothing may be written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from site_fakes import install_cache, protector, webhook_configuration

from console.planning import NODES
from protectors.kube.client import PODPROTECTORS, PODS, VALIDATING_WEBHOOKS

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]
URL = "/api/v1/cells/{}/plan-deletion/"
DENIED = "PodProtector ns-1/web reports too few available replicas to admit pod deletion"
SELF_EXCLUSION = {
    "matchExpressions": [
        {"key": "app.kubernetes.io/part-of", "operator": "NotIn", "values": ["podseidon"]}
    ]
}


def _pod(name: str, app: str, node: str, *, ready: bool = True) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "namespace": "ns-1",
            "name": name,
            "labels": {"app": app},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x", "controller": True}
            ],
        },
        "spec": {"nodeName": node, "containers": [{"name": "c"}]},
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                },
            ],
        },
    }


@pytest.fixture
def world(fakes):
    """ns-1/web needs 2 of its 3 available pods; node-1 holds two of them, an unprotected pod
    and a pod that is not ready; node-2 holds the third."""
    objects = [protector("ns-1", "web", required=2, cells={"cell-a": 3})]
    for obj in objects:
        fakes["core"].add(PODPROTECTORS, obj)
    install_cache(objects)
    cell = fakes["cell-a"]
    for node in ("node-1", "node-2"):
        cell.add(NODES, {"metadata": {"name": node}, "spec": {}, "status": {}})
    for pod in (
        _pod("web-0", "web", "node-1"),
        _pod("web-1", "web", "node-1"),
        _pod("web-2", "web", "node-2"),
        _pod("batch-0", "batch", "node-1"),
        _pod("web-sick", "web", "node-1", ready=False),
    ):
        cell.add(PODS, pod)
    cell.add(VALIDATING_WEBHOOKS, webhook_configuration(SELF_EXCLUSION))
    before = {name: len(f.writes) for name, f in fakes.items()}
    yield fakes
    assert {name: len(f.writes) for name, f in fakes.items()} == before, "the planner wrote"


def _verdicts(body: dict) -> dict[str, str]:
    return {p["name"]: p["verdict"] for p in body["pods"]}


def test_a_node_drain_plan(world, viewer_api) -> None:
    response = viewer_api.post(URL.format("cell-a"), {"node": "node-1"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert _verdicts(body) == {
        "batch-0": "unprotected",
        "web-0": "refused",
        "web-1": "admitted",
        "web-sick": "already-unhealthy",
    }
    assert body["blocked"] is True
    refused = next(p for p in body["pods"] if p["verdict"] == "refused")
    assert refused["refusal"] == {"protector": "ns-1/web", "code": 429, "message": DENIED}
    assert refused["contended"] is True
    assert body["protectors"] == [
        {
            "namespace": "ns-1",
            "name": "web",
            "min_available": 2,
            "aggregated_available": 3,
            "estimated_available": 3,
            "unconfirmed": 0,
            "requested": 2,
            "admitted": 1,
            "refused": 1,
            "can_go_now": 1,
        }
    ]
    assert body["counts"]["refused"] == 1 and body["counts"]["admitted"] == 1
    assert body["selection"]["node"] == "node-1"
    assert body["operation"] == "eviction"


def test_selector_pods_and_criterion(world, viewer_api) -> None:
    by_selector = viewer_api.post(
        URL.format("cell-a"), {"selector": "app=web", "namespace": "ns-1"}, format="json"
    ).json()
    assert set(_verdicts(by_selector)) == {"web-0", "web-1", "web-2", "web-sick"}
    pods = [{"namespace": "ns-1", "name": "web-2"}, {"namespace": "ns-1", "name": "no"}]
    named = viewer_api.post(URL.format("cell-a"), {"pods": pods}, format="json").json()
    assert _verdicts(named) == {"web-2": "admitted", "no": "not-found"}
    assert named["health_criterion"] is None
    # The aggregation counts no ready replicas (the fake writes none): at Ready, none may go.
    ready = viewer_api.post(
        URL.format("cell-a"), {"pods": pods, "healthCriterion": "Ready"}, format="json"
    ).json()
    assert _verdicts(ready) == {"web-2": "refused", "no": "not-found"}
    assert ready["pods"][0]["refusal"]["message"] == DENIED.replace("available", "ready")
    assert ready["health_criterion"] == "Ready"


def test_the_webhook_disabled_in_the_cell_judges_nothing(world, viewer_api) -> None:
    from webhook.services import NEVER_MATCHING_SELECTOR

    world["cell-a"].add(VALIDATING_WEBHOOKS, webhook_configuration(NEVER_MATCHING_SELECTOR))
    body = viewer_api.post(URL.format("cell-a"), {"node": "node-1"}, format="json").json()
    assert set(_verdicts(body).values()) == {"not-judged"}
    assert body["blocked"] is False


def test_a_viewer_token_is_enough(world, users, anon) -> None:
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=users["viewer"]).key
    anon.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = anon.post(URL.format("cell-a"), {"node": "node-2"}, format="json")
    assert response.status_code == 200
    assert _verdicts(response.json()) == {"web-2": "admitted"}


def test_authentication_is_required(world, anon) -> None:
    response = anon.post(URL.format("cell-a"), {"node": "node-1"}, format="json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


BAD_BODIES = [
    ("empty", {}, "node"),
    ("pods-and-node", {"node": "node-1", "pods": [{"namespace": "a", "name": "b"}]}, "pods"),
    ("bad-selector", {"selector": "app in (web"}, "selector"),
    ("bad-node-name", {"node": "Node_1"}, "node"),
    ("bad-namespace", {"node": "node-1", "namespace": "NS!"}, "namespace"),
    ("bad-pod-name", {"pods": [{"namespace": "ns-1", "name": "a/b"}]}, "pods"),
    ("pod-without-name", {"pods": [{"namespace": "ns-1"}]}, "pods"),
    ("bad-criterion", {"node": "node-1", "healthCriterion": "Happy"}, "healthCriterion"),
    (
        "criterion-on-delete",
        {"node": "node-1", "healthCriterion": "Ready", "operation": "delete"},
        "healthCriterion",
    ),
    ("bad-operation", {"node": "node-1", "operation": "nuke"}, "operation"),
]


@pytest.mark.parametrize(
    ("body", "field"), [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES]
)
def test_bad_input_is_a_clear_400(world, viewer_api, body, field) -> None:
    response = viewer_api.post(URL.format("cell-a"), body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["details"], error
    assert error["message"]


@pytest.mark.parametrize(
    ("cell", "body", "code"),
    [
        ("cell-x", {"node": "node-1"}, "unknown_cell"),
        ("cell-a", {"node": "node-9"}, "unknown_node"),
    ],
)
def test_unknown_cell_or_node_is_a_404(world, viewer_api, cell, body, code) -> None:
    response = viewer_api.post(URL.format(cell), body, format="json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == code


def test_a_body_that_is_not_json_is_a_415(world, viewer_api) -> None:
    response = viewer_api.post(URL.format("cell-a"), {"node": "node-1"}, format="multipart")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_an_unreachable_cell_is_a_502(world, viewer_api) -> None:
    response = viewer_api.post(URL.format("cell-dead"), {"node": "node-1"}, format="json")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "cluster_unreachable"


def test_an_unsynced_cache_is_a_503(world, viewer_api) -> None:
    install_cache([], synced=False)
    response = viewer_api.post(URL.format("cell-a"), {"node": "node-1"}, format="json")
    assert response.status_code == 503
    assert response["Retry-After"]


def test_the_schema_documents_the_operation(world, viewer_api) -> None:
    schema = viewer_api.get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/v1/cells/{cell_id}/plan-deletion/"]["post"]
    assert operation["operationId"] == "cells_plan_deletion"
    assert set(operation["responses"]) == {"200", "400", "401", "404", "415", "502", "503"}
    assert set(operation["requestBody"]["content"]) == {"application/json"}
    request = schema["components"]["schemas"]["PlanRequestRequest"]["properties"]
    assert {"node", "selector", "pods", "healthCriterion"} <= set(request)


# -- the console page ---------------------------------------------------------------------------


def test_the_page_needs_a_login(client: Client) -> None:
    response = client.get("/plan-drain/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_the_page_lists_nodes_and_shows_verdicts(world, client: Client) -> None:
    client.force_login(User.objects.create_user("vic", password="pw-123456789"))
    picker = client.get("/plan-drain/").content.decode()
    assert 'value="cell-a/node-1"' in picker and 'value="cell-a/node-2"' in picker
    assert "Plan a drain" in picker
    page = client.get("/plan-drain/", {"target": "cell-a/node-1"}).content.decode()
    assert "Blocked: 1 pod would be refused now." in page
    assert DENIED in page
    assert "ns-1/batch-0" in page and "unprotected" in page
    bad = client.get("/plan-drain/", {"target": "cell-a/node-1", "selector": "a in ("})
    assert "Cannot plan: selector:" in bad.content.decode()


# -- manage.py plan-drain -----------------------------------------------------------------------


def test_the_command_prints_the_plan(world, capsys) -> None:
    call_command("plan-drain", "--cell", "cell-a", "--node", "node-1")
    out = capsys.readouterr().out
    assert out.startswith("cell-a/node-1: BLOCKED, 1 pod(s) would be refused now")
    assert "ns-1/web-0" in out and "refused 429 (contended)" in out
    call_command("plan-drain", "--cell", "cell-a", "--node", "node-2", "--json")
    body = json.loads(capsys.readouterr().out)
    assert _verdicts(body) == {"web-2": "admitted"} and body["blocked"] is False


def test_the_command_exit_status_with_check(world) -> None:
    with pytest.raises(SystemExit) as exited:
        call_command("plan-drain", "--cell", "cell-a", "--node", "node-1", "--check")
    assert exited.value.code == 3
    call_command("plan-drain", "--cell", "cell-a", "--node", "node-2", "--check")


def test_the_command_reads_protectors_afresh(world, capsys) -> None:
    # The cache knows nothing; the core cluster does.
    install_cache([])
    call_command("plan-drain", "--cell", "cell-a", "--node", "node-1", "--json")
    assert _verdicts(json.loads(capsys.readouterr().out))["web-0"] == "refused"


def test_the_command_names_bad_input(world) -> None:
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="no node 'node-9'"):
        call_command("plan-drain", "--cell", "cell-a", "--node", "node-9")


# -- roles ----------------------------------------------------------------------------------------


def test_the_webhook_role_does_not_load_the_console() -> None:
    code = (
        "import django, sys\n"
        "django.setup()\n"
        "from django.conf import settings\n"
        "import podseidon_site.urls_webhook, webhook.views\n"
        "print('console' in settings.INSTALLED_APPS, "
        "any(m == 'console' or m.startswith('console.') for m in sys.modules))\n"
    )
    env = {**os.environ, "PODSEIDON_ROLE": "webhook"}
    env["DJANGO_SETTINGS_MODULE"] = "podseidon_site.settings.test"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_nothing_below_the_console_imports_it() -> None:
    import ast

    offenders = []
    for package in ("protectors", "webhook", "workers", "audit"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                if any(n == "console" or n.startswith("console.") for n in names):
                    offenders.append(str(path.relative_to(REPO)))
    assert offenders == []
