""" "Plan a drain" in headless Chromium: a viewer picks a node of a cell and reads the verdicts;
nothing in the clusters changes."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from kubernetes import client as k8s
from playwright.sync_api import Page, expect

from tests.integration.webhook_env import (
    create_protector,
    pod_on_node,
    read_protector,
    write_aggregation,
)

from .conftest import Console

pytestmark = [pytest.mark.browser, pytest.mark.integration]

Shoot = Callable[[Page, str], Path]
CELL = "cell-a"


@pytest.fixture
def drainable(console: Console) -> Iterator[tuple[str, str]]:
    """A node of cell-a with two pods of `planweb` (which needs 2 of its 3) and a pod nobody
    protects; yields (namespace, node)."""
    ns = f"plan-{uuid.uuid4().hex[:8]}"
    node = f"plan-node-{uuid.uuid4().hex[:6]}"
    core = k8s.CoreV1Api(console.clusters.api("core"))
    cell = console.pods(CELL)
    for api in (core, cell):
        api.create_namespace({"metadata": {"name": ns}})
    cell.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
    try:
        for name in ("planweb-0", "planweb-1"):
            pod_on_node(cell, ns, name, {"app": "planweb"}, node)
        pod_on_node(cell, ns, "batch-0", {"app": "batch"}, node)
        api = console.clusters.api("core")
        create_protector(api, ns, "planweb", 2, {"app": "planweb"})
        write_aggregation(api, ns, "planweb", {CELL: 3})
        yield ns, node
    finally:
        with contextlib.suppress(k8s.ApiException):
            cell.delete_node(node)
        for api in (core, cell):
            with contextlib.suppress(k8s.ApiException):
                api.delete_namespace(ns)


def _wait_for_the_console_cache(page: Page, console: Console, node: str) -> None:
    """The page plans from the console's watch cache: wait until it holds the protector."""
    url = f"{console.web.url}/plan-drain/?{urlencode({'target': f'{CELL}/{node}'})}"
    deadline = time.monotonic() + 15
    while "planweb" not in page.goto(url).text():
        assert time.monotonic() < deadline, "the console's cache never showed the protector"
        time.sleep(0.2)


def test_plan_a_drain(
    viewer_page: Page, console: Console, drainable: tuple[str, str], shoot: Shoot
) -> None:
    ns, node = drainable
    page = viewer_page
    version = read_protector(console.clusters.api("core"), ns, "planweb").resource_version
    _wait_for_the_console_cache(page, console, node)

    page.goto(console.web.url + "/")
    page.get_by_role("navigation").get_by_role("link", name="Plan a drain").click()
    expect(page.get_by_role("heading", name="Plan a drain", level=1)).to_be_visible()
    picker = page.get_by_label("Node")
    expect(picker.locator("optgroup[label='cell-a'] option")).to_contain_text([node])
    picker.select_option(f"{CELL}/{node}")
    page.get_by_label("Only namespace").fill(ns)
    shoot(page, "picker")
    page.get_by_role("button", name="Plan").click()

    expect(page.locator("#plan-answer")).to_have_text("Blocked: 1 pod would be refused now.")
    verdicts = page.get_by_role("table", name="Verdicts")
    expect(verdicts.get_by_role("row")).to_have_count(4)  # the header and three pods
    refused = verdicts.get_by_role("row").filter(has_text="refused 429")
    expect(refused).to_have_count(1)
    expect(refused).to_contain_text(
        f"PodProtector {ns}/planweb reports too few available replicas to admit pod deletion"
    )
    expect(refused).to_contain_text("(contended)")
    expect(verdicts.get_by_role("row").filter(has_text="admitted")).to_have_count(1)
    expect(verdicts.get_by_role("row").filter(has_text=f"{ns}/batch-0")).to_contain_text(
        "unprotected"
    )
    protectors = page.get_by_role("table", name="PodProtectors in this plan")
    row = protectors.get_by_role("row").filter(has_text=f"{ns}/planweb")
    # minAvailable, available (aggregated / estimated), unconfirmed, pods here, admitted,
    # refused, could go at once now.
    expect(row.get_by_role("cell")).to_have_text(
        [f"{ns}/planweb", "2", "3 / 3", "0", "2", "1", "1", "1"]
    )
    shoot(page, "plan")

    # Planning changed nothing: every pod is still there, the protector was not written.
    names = {p.metadata.name for p in console.pods(CELL).list_namespaced_pod(ns).items}
    assert names == {"planweb-0", "planweb-1", "batch-0"}
    assert read_protector(console.clusters.api("core"), ns, "planweb").resource_version == version
