"""Fixtures for the browser tests: the real processes, and Chromium driving the console.

- The sandbox clusters (core, cell-a, cell-b) of the integration tests.
- PodProtectors with their cells' aggregation written as the aggregator would, and pods in the
  cells that one of them guards.
- The real webhook (gunicorn, TLS) registered in both cells by ``manage.py webhookconfig``.
- The console: the web role under gunicorn with the production settings (tests/browser/web_tier.py)
  and a user per role.
- Debian's Chromium through Playwright (its own browser download cannot work here); every page a
  test visits is kept as a full-page screenshot in test-artifacts/screenshots/.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client as k8s
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.integration import conftest as integration
from tests.integration.conftest import Clusters
from tests.integration.webhook_env import (
    Webhook,
    create_protector,
    install_crd,
    ready_pod,
    register,
    start_webhook,
    unregister,
    write_aggregation,
)

from .web_tier import REPO, WebTier, start_web_tier

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELLS = ("cell-a", "cell-b")
# Listed and filtered in the table; removal of cell-a is scoped to their namespace.
TABLE_PROTECTORS = ("web-frontend", "web-backend", "payments-api", "batch-reports")
# Guards GUARDED_PODS pods in each cell with a minimum of all of them: the webhook refuses
# every deletion of one, unless it is disabled in that cell.
GUARDED = "guarded"
GUARDED_PODS = 2

expect.set_options(timeout=15_000)

# The integration tests' session fixture: the sandbox clusters (or PODSEIDON_TEST_KUBECONFIGS).
clusters = integration.clusters


@dataclass
class Console:
    clusters: Clusters
    web: WebTier
    webhook: Webhook
    table_namespace: str
    guarded_namespace: str
    passwords: dict[str, str]
    redis_prefix: str = ""

    def pods(self, cell: str) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.clusters.api(cell))


def _namespace(clusters: Clusters, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    for cluster in ("core", *CELLS):
        k8s.CoreV1Api(clusters.api(cluster)).create_namespace({"metadata": {"name": name}})
    return name


def _protect(clusters: Clusters, namespace: str, name: str, minimum: int) -> None:
    core = clusters.api("core")
    create_protector(core, namespace, name, minimum, {"app": name})
    write_aggregation(core, namespace, name, dict.fromkeys(CELLS, GUARDED_PODS))


# Package scope: torn down once tests/browser is done. Playwright's sync API keeps an event loop
# running in the main thread while it is open, and later tests call asyncio.run().
@pytest.fixture(scope="package")
def console(clusters: Clusters, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    if not clusters.is_sandbox:
        pytest.skip("a real kube-apiserver cannot call a webhook on this machine's loopback")
    install_crd(clusters.api("core"))
    table_namespace = _namespace(clusters, "browser")
    guarded_namespace = _namespace(clusters, "guarded")
    for name in TABLE_PROTECTORS:
        _protect(clusters, table_namespace, name, 1)
    for cell in CELLS:
        pods = k8s.CoreV1Api(clusters.api(cell))
        for i in range(GUARDED_PODS):
            ready_pod(pods, guarded_namespace, f"{GUARDED}-{cell}-{i}", {"app": GUARDED})
    _protect(clusters, guarded_namespace, GUARDED, GUARDED_PODS * len(CELLS))

    work = tmp_path_factory.mktemp("browser")
    # The webhook writes its admission history to the real Redis, under this run's prefix, which
    # the console reads (the charts, and the refusal log of a PodProtector).
    redis_prefix = f"browser-test-{secrets.token_hex(4)}"
    # Started after the protectors exist: once /readyz answers, its cache holds them.
    webhook = start_webhook(
        work,
        clusters.kubeconfigs,
        tls_dir=work / "tls",
        workers=1,
        extra_env={"REDIS_URL": REDIS_URL, "PODSEIDON_REDIS_PREFIX": redis_prefix},
    )
    web: WebTier | None = None
    try:
        for cell in CELLS:
            register(webhook, cell)
        web = start_web_tier(
            work,
            {
                "core": {"kubeconfig": str(clusters.kubeconfigs["core"])},
                "cells": [{"id": c, "kubeconfig": str(clusters.kubeconfigs[c])} for c in CELLS],
                "webhook": {"url": webhook.url},
            },
            redis_prefix=redis_prefix,
        )
        passwords = {role: secrets.token_urlsafe(12) for role in ("operator", "viewer")}
        web.create_users({f"{role}-user": (pw, role) for role, pw in passwords.items()})
        yield Console(
            clusters, web, webhook, table_namespace, guarded_namespace, passwords, redis_prefix
        )
    finally:
        for cell in CELLS:
            unregister(clusters.api(cell))
        web_code = web.stop() if web is not None else 0
        webhook_code = webhook.stop()
        for namespace in (table_namespace, guarded_namespace):
            for cluster in ("core", *CELLS):
                with contextlib.suppress(k8s.ApiException):
                    k8s.CoreV1Api(clusters.api(cluster)).delete_namespace(namespace)
        assert web_code == 0, f"console exited with {web_code}; see {web.log if web else '-'}"
        assert webhook_code == 0, f"webhook exited with {webhook_code}; see {webhook.log}"


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/ensure-chromium.sh` (as root)")
    # Screenshots of an earlier run would pass for this run's.
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def shoot(request: pytest.FixtureRequest) -> Callable[[Page, str], Path]:
    """Keep a full-page screenshot of what the page shows now, named after the test and step."""
    test = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name.removeprefix("test_"))
    taken = 0

    def shoot(page: Page, step: str) -> Path:
        nonlocal taken
        taken += 1
        path = SCREENSHOTS / f"{test}-{taken:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 0, f"empty screenshot {path}"
        return path

    return shoot


def log_in(page: Page, console: Console, role: str) -> None:
    page.goto(console.web.url + "/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    page.get_by_label("Username").fill(f"{role}-user")
    page.get_by_label("Password").fill(console.passwords[role])
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()


def _page_as(browser: Browser, console: Console, role: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    log_in(page, console, role)
    yield page
    context.close()


@pytest.fixture
def operator_page(browser: Browser, console: Console) -> Iterator[Page]:
    yield from _page_as(browser, console, "operator")


@pytest.fixture
def viewer_page(browser: Browser, console: Console) -> Iterator[Page]:
    yield from _page_as(browser, console, "viewer")


@pytest.fixture
def anonymous_page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    yield context.new_page()
    context.close()
