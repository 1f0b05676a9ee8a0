"""Fixtures for the REST API tests (helpers in site_fakes.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from db_threads import operation_threads  # noqa: F401  (a fixture)
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient
from site_fakes import FakeCluster, api_as, closed_port, install_workloads, kubeconfig_at

from console import cache as cache_module
from podseidon_site.config import parse_config
from protectors import clusters


@pytest.fixture
def podseidon(settings, tmp_path):
    """core, cell-a and cell-b (fakes); cell-dead points at a closed port."""
    dead = kubeconfig_at(tmp_path / "dead.kubeconfig", closed_port())
    settings.PODSEIDON = parse_config(
        {
            "core": {"kubeconfig": str(tmp_path / "core.kubeconfig")},
            "cells": [
                {"id": "cell-a", "kubeconfig": str(tmp_path / "a.kubeconfig")},
                {"id": "cell-b", "kubeconfig": str(tmp_path / "b.kubeconfig")},
                {"id": "cell-dead", "kubeconfig": str(dead)},
            ],
            "generator": {"protection_selectors": {"deployments.apps": "protect=true"}},
        }
    )
    settings.PODSEIDON_REDIS_PREFIX = f"site-test-{uuid.uuid4().hex[:8]}"
    settings.PODSEIDON_PROBE_TIMEOUT_SECONDS = 1.0
    settings.PODSEIDON_ACTION_TIMEOUT_SECONDS = 2.0
    # Nothing drops a removed cell from the fakes' status unless a test runs the fake generator
    # (FakeCluster.generator): removals end as partial quickly instead of waiting a minute.
    settings.PODSEIDON_REMOVAL_CONFIRM_SECONDS = 0.3
    clusters.reset()
    yield settings.PODSEIDON
    clusters.reset()
    cache_module.stop_cache()


@pytest.fixture
def fakes(podseidon, monkeypatch) -> dict[str, FakeCluster]:
    made = {name: FakeCluster(name) for name in ("core", "cell-a", "cell-b")}
    real = clusters._build_client

    def build(name, access, timeout):
        return made[name] if name in made else real(name, access, timeout)

    monkeypatch.setattr(clusters, "_build_client", build)
    # The fakes cannot watch: the console's source-workload cache starts empty and synced
    # (tests about dangling protectors install their own workloads).
    install_workloads({"deployments.apps": []})
    return made


@pytest.fixture
def users(db) -> dict[str, User]:
    viewer = User.objects.create_user("vera", password="pw-vera-123456")
    viewer.groups.add(Group.objects.get(name="viewer"))
    operator = User.objects.create_user("otto", password="pw-otto-123456")
    operator.groups.add(Group.objects.get(name="operator"))
    admin = User.objects.create_superuser("ada", password="pw-ada-123456")
    return {"viewer": viewer, "operator": operator, "admin": admin}


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


@pytest.fixture
def viewer_api(users) -> APIClient:
    return api_as(users["viewer"])


@pytest.fixture
def operator_api(users) -> APIClient:
    return api_as(users["operator"])


@pytest.fixture(autouse=True)
def _no_leftover_cache() -> Iterator[None]:
    yield
    cache_module.stop_cache()
