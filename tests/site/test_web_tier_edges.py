"""Edges of the web tier: static assets (WhiteNoise), and the API's JSON error shape for what
no view handles (unknown paths, bodies over Django's limits)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    [
        "/static/admin/css/base.css",
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
    ],
)
def test_assets_are_served(client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert b"".join(response.streaming_content)


def test_unknown_asset_is_404(client) -> None:
    assert client.get("/static/admin/css/no-such-file.css").status_code == 404


def test_unknown_api_path_answers_the_api_error_shape(client) -> None:
    for path in ("/api/v1/audit/not-a-number/", "/api/v1/no-such-thing/", "/api/v2/"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == "not_found"


def test_a_form_body_is_a_json_415(client, django_user_model, settings) -> None:
    from rest_framework.authtoken.models import Token

    user = django_user_model.objects.create_superuser("form-bomb", password="x")
    token = Token.objects.create(user=user).key
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    response = client.post(
        "/api/v1/cells/cell-a/aggregator/pause/",
        {f"f{i}": "x" for i in range(50)},
        HTTP_AUTHORIZATION=f"Token {token}",
    )
    # The API parses JSON only; a form (even one over Django's field limit) is refused in the
    # API's own error shape, not with Django's HTML page.
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_too_many_query_parameters_is_a_json_400(client, django_user_model, settings) -> None:
    from rest_framework.authtoken.models import Token

    user = django_user_model.objects.create_superuser("query-bomb", password="x")
    token = Token.objects.create(user=user).key
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    query = "&".join(f"f{i}=x" for i in range(50))
    response = client.get(f"/api/v1/audit/?{query}", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_api_responses_never_name_a_configured_file(podseidon, fakes, users, monkeypatch) -> None:
    from rest_framework.test import APIClient

    from console import services
    from protectors.kube.client import KubeError

    # Whatever a client library puts into an error, the configured path does not go out.
    kubeconfig = podseidon.core.kubeconfig

    def failing_overview(**_):
        raise KubeError(0, "Unreachable", f"cannot read {kubeconfig}: permission denied")

    monkeypatch.setattr(services, "overview", failing_overview)
    api = APIClient()
    api.force_authenticate(users["viewer"])
    response = api.get("/api/v1/overview/")
    assert response.status_code == 502
    body = response.content.decode()
    assert kubeconfig not in body
    assert "cannot read <configured file>: permission denied" in body
