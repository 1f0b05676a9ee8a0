"""Console actions: operators only, CSRF, a reason always, the typed cell ID for removal, one
audit record per attempted action, failures shown with their cause."""

from __future__ import annotations

import time

import pytest
from django.test import Client
from site_fakes import WEBHOOK_NAME, Gate, install_cache, protector, webhook_configuration

from audit.models import AuditRecord
from protectors import constants
from protectors.kube.client import PODPROTECTORS, VALIDATING_WEBHOOKS
from webhook.services import NEVER_MATCHING_SELECTOR
from workers.models import ControllerSwitch

pytestmark = pytest.mark.django_db

ORIGINAL = {"matchLabels": {"team": "payments"}}
REMOVE = constants.ANNOTATION_REMOVE_CELL_ONCE
REMOVE_FORM = {"confirm_cell": "cell-a", "reason": "cell-a is gone"}
ACTIONS = [
    ("/cells/cell-a/remove/", REMOVE_FORM),
    ("/cells/cell-a/aggregator/pause/", {"reason": "r"}),
    ("/cells/cell-a/aggregator/resume/", {"reason": "r"}),
    ("/webhook/cell-a/disable/", {"reason": "r"}),
    ("/webhook/cell-a/enable/", {"reason": "r"}),
    ("/webhook/disable-all/", {"reason": "r", "confirm": "1"}),
]


def logged_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def shown(response) -> str:
    return " | ".join(str(m) for m in response.context["messages"])


def annotations(fakes, namespace: str, name: str) -> dict:
    obj = fakes["core"].get(PODPROTECTORS, namespace, name)
    return obj["metadata"].get("annotations") or {}


def webhook_selector(fakes, cell: str):
    return (
        fakes[cell]
        .get(VALIDATING_WEBHOOKS, None, WEBHOOK_NAME)["webhooks"][0]
        .get("objectSelector")
    )


@pytest.fixture
def world(fakes, operation_threads):
    objects = [
        protector("ns-1", "web"),
        protector("ns-1", "api", labels={"tier": "front"}),
        protector("ns-2", "db"),
        protector("ns-2", "only-b", cells={"cell-b": 2}),
    ]
    for obj in objects:
        fakes["core"].add(PODPROTECTORS, obj)
    install_cache(objects)
    for cell in ("cell-a", "cell-b"):
        fakes[cell].add(VALIDATING_WEBHOOKS, webhook_configuration(ORIGINAL))
    return fakes


@pytest.mark.parametrize("path, data", ACTIONS)
def test_viewers_get_403_and_nothing_happens(world, users, path, data) -> None:
    response = logged_in(users["viewer"]).post(path, data)
    assert response.status_code == 403
    assert AuditRecord.objects.count() == 0
    assert world["core"].writes == [] and world["cell-a"].writes == []


def test_viewers_see_pages_without_action_forms(world, users) -> None:
    client = logged_in(users["viewer"])
    cells = client.get("/cells/").content.decode()
    webhook = client.get("/webhook/").content.decode()
    assert "Remove this cell from all PodProtectors" in cells
    assert 'action="/cells/cell-a/remove/"' not in cells
    assert 'action="/webhook/cell-a/disable/"' not in webhook
    operator = logged_in(users["operator"])
    assert 'action="/cells/cell-a/remove/"' in operator.get("/cells/").content.decode()
    assert 'action="/webhook/cell-a/disable/"' in operator.get("/webhook/").content.decode()


@pytest.mark.parametrize("path, data", ACTIONS)
def test_every_action_needs_a_reason(world, users, path, data) -> None:
    response = logged_in(users["operator"]).post(path, {**data, "reason": "  "}, follow=True)
    assert response.status_code == 200
    assert "a reason is required" in shown(response)
    assert AuditRecord.objects.count() == 0


def test_csrf_is_enforced(world, users) -> None:
    client = logged_in(users["operator"], enforce_csrf_checks=True)
    response = client.post("/webhook/cell-a/disable/", {"reason": "r"})
    assert response.status_code == 403
    assert webhook_selector(world, "cell-a") == ORIGINAL
    assert AuditRecord.objects.count() == 0
    # With the page's token it goes through.
    client.get("/webhook/")
    token = client.cookies["csrftoken"].value
    response = client.post(
        "/webhook/cell-a/disable/", {"reason": "r", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    assert webhook_selector(world, "cell-a") == NEVER_MATCHING_SELECTOR


def test_remove_cell_with_the_typed_id(world, users) -> None:
    world["core"].generator = True  # what the generator does with the annotations
    response = logged_in(users["operator"]).post("/cells/cell-a/remove/", REMOVE_FORM, follow=True)
    assert response.redirect_chain[-1][0] == "/cells/"
    text = shown(response)
    assert "4 matched; annotated 3;" in text and "cell-a removed from 3 of 3" in text
    for ns, name in (("ns-1", "web"), ("ns-1", "api"), ("ns-2", "db")):
        status = world["core"].get(PODPROTECTORS, ns, name)["status"]
        assert [c["cellID"] for c in status["cells"]] == ["cell-b"]
    assert REMOVE not in annotations(world, "ns-2", "only-b")
    record = AuditRecord.objects.get()
    assert (record.action, record.target, record.username) == ("remove-cell", "cell/cell-a", "otto")
    assert record.reason == "cell-a is gone" and record.outcome == "succeeded"
    assert f"audit record #{record.pk}" in text


def test_the_removal_form_warns_of_a_running_aggregator_and_can_pause_it(world, users) -> None:
    world["core"].generator = True
    client = logged_in(users["operator"])
    page = client.get("/cells/").content.decode()
    assert "The aggregator of cell-a is <strong>not paused</strong>" in page
    assert 'name="pause_aggregator" value="1" checked' in page
    response = client.post(
        "/cells/cell-a/remove/", {**REMOVE_FORM, "pause_aggregator": "1"}, follow=True
    )
    assert "cell-a removed from 3 of 3" in shown(response)
    assert ControllerSwitch.objects.get(controller_key="aggregator/cell-a").paused
    assert list(AuditRecord.objects.order_by("id").values_list("action", flat=True)) == [
        "controller-pause",
        "remove-cell",
    ]
    page = client.get("/cells/").content.decode()
    assert "The aggregator of cell-a is paused: it will not write cell-a back." in page


@pytest.mark.parametrize("typed", ["", "cell-b", "CELL-A", "cell-ax"])
def test_remove_cell_refuses_a_wrong_typed_id(world, users, typed) -> None:
    response = logged_in(users["operator"]).post(
        "/cells/cell-a/remove/", {**REMOVE_FORM, "confirm_cell": typed}, follow=True
    )
    assert "type the cell ID" in shown(response)
    assert world["core"].writes == []
    assert AuditRecord.objects.count() == 0


def test_remove_cell_dry_run_and_filters(world, users) -> None:
    client = logged_in(users["operator"])
    response = client.post(
        "/cells/cell-a/remove/", {**REMOVE_FORM, "dry_run": "1", "namespace": "ns-1"}, follow=True
    )
    assert "(dry run)" in shown(response) and "would annotate 2" in shown(response)
    assert world["core"].writes == []
    response = client.post(
        "/cells/cell-a/remove/", {**REMOVE_FORM, "label_selector": "tier=front"}, follow=True
    )
    assert "1 matched; annotated 1" in shown(response)
    assert "still holding cell-a: 1 (ns-1/api)" in shown(response)  # no generator here
    assert annotations(world, "ns-1", "api")[REMOVE] == "cell-a"
    assert REMOVE not in annotations(world, "ns-1", "web")
    response = client.post(
        "/cells/cell-a/remove/", {**REMOVE_FORM, "label_selector": "a in (b"}, follow=True
    )
    assert "invalid label selector" in shown(response)
    assert AuditRecord.objects.count() == 2
    assert AuditRecord.objects.filter(dry_run=True).count() == 1


def test_remove_cell_failures_are_shown_and_audited(world, users) -> None:
    world["core"].fail_patches_for.update({"web", "api", "db"})
    response = logged_in(users["operator"]).post("/cells/cell-a/remove/", REMOVE_FORM, follow=True)
    text = shown(response)
    assert "PARTLY FAILED" in text and "3 failed" in text and "injected failure" in text
    assert AuditRecord.objects.get().outcome == "partial"


def test_pause_and_resume_the_aggregator(world, users) -> None:
    client = logged_in(users["operator"])
    response = client.post("/cells/cell-a/aggregator/pause/", {"reason": "noisy"}, follow=True)
    assert "aggregator/cell-a paused" in shown(response)
    assert ControllerSwitch.objects.get(controller_key="aggregator/cell-a").paused
    page = client.get("/cells/").content.decode()
    assert 'action="/cells/cell-a/aggregator/resume/"' in page
    response = client.post("/cells/cell-a/aggregator/resume/", {"reason": "calm"}, follow=True)
    assert "resumed" in shown(response)
    assert not ControllerSwitch.objects.get(controller_key="aggregator/cell-a").paused
    assert list(AuditRecord.objects.order_by("id").values_list("action", flat=True)) == [
        "controller-pause",
        "controller-resume",
    ]


def test_unknown_cell_is_refused(world, users) -> None:
    response = logged_in(users["operator"]).post(
        "/cells/nope/aggregator/pause/", {"reason": "r"}, follow=True
    )
    assert "unknown cell" in shown(response)
    assert AuditRecord.objects.count() == 0


def test_disable_and_re_enable_the_webhook(world, users) -> None:
    client = logged_in(users["operator"])
    response = client.post("/webhook/cell-a/disable/", {"reason": "incident 42"}, follow=True)
    assert "webhook disabled in cell-a" in shown(response)
    assert webhook_selector(world, "cell-a") == NEVER_MATCHING_SELECTOR
    assert webhook_selector(world, "cell-b") == ORIGINAL
    page = client.get("/webhook/").content.decode()
    assert "disabled by the console" in page
    assert 'action="/webhook/cell-a/enable/"' in page
    assert "No pod deletion in that cluster is checked by Podseidon" in page
    response = client.post("/webhook/cell-a/enable/", {"reason": "over"}, follow=True)
    assert "re-enabled" in shown(response)
    assert webhook_selector(world, "cell-a") == ORIGINAL
    assert AuditRecord.objects.count() == 2


def test_restore_from_configuration_is_offered_after_a_disable_elsewhere(
    world, users, settings
) -> None:
    from podseidon_site.config import parse_config
    from webhook.registration import object_selector

    settings.PODSEIDON = parse_config(
        {
            **settings.PODSEIDON.model_dump(exclude={"webhook"}),
            "webhook": {"url": "https://podseidon-webhook.example.internal:8843"},
        }
    )
    client = logged_in(users["operator"])
    hook = world["cell-a"].objects[("validatingwebhookconfigurations", "", WEBHOOK_NAME)]
    hook["webhooks"][0]["objectSelector"] = NEVER_MATCHING_SELECTOR  # the runbook's kubectl
    page = client.get("/webhook/").content.decode()
    assert "disabled by someone else" in page
    assert 'action="/webhook/cell-a/restore/"' in page and "Restore from configuration" in page
    assert 'action="/webhook/cell-a/enable/"' not in page
    response = client.post("/webhook/cell-a/restore/", {"reason": "drill over"}, follow=True)
    assert "webhook re-registered in cell-a from the configuration" in shown(response)
    assert webhook_selector(world, "cell-a") == object_selector(settings.PODSEIDON)
    record = AuditRecord.objects.get()
    assert (record.action, record.outcome) == ("webhook-restore", "succeeded")
    page = client.get("/webhook/").content.decode()
    assert 'action="/webhook/cell-a/restore/"' not in page


def test_disable_all_needs_the_confirmation(world, users) -> None:
    client = logged_in(users["operator"])
    response = client.post("/webhook/disable-all/", {"reason": "r"}, follow=True)
    assert "tick the box" in shown(response)
    assert AuditRecord.objects.count() == 0
    response = client.post("/webhook/disable-all/", {"reason": "r", "confirm": "1"}, follow=True)
    # cell-dead cannot be reached: a partial outcome, shown with its cause.
    text = shown(response)
    assert "PARTLY FAILED" in text and "cell-dead" in text
    assert webhook_selector(world, "cell-a") == NEVER_MATCHING_SELECTOR
    assert webhook_selector(world, "cell-b") == NEVER_MATCHING_SELECTOR
    record = AuditRecord.objects.get()
    assert (record.action, record.outcome) == ("webhook-disable-all", "partial")


def test_webhook_failure_in_an_unreachable_cell_is_shown(world, users, tmp_path) -> None:
    response = logged_in(users["operator"]).post(
        "/webhook/cell-dead/disable/", {"reason": "r"}, follow=True
    )
    text = shown(response)
    assert "FAILED" in text and "unreachable" in text
    assert str(tmp_path) not in response.content.decode()
    assert AuditRecord.objects.get().outcome == "failed"


def test_a_long_removal_continues_in_the_background_with_its_progress_shown(
    world, users, monkeypatch
) -> None:
    from audit.models import Operation
    from console import pages as views

    monkeypatch.setattr(views, "REMOVAL_WAIT_SECONDS", 0.2)
    gate = Gate(world["core"], monkeypatch)
    client = logged_in(users["operator"])
    try:
        response = client.post("/cells/cell-a/remove/", REMOVE_FORM, follow=True)
        operation = Operation.objects.get()
        assert response.redirect_chain[-1][0] == f"/operations/{operation.pk}/"
        assert f"started as operation #{operation.pk}" in shown(response)
        page = response.content.decode()
        assert 'http-equiv="refresh"' in page  # follows the progress while it runs
        assert f'aria-label="Progress of operation #{operation.pk}"' in page
        assert 'max="4"' in page and "of 4 done" in page
        assert AuditRecord.objects.count() == 0  # audited once, when it ends
        # Submitting the same removal again joins the running operation.
        again = client.post("/cells/cell-a/remove/", REMOVE_FORM, follow=True)
        assert again.redirect_chain[-1][0] == f"/operations/{operation.pk}/"
        assert "already running" in shown(again)
        cells = client.get("/cells/").content.decode()
        assert "Recent cell removals" in cells and f"/operations/{operation.pk}/" in cells
    finally:
        gate.open()
    for _ in range(300):
        operation.refresh_from_db()
        if not operation.running:
            break
        time.sleep(0.02)
    page = client.get(f"/operations/{operation.pk}/").content.decode()
    assert 'http-equiv="refresh"' not in page
    # Nothing removed cell-a from status (no generator here): the page says so, by name.
    assert "partly succeeded" in page and "4 of 4 done" in page
    assert "Remove cell-a from PodProtectors: PARTLY FAILED: 4 matched; annotated 3;" in page
    assert "<th>Annotated</th><td>3</td>" in page
    assert "<th>Removed from status</th><td>0</td>" in page
    assert "<th>Still pending</th><td>3</td>" in page
    assert "<h2>Still pending</h2>" in page and "ns-2/db" in page
    assert "annotated, not processed yet (is the generator running?)" in page
    record = AuditRecord.objects.get()
    assert operation.audit_record_id == record.pk and f"#{record.pk}" in page
    assert Operation.objects.count() == 1


def test_removal_failures_are_listed_on_the_operation_page(world, users) -> None:
    world["core"].fail_patches_for.update({"web", "db"})
    client = logged_in(users["operator"])
    client.post("/cells/cell-a/remove/", REMOVE_FORM)
    from audit.models import Operation

    operation = Operation.objects.get()
    page = client.get(f"/operations/{operation.pk}/").content.decode()
    assert "Partly succeeded" in page or "partly succeeded" in page
    assert "ns-1/web" in page and "ns-2/db" in page and "injected failure" in page
    assert client.get("/operations/999999/").status_code == 404
    # Viewers see operations too.
    assert logged_in(users["viewer"]).get(f"/operations/{operation.pk}/").status_code == 200
