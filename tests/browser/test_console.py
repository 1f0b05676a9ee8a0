"""The console in headless Chromium, as an operator (and a viewer) would use it in an incident.

Each test drives the real console (gunicorn, production settings) over the sandbox clusters and
checks the effect where it matters: on the clusters themselves, not only on the page.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes import client as k8s
from playwright.sync_api import Locator, Page, expect

from podseidon_site.config import ClusterAccess
from protectors import constants
from protectors.kube.client import VALIDATING_WEBHOOKS, KubeClient
from webhook.services import NEVER_MATCHING_SELECTOR
from webhook.services import SAVED_ANNOTATION as SAVED_SELECTORS

from .conftest import GUARDED, TABLE_PROTECTORS, Console

pytestmark = [pytest.mark.browser, pytest.mark.integration]

Shoot = Callable[[Page, str], Path]
ACTIONS = re.compile(r"^(Remove|Disable|Re-enable|Pause|Resume)\b")
DENIED = 'admission webhook "podseidon.kubewharf.io" denied the request'


def _nav(page: Page, link: str, heading: str) -> None:
    page.get_by_role("navigation").get_by_role("link", name=link, exact=True).click()
    expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()


def _cell_section(page: Page, cell: str) -> Locator:
    return page.locator("section").filter(
        has=page.get_by_role("heading", name=cell, exact=True, level=2)
    )


def _removal_form(page: Page, cell: str) -> Locator:
    return _cell_section(page, cell).get_by_role(
        "group", name="Remove this cell from all PodProtectors"
    )


def _webhook_row(page: Page, cell: str) -> Locator:
    return page.get_by_role("row").filter(has=page.get_by_role("cell", name=cell, exact=True))


def _delete_pod(console: Console, cell: str, name: str) -> tuple[int, str]:
    try:
        console.pods(cell).delete_namespaced_pod(name, console.guarded_namespace)
    except k8s.ApiException as error:
        return error.status, json.loads(error.body).get("message", "")
    return 200, ""


def _assert_refused(console: Console, cell: str, name: str) -> None:
    code, message = _delete_pod(console, cell, name)
    assert code in (409, 429) and message.startswith(DENIED), (code, message)
    console.pods(cell).read_namespaced_pod(name, console.guarded_namespace)  # still there


def _registration(console: Console, cell: str) -> dict:
    kube = KubeClient.from_access(ClusterAccess(kubeconfig=str(console.clusters.kubeconfigs[cell])))
    return kube.get(VALIDATING_WEBHOOKS, None, constants.WEBHOOK_CONFIG_NAME)


def _protectors(console: Console, namespace: str) -> list[dict]:
    return k8s.CustomObjectsApi(console.clusters.api("core")).list_namespaced_custom_object(
        constants.GROUP, "v1alpha1", namespace, "podprotectors"
    )["items"]


def test_log_in(anonymous_page: Page, console: Console, shoot: Shoot) -> None:
    page = anonymous_page
    page.goto(console.web.url + "/cells/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/cells/$"))
    shoot(page, "login")
    page.get_by_label("Username").fill("operator-user")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("did not match")).to_be_visible()
    shoot(page, "login-refused")

    # The correct password lands on the page that was asked for.
    page.get_by_label("Username").fill("operator-user")
    page.get_by_label("Password").fill(console.passwords["operator"])
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Cells", level=1)).to_be_visible()
    shoot(page, "cells")
    nav = page.get_by_role("navigation")
    for link in ("Overview", "PodProtectors", "Cells", "Webhook", "Audit log"):
        expect(nav.get_by_role("link", name=link, exact=True)).to_be_visible()
    expect(page.get_by_text("operator-user")).to_be_visible()


def test_find_a_protector_by_filter_and_open_it(
    operator_page: Page, console: Console, shoot: Shoot
) -> None:
    page = operator_page
    _nav(page, "PodProtectors", "PodProtectors")
    shoot(page, "table")

    page.get_by_label("Namespace").fill(console.table_namespace)
    page.get_by_label("Name contains").fill("backend")
    page.get_by_role("button", name="Filter").click()
    table = page.get_by_role("table")
    expect(table.get_by_role("row")).to_have_count(2)  # the header and one match
    expect(table.get_by_role("link", name="web-backend", exact=True)).to_be_visible()
    shoot(page, "filtered")

    table.get_by_role("link", name="web-backend", exact=True).click()
    title = f"PodProtector {console.table_namespace}/web-backend"
    expect(page.get_by_role("heading", name=title, level=1)).to_be_visible()
    required = page.get_by_role("row").filter(has_text="Required (minAvailable)")
    expect(required.get_by_role("cell")).to_have_text("1")
    for cell in ("cell-a", "cell-b"):
        expect(page.get_by_role("heading", name=cell, exact=True, level=3)).to_be_visible()
    shoot(page, "detail")


def test_remove_a_cell_with_the_typed_confirmation(
    operator_page: Page, console: Console, shoot: Shoot
) -> None:
    page = operator_page
    _nav(page, "Cells", "Cells")
    form = _removal_form(page, "cell-a")
    reason = "cell-a control plane lost (browser test)"

    # A wrong cell ID refuses the removal and changes nothing.
    form.get_by_label("Type the cell ID").fill("cell-b")
    form.get_by_label("Reason").fill(reason)
    form.get_by_label("Only namespace").fill(console.table_namespace)
    form.get_by_role("button", name="Remove cell-a from PodProtectors").click()
    expect(page.get_by_text("type the cell ID 'cell-a' exactly")).to_be_visible()
    shoot(page, "wrong-cell-id")
    for ppr in _protectors(console, console.table_namespace):
        assert constants.ANNOTATION_REMOVE_CELL_ONCE not in ppr["metadata"].get("annotations", {})

    form = _removal_form(page, "cell-a")
    # The form says what a running aggregator would do, and offers to pause it first.
    expect(_cell_section(page, "cell-a").get_by_text("undoing the removal")).to_be_visible()
    expect(form.get_by_label("Pause the aggregator of cell-a first")).to_be_checked()
    form.get_by_label("Type the cell ID").fill("cell-a")
    form.get_by_label("Reason").fill(reason)
    form.get_by_label("Only namespace").fill(console.table_namespace)
    form.get_by_role("button", name="Remove cell-a from PodProtectors").click()
    # No generator runs in this environment: the removal says what is still pending.
    expect(
        page.get_by_text(
            re.compile(
                r"Remove cell-a from PodProtectors: PARTLY FAILED: .*still holding cell-a: "
                rf"{len(TABLE_PROTECTORS)} .*audit record #\d+"
            )
        )
    ).to_be_visible()
    shoot(page, "removed")

    # Every protector of the chosen namespace is marked for the generator; no other one is.
    marked = {
        ppr["metadata"]["name"]: ppr["metadata"].get("annotations", {})
        for ppr in _protectors(console, console.table_namespace)
    }
    assert set(marked) == set(TABLE_PROTECTORS)
    for marks in marked.values():
        assert "cell-a" in marks.get(constants.ANNOTATION_REMOVE_CELL_ONCE, "")
    (guarded,) = _protectors(console, console.guarded_namespace)
    assert constants.ANNOTATION_REMOVE_CELL_ONCE not in guarded["metadata"].get("annotations", {})

    # The table (from the console's watch cache) shows the pending removal on every row.
    page.goto(f"{console.web.url}/protectors/?namespace={console.table_namespace}")
    expect(page.get_by_text("removing: cell-a")).to_have_count(len(TABLE_PROTECTORS))
    shoot(page, "table-removing")

    _nav(page, "Audit log", "Audit log")
    expect(page.get_by_text(reason).first).to_be_visible()
    shoot(page, "audit")


def test_disable_and_reenable_the_webhook_in_a_cell(
    operator_page: Page, console: Console, shoot: Shoot
) -> None:
    page = operator_page
    registered = {cell: _registration(console, cell) for cell in ("cell-a", "cell-b")}
    _assert_refused(console, "cell-a", f"{GUARDED}-cell-a-0")

    _nav(page, "Webhook", "Webhook")
    expect(_webhook_row(page, "cell-a")).to_contain_text("enabled")
    shoot(page, "enabled")

    dialogs: list[str] = []

    def accept(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)  # the form asks "are you sure?" before disabling
    row = _webhook_row(page, "cell-a")
    row.get_by_label("Reason").fill("webhook storm (browser test)")
    row.get_by_role("button", name="Disable", exact=True).click()
    expect(page.get_by_text(re.compile(r"Disable the webhook in cell-a: "))).to_be_visible()
    expect(_webhook_row(page, "cell-a")).to_contain_text("disabled by the console")
    expect(_webhook_row(page, "cell-b")).not_to_contain_text("disabled")
    assert len(dialogs) == 1 and "cell-a" in dialogs[0], dialogs
    shoot(page, "disabled")

    # In the cluster: cell-a's registration no longer matches any pod (its selector saved on
    # it), so deletions there pass; cell-b still protects.
    stored = _registration(console, "cell-a")
    assert [w["objectSelector"] for w in stored["webhooks"]] == [NEVER_MATCHING_SELECTOR]
    assert SAVED_SELECTORS in stored["metadata"]["annotations"]
    assert _registration(console, "cell-b")["webhooks"] == registered["cell-b"]["webhooks"]
    assert _delete_pod(console, "cell-a", f"{GUARDED}-cell-a-0") == (200, "")
    _assert_refused(console, "cell-b", f"{GUARDED}-cell-b-0")

    row = _webhook_row(page, "cell-a")
    row.get_by_label("Reason").fill("storm over (browser test)")
    row.get_by_role("button", name="Re-enable", exact=True).click()
    expect(page.get_by_text(re.compile(r"Re-enable the webhook in cell-a: "))).to_be_visible()
    expect(_webhook_row(page, "cell-a")).not_to_contain_text("disabled")
    shoot(page, "re-enabled")

    # Exactly the registration it had, and protection is back.
    restored = _registration(console, "cell-a")
    assert restored["webhooks"] == registered["cell-a"]["webhooks"]
    assert SAVED_SELECTORS not in (restored["metadata"].get("annotations") or {})
    _assert_refused(console, "cell-a", f"{GUARDED}-cell-a-1")


def test_a_viewer_sees_no_action_buttons(viewer_page: Page, console: Console, shoot: Shoot) -> None:
    page = viewer_page
    for link, check in (
        ("Cells", lambda: _cell_section(page, "cell-a")),
        ("Webhook", lambda: _webhook_row(page, "cell-a")),
    ):
        _nav(page, link, link)
        expect(check()).to_be_visible()  # the page has its content, only not the actions
        expect(page.get_by_text("You can look but not act")).to_be_visible()
        expect(page.get_by_role("button", name=ACTIONS)).to_have_count(0)
        expect(page.get_by_role("textbox", name="Reason")).to_have_count(0)
        shoot(page, link.lower())

    page.goto(f"{console.web.url}/protectors/{console.table_namespace}/web-frontend/")
    expect(page.get_by_role("heading", name=re.compile("web-frontend"), level=1)).to_be_visible()
    expect(page.get_by_role("button", name=ACTIONS)).to_have_count(0)
    shoot(page, "detail")
