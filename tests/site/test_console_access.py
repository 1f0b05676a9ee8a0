"""Every console page needs a login; probes do not."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db


def test_healthz_needs_no_login(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok\n"


@pytest.mark.parametrize("path", ["/", "/admin/"])
def test_pages_redirect_anonymous_users_to_login(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_overview_shows_cells_without_kubeconfig_paths(client: Client, settings) -> None:
    from podseidon_site.config import parse_config

    settings.PODSEIDON = parse_config(
        {
            "core": {"kubeconfig": "/secret/place/core.kubeconfig"},
            "cells": [{"id": "cell-a", "kubeconfig": "/secret/place/a.kubeconfig"}],
            "webhook": {"dry_run": True},
        }
    )
    user = User.objects.create_user("viewer", password="pw-123456789")
    client.force_login(user)
    response = client.get("/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "cell-a" in body
    assert "dry run" in body
    assert "/secret/place" not in body


def test_ensure_admin_creates_a_superuser_once(capsys) -> None:
    from django.core.management import call_command

    call_command("ensure_admin", "--username", "ops")
    first = capsys.readouterr().out
    assert "password: " in first
    call_command("ensure_admin", "--username", "ops")
    assert "password unchanged" in capsys.readouterr().out
    assert User.objects.get(username="ops").is_superuser
