"""The web tier serves the admin's and the API docs' assets itself (WhiteNoise)."""

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
