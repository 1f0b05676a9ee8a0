"""The actions: validation, idempotency, dry runs, failures, and exactly one audit record each."""

from __future__ import annotations

import json

import pytest
from site_fakes import (
    WEBHOOK_NAME,
    Gate,
    finished_operation,
    install_cache,
    protector,
    webhook_configuration,
)

from audit.models import AuditRecord
from protectors import constants
from protectors.kube.client import PODPROTECTORS, VALIDATING_WEBHOOKS
from webhook.services import NEVER_MATCHING_SELECTOR, SAVED_ANNOTATION
from workers.models import ControllerSwitch

pytestmark = pytest.mark.django_db

ORIGINAL = {
    "matchLabels": {"team": "payments"},
    "matchExpressions": [
        {"key": "app.kubernetes.io/part-of", "operator": "NotIn", "values": ["podseidon"]}
    ],
}
REMOVE = constants.ANNOTATION_REMOVE_CELL_ONCE


def records() -> list[AuditRecord]:
    return list(AuditRecord.objects.order_by("id"))


@pytest.fixture
def core(fakes, operation_threads):
    objects = [
        protector("ns-1", "web"),
        protector("ns-1", "api", labels={"tier": "front"}),
        protector("ns-1", "only-b", cells={"cell-b": 2}),
        protector("ns-2", "db", annotations={REMOVE: "cell-x"}),
    ]
    for obj in objects:
        fakes["core"].add(PODPROTECTORS, obj)
    install_cache(objects)
    return fakes["core"]


@pytest.fixture
def registered(fakes):
    for cell in ("cell-a", "cell-b"):
        fakes[cell].add(VALIDATING_WEBHOOKS, webhook_configuration(ORIGINAL))
    return fakes


def stored_webhook(fakes, cell: str) -> dict:
    return fakes[cell].get(VALIDATING_WEBHOOKS, None, WEBHOOK_NAME)


# -- validation -----------------------------------------------------------------------------

ACTIONS = [
    "/api/v1/cells/cell-a/remove-from-protectors/",
    "/api/v1/cells/cell-a/aggregator/pause/",
    "/api/v1/webhook/cell-a/disable/",
    "/api/v1/webhook/cell-a/enable/",
    "/api/v1/webhook/disable-all/",
    "/api/v1/controllers/monitor/pause/",
]


@pytest.mark.parametrize("path", ACTIONS)
@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "   "}, {"reason": None}])
def test_every_action_needs_a_reason(core, registered, operator_api, path, body) -> None:
    response = operator_api.post(path, body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert "reason" in error["details"]
    assert error["message"].startswith("reason:")
    assert records() == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/cells/nope/remove-from-protectors/",
        "/api/v1/cells/nope/aggregator/pause/",
        "/api/v1/cells/nope/aggregator/resume/",
        "/api/v1/webhook/nope/disable/",
        "/api/v1/webhook/nope/enable/",
    ],
)
def test_unknown_cells_are_refused(core, operator_api, path) -> None:
    response = operator_api.post(path, {"reason": "r"}, format="json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_cell"
    assert records() == []


def test_unknown_controller_is_refused(core, operator_api) -> None:
    response = operator_api.post("/api/v1/controllers/nothing/pause/", {"reason": "r"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_controller"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"label_selector": "a in (b"}, "label_selector"),
        ({"names": "web"}, "names"),
        ({"dry_run": "perhaps"}, "dry_run"),
    ],
)
def test_remove_rejects_bad_filters(core, operator_api, body, field) -> None:
    response = operator_api.post(
        "/api/v1/cells/cell-a/remove-from-protectors/", {"reason": "r", **body}, format="json"
    )
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]
    assert records() == []


# -- remove a cell --------------------------------------------------------------------------


def test_remove_cell_annotates_protectors_that_have_it(core, operator_api) -> None:
    # No generator runs here: the annotations stay, and the removal says so.
    response = operator_api.post(
        "/api/v1/cells/cell-a/remove-from-protectors/",
        {"reason": "cell-a lost"},
        format="json",
    )
    assert response.status_code == 202
    started = response.json()
    assert started["started"] is True
    assert started["status_url"].endswith(f"/api/v1/operations/{started['operation_id']}/")
    assert response["Location"] == started["status_url"]
    body = finished_operation(operator_api, response)
    result = body["result"]
    assert body["state"] == "partial"
    assert (body["total"], body["done"], body["failed"], body["percent"]) == (4, 4, 0, 100)
    assert body["counts"] == {"annotated": 3, "not_in_status": 1, "removed": 0, "pending": 3}
    assert (result["matched"], result["annotated"], result["not_in_status"]) == (4, 3, 1)
    assert (result["removed"], result["pending"]) == (0, 3)
    assert sorted(result["changed"]) == ["ns-1/api", "ns-1/web", "ns-2/db"]
    assert sorted(p["protector"] for p in result["still_pending"]) == [
        "ns-1/api",
        "ns-1/web",
        "ns-2/db",
    ]
    assert "not processed yet" in result["still_pending"][0]["why"]
    assert "still holding cell-a: 3" in body["message"]

    def annotation(ns, name):
        return core.get(PODPROTECTORS, ns, name)["metadata"].get("annotations", {}).get(REMOVE)

    assert annotation("ns-1", "web") == "cell-a"
    assert annotation("ns-2", "db") == "cell-x,cell-a"  # merged with what was there
    assert annotation("ns-1", "only-b") is None
    (record,) = records()
    assert (record.action, record.target, record.outcome) == (
        "remove-cell",
        "cell/cell-a",
        "partial",
    )
    assert record.username == "otto" and record.reason == "cell-a lost"
    assert record.result["annotated"] == 3 and body["audit_id"] == record.pk
    # Each annotated protector got an Event naming who asked and the operation.
    assert _flush_events()
    requested = [e for e in core.events if e["reason"] == "RemoveCellRequested"]
    assert sorted(e["involvedObject"]["name"] for e in requested) == ["api", "db", "web"]
    assert (
        f"otto asked to remove cell-a from status (operation #{body['id']})"
        in (requested[0]["message"])
    )

    again = finished_operation(
        operator_api,
        operator_api.post(
            "/api/v1/cells/cell-a/remove-from-protectors/", {"reason": "again"}, format="json"
        ),
    )
    assert again["state"] == "partial" and again["id"] != body["id"]
    assert (again["result"]["annotated"], again["result"]["already_pending"]) == (0, 3)
    assert again["result"]["pending"] == 3
    assert annotation("ns-2", "db") == "cell-x,cell-a"
    assert len(records()) == 2


def _flush_events() -> bool:
    from protectors.clusters import CORE, recorder_for

    return recorder_for(CORE).flush(5)


def test_remove_cell_succeeds_once_the_cell_has_left_every_status(core, operator_api) -> None:
    core.generator = True  # what the generator does with the annotations
    body = finished_operation(
        operator_api,
        operator_api.post(
            "/api/v1/cells/cell-a/remove-from-protectors/", {"reason": "r"}, format="json"
        ),
    )
    assert body["state"] == "succeeded", body["message"]
    result = body["result"]
    assert (result["annotated"], result["removed"], result["pending"]) == (3, 3, 0)
    assert result["still_pending"] == []
    assert "cell-a removed from 3 of 3" in body["message"]
    for ns, name in (("ns-1", "web"), ("ns-1", "api"), ("ns-2", "db")):
        cells = [c["cellID"] for c in core.get(PODPROTECTORS, ns, name)["status"]["cells"]]
        assert cells == ["cell-b"]


def test_a_cell_written_back_after_its_removal_is_reported_pending(
    core, operator_api, monkeypatch
) -> None:
    core.generator = True
    original = core.run_generator

    def generator_then_aggregator() -> int:
        done = original()
        # An aggregator that was not paused writes cell-a back into "web".
        obj = core.objects[("podprotectors", "ns-1", "web")]
        if all(c["cellID"] != "cell-a" for c in obj["status"]["cells"]):
            obj["status"]["cells"].append({"cellID": "cell-a", "aggregation": {}})
        return done

    monkeypatch.setattr(core, "run_generator", generator_then_aggregator)
    body = finished_operation(
        operator_api,
        operator_api.post(
            "/api/v1/cells/cell-a/remove-from-protectors/", {"reason": "r"}, format="json"
        ),
    )
    assert body["state"] == "partial"
    assert (body["result"]["removed"], body["result"]["pending"]) == (2, 1)
    (pending,) = body["result"]["still_pending"]
    assert pending["protector"] == "ns-1/web"
    assert (
        "written back after its removal (is the aggregator of cell-a paused?)" in (pending["why"])
    )


def test_a_removal_is_confirmed_by_the_watch_as_the_generator_works(
    core, operator_api, settings, monkeypatch
) -> None:
    """The generator acts only after the removal has listed the selection and opened its
    watch: the watch's events confirm every protector, without a second list, long before
    the deadline."""
    import threading
    import time

    settings.PODSEIDON_REMOVAL_CONFIRM_SECONDS = 30.0
    lists, watches = [], []
    original_list, original_watch = core.list, core.watch

    def counted_list(resource, *args, **kwargs):
        if resource == PODPROTECTORS:
            lists.append(time.monotonic())
        return original_list(resource, *args, **kwargs)

    def generator_once_watched(*args, **kwargs):
        stream = original_watch(*args, **kwargs)
        watches.append(stream)

        def start_generator() -> None:
            if stream.opened.wait(5):
                core.generator = True

        threading.Thread(target=start_generator, daemon=True).start()
        return stream

    monkeypatch.setattr(core, "list", counted_list)
    monkeypatch.setattr(core, "list_all", counted_list)
    monkeypatch.setattr(core, "watch", generator_once_watched)
    started = time.monotonic()
    body = finished_operation(
        operator_api,
        operator_api.post(
            "/api/v1/cells/cell-a/remove-from-protectors/", {"reason": "r"}, format="json"
        ),
    )
    assert body["state"] == "succeeded", body["message"]
    assert (body["result"]["removed"], body["result"]["pending"]) == (3, 0)
    assert time.monotonic() - started < 10
    # One list to annotate, one to start confirming; the rest came as events of one watch.
    assert len(lists) == 2 and len(watches) == 1
    for ns, name in (("ns-1", "web"), ("ns-1", "api"), ("ns-2", "db")):
        cells = [c["cellID"] for c in core.get(PODPROTECTORS, ns, name)["status"]["cells"]]
        assert cells == ["cell-b"]


def test_a_removal_that_cannot_re_read_says_so(core, operator_api, monkeypatch) -> None:
    from protectors.kube.client import KubeError

    original = core.list
    calls = []

    def list_once(*args, **kwargs):
        calls.append(args)
        if len(calls) > 1:  # the core cluster goes away after the annotations
            raise KubeError(0, "Unreachable", "connection refused")
        return original(*args, **kwargs)

    monkeypatch.setattr(core, "list", list_once)
    monkeypatch.setattr(core, "list_all", list_once)
    body = finished_operation(
        operator_api,
        operator_api.post(
            "/api/v1/cells/cell-a/remove-from-protectors/", {"reason": "r"}, format="json"
        ),
    )
    assert body["state"] == "partial"
    assert body["result"]["annotated"] == 3 and body["result"]["pending"] == 3
    assert all(
        p["why"] == "could not re-read it: cluster unreachable: connection refused"
        for p in body["result"]["still_pending"]
    )


def test_remove_cell_can_pause_the_aggregator_first(core, operator_api) -> None:
    core.generator = True
    body = finished_operation(
        operator_api,
        operator_api.post(
            "/api/v1/cells/cell-a/remove-from-protectors/",
            {"reason": "cell-a lost", "pause_aggregator": True},
            format="json",
        ),
    )
    assert body["state"] == "succeeded"
    assert body["parameters"]["pause_aggregator"] is True
    aggregator = body["result"]["aggregator"]
    assert aggregator["paused"] is True and aggregator["stopped"] in (True, None)
    assert ControllerSwitch.objects.get(controller_key="aggregator/cell-a").paused
    # Two actions, each audited once: the pause, then the removal.
    assert [(r.action, r.outcome) for r in records()] == [
        ("controller-pause", "succeeded"),
        ("remove-cell", "succeeded"),
    ]
    assert records()[0].reason == "before removing cell-a: cell-a lost"


def test_remove_cell_filters(core, operator_api) -> None:
    def run(**selection):
        return operator_api.post(
            "/api/v1/cells/cell-b/remove-from-protectors/",
            {"reason": "subset", "dry_run": True, **selection},
            format="json",
        ).json()["result"]

    assert run(namespace="ns-2")["changed"] == ["ns-2/db"]
    assert run(label_selector="tier=front")["changed"] == ["ns-1/api"]
    assert sorted(run(names=["web", "only-b"])["changed"]) == ["ns-1/only-b", "ns-1/web"]
    assert run(namespace="ns-1", names=["db"])["matched"] == 0


def test_remove_cell_dry_run_writes_nothing(core, operator_api) -> None:
    response = operator_api.post(
        "/api/v1/cells/cell-a/remove-from-protectors/",
        {"reason": "what if", "dry_run": True},
        format="json",
    )
    body = response.json()
    assert body["dry_run"] is True and body["result"]["annotated"] == 3
    assert "would annotate 3" in body["message"]
    assert core.writes == []
    (record,) = records()
    assert record.dry_run and record.outcome == "succeeded"


def test_remove_cell_partial_failure_is_reported_and_audited(core, operator_api) -> None:
    core.fail_patches_for = {"web"}
    body = finished_operation(
        operator_api,
        operator_api.post(
            "/api/v1/cells/cell-a/remove-from-protectors/", {"reason": "r"}, format="json"
        ),
    )
    assert body["state"] == "partial"
    assert body["failed"] == 1 and body["result"]["failed"] == 1
    assert body["result"]["failures"][0]["protector"] == "ns-1/web"
    assert "injected failure" in body["result"]["failures"][0]["error"]
    (record,) = records()
    assert record.outcome == "partial" and body["audit_id"] == record.pk


def test_remove_cell_retries_conflicts(core, operator_api, monkeypatch) -> None:
    original = core.patch
    bumped = []

    def racing_patch(resource, namespace, name, patch, **kwargs):
        if name == "web" and not bumped:  # someone writes between our read and our patch
            bumped.append(original(resource, namespace, name, {"metadata": {"labels": {"z": "1"}}}))
        return original(resource, namespace, name, patch, **kwargs)

    monkeypatch.setattr(core, "patch", racing_patch)
    body = finished_operation(
        operator_api,
        operator_api.post(
            "/api/v1/cells/cell-a/remove-from-protectors/", {"reason": "r"}, format="json"
        ),
    )
    assert body["result"]["annotated"] == 3 and body["result"]["failed"] == 0
    assert core.get(PODPROTECTORS, "ns-1", "web")["metadata"]["annotations"][REMOVE] == "cell-a"


def test_remove_a_cell_only_left_in_status(core, operator_api) -> None:
    # cell-x is not configured but still in no status: unknown. A cell in some status is known.
    response = operator_api.post(
        "/api/v1/cells/cell-x/remove-from-protectors/", {"reason": "r"}, format="json"
    )
    assert response.status_code == 404
    obj = protector("ns-3", "old", cells={"cell-gone": 1})
    core.add(PODPROTECTORS, obj)
    install_cache([obj])
    response = operator_api.post(
        "/api/v1/cells/cell-gone/remove-from-protectors/", {"reason": "r"}, format="json"
    )
    assert finished_operation(operator_api, response)["result"]["annotated"] == 1


def test_remove_cell_when_the_core_cluster_is_unreachable(
    podseidon, users, settings, tmp_path, operation_threads
):
    from site_fakes import closed_port, kubeconfig_at

    from podseidon_site.config import parse_config
    from protectors import clusters

    dead = kubeconfig_at(tmp_path / "core-dead.kubeconfig", closed_port())
    settings.PODSEIDON = parse_config(
        {"core": {"kubeconfig": str(dead)}, "cells": [{"id": "cell-a", "kubeconfig": str(dead)}]}
    )
    clusters.reset()
    from site_fakes import api_as

    api = api_as(users["operator"])
    path = "/api/v1/cells/cell-a/remove-from-protectors/"
    response = api.post(path, {"reason": "r"}, format="json")
    body = finished_operation(api, response)
    assert body["state"] == "failed" and "unreachable" in body["message"]
    assert body["total"] is None  # it never got to list the protectors
    (record,) = records()
    assert record.outcome == "failed" and "unreachable" in record.message
    assert body["audit_id"] == record.pk


def test_a_running_removal_shows_progress_and_is_joined_not_repeated(
    core, operator_api, monkeypatch
) -> None:
    gate = Gate(core, monkeypatch)
    first = operator_api.post(
        "/api/v1/cells/cell-a/remove-from-protectors/", {"reason": "first"}, format="json"
    )
    try:
        assert first.status_code == 202
        assert gate.waiting.acquire(timeout=10)  # the operation is patching now
        status = operator_api.get(first.json()["status_url"]).json()
        assert status["state"] == "running" and status["total"] == 4
        assert status["done"] < 4 and status["audit_id"] is None
        # The same selection again: the running operation, not a second one.
        second = operator_api.post(
            "/api/v1/cells/cell-a/remove-from-protectors/", {"reason": "second"}, format="json"
        )
        assert second.status_code == 202
        assert second.json()["started"] is False
        assert second.json()["operation_id"] == first.json()["operation_id"]
        # Another selection is another operation.
        other = operator_api.post(
            "/api/v1/cells/cell-a/remove-from-protectors/",
            {"reason": "subset", "namespace": "ns-2"},
            format="json",
        )
        assert other.json()["started"] is True
        assert other.json()["operation_id"] != first.json()["operation_id"]
        listed = operator_api.get("/api/v1/operations/", {"state": "running"}).json()
        assert {o["id"] for o in listed["results"]} == {
            first.json()["operation_id"],
            other.json()["operation_id"],
        }
    finally:
        gate.open()
    body = finished_operation(operator_api, first)
    assert body["state"] == "partial" and body["done"] == 4  # no generator: still pending
    finished_operation(operator_api, other)
    # One audit record per operation, none for the joined request.
    assert sorted(r.reason for r in records()) == ["first", "subset"]


def test_an_operation_whose_process_died_is_ended_and_audited_once(users, operator_api) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from audit import operations
    from audit.models import Operation

    lost = Operation.objects.create(
        user=users["operator"],
        username="otto",
        action="remove-cell",
        target="cell/cell-a",
        selection_key="k",
        reason="before the crash",
        parameters={"cell": "cell-a"},
        total=5000,
        done=1200,
        counts={"annotated": 1200},
        heartbeat_at=timezone.now() - timedelta(seconds=operations.STALE_AFTER_SECONDS + 1),
    )
    fresh = Operation.objects.create(
        username="otto",
        action="remove-cell",
        target="cell/cell-b",
        selection_key="k2",
        reason="still going",
        heartbeat_at=timezone.now(),
    )
    body = operator_api.get(f"/api/v1/operations/{lost.pk}/").json()
    assert body["state"] == "failed"
    assert "interrupted" in body["message"] and "1200 of 5000" in body["message"]
    assert operator_api.get(f"/api/v1/operations/{fresh.pk}/").json()["state"] == "running"
    operator_api.get("/api/v1/operations/")  # looking again audits nothing more
    (record,) = records()
    assert (record.outcome, record.target) == ("failed", "cell/cell-a")
    assert record.reason == "before the crash"
    assert record.result["done"] == 1200
    assert operator_api.get(f"/api/v1/operations/{lost.pk}/").json()["audit_id"] == record.pk


# -- webhook --------------------------------------------------------------------------------


def test_disable_saves_the_selector_and_enable_restores_it_exactly(registered, operator_api):
    response = operator_api.post("/api/v1/webhook/cell-a/disable/", {"reason": "storm"})
    assert response.status_code == 200, response.content
    assert response.json()["result"]["changed"] is True
    stored = stored_webhook(registered, "cell-a")
    assert stored["webhooks"][0]["objectSelector"] == NEVER_MATCHING_SELECTOR
    saved = json.loads(stored["metadata"]["annotations"][SAVED_ANNOTATION])
    assert saved["selectors"] == {WEBHOOK_NAME: ORIGINAL} and saved["disabledBy"] == "otto"
    assert stored_webhook(registered, "cell-b")["webhooks"][0]["objectSelector"] == ORIGINAL

    # Twice: nothing changes, the first saved selector stays.
    again = operator_api.post("/api/v1/webhook/cell-a/disable/", {"reason": "storm"}).json()
    assert again["outcome"] == "succeeded" and again["result"]["changed"] is False
    assert stored_webhook(registered, "cell-a") == stored

    states = {s["cell"]: s for s in operator_api.get("/api/v1/webhook/").json()["cells"]}
    assert states["cell-a"]["state"] == "disabled-by-console"
    assert states["cell-a"]["saved_selectors"] == {WEBHOOK_NAME: ORIGINAL}
    assert states["cell-b"]["state"] == "enabled"
    assert states["cell-dead"]["state"] == "unreachable"

    enabled = operator_api.post("/api/v1/webhook/cell-a/enable/", {"reason": "calm"}).json()
    assert enabled["result"]["changed"] is True
    restored = stored_webhook(registered, "cell-a")
    assert restored["webhooks"][0]["objectSelector"] == ORIGINAL
    assert SAVED_ANNOTATION not in restored["metadata"].get("annotations", {})
    twice = operator_api.post("/api/v1/webhook/cell-a/enable/", {"reason": "calm"}).json()
    assert twice["outcome"] == "succeeded" and twice["result"]["changed"] is False
    assert [(r.action, r.outcome) for r in records()] == [
        ("webhook-disable", "succeeded"),
        ("webhook-disable", "succeeded"),
        ("webhook-enable", "succeeded"),
        ("webhook-enable", "succeeded"),
    ]


def test_a_missing_selector_is_restored_as_missing(fakes, operator_api):
    fakes["cell-a"].add(VALIDATING_WEBHOOKS, webhook_configuration(None))
    operator_api.post("/api/v1/webhook/cell-a/disable/", {"reason": "r"})
    assert stored_webhook(fakes, "cell-a")["webhooks"][0]["objectSelector"] == (
        NEVER_MATCHING_SELECTOR
    )
    operator_api.post("/api/v1/webhook/cell-a/enable/", {"reason": "r"})
    assert "objectSelector" not in stored_webhook(fakes, "cell-a")["webhooks"][0]


def test_disable_dry_run_changes_nothing(registered, operator_api):
    body = operator_api.post(
        "/api/v1/webhook/cell-a/disable/", {"reason": "r", "dry_run": True}
    ).json()
    assert body["dry_run"] and body["result"]["changed"] is True
    assert body["result"]["saved"]["selectors"] == {WEBHOOK_NAME: ORIGINAL}
    assert registered["cell-a"].writes == []
    assert records()[0].dry_run


def test_enable_keeps_an_edit_made_after_disabling(registered, operator_api):
    operator_api.post("/api/v1/webhook/cell-a/disable/", {"reason": "r"})
    edited = {"matchLabels": {"tier": "gold"}}
    registered["cell-a"].patch(
        VALIDATING_WEBHOOKS,
        None,
        WEBHOOK_NAME,
        [{"op": "replace", "path": "/webhooks/0/objectSelector", "value": edited}],
        patch_type="json",
    )
    # It guards pods again (with the edited selector), whatever the stale annotation says.
    states = {s["cell"]: s for s in operator_api.get("/api/v1/webhook/").json()["cells"]}
    assert states["cell-a"]["state"] == "enabled"
    response = operator_api.post("/api/v1/webhook/cell-a/enable/", {"reason": "r"})
    assert response.status_code == 200, response.content
    stored = stored_webhook(registered, "cell-a")
    assert stored["webhooks"][0]["objectSelector"] == edited
    assert SAVED_ANNOTATION not in stored["metadata"].get("annotations", {})
    # A later disable saves the edited selector, not the first one.
    operator_api.post("/api/v1/webhook/cell-a/disable/", {"reason": "r"})
    saved = json.loads(
        stored_webhook(registered, "cell-a")["metadata"]["annotations"][SAVED_ANNOTATION]
    )
    assert saved["selectors"] == {WEBHOOK_NAME: edited}


def test_enable_refuses_to_overwrite_a_partial_edit(fakes, operator_api):
    configuration = webhook_configuration(ORIGINAL)
    configuration["webhooks"].append(dict(configuration["webhooks"][0], name="second.podseidon"))
    fakes["cell-a"].add(VALIDATING_WEBHOOKS, configuration)
    operator_api.post("/api/v1/webhook/cell-a/disable/", {"reason": "r"})
    fakes["cell-a"].patch(
        VALIDATING_WEBHOOKS,
        None,
        WEBHOOK_NAME,
        [{"op": "replace", "path": "/webhooks/1/objectSelector", "value": {"matchLabels": {}}}],
        patch_type="json",
    )
    response = operator_api.post("/api/v1/webhook/cell-a/enable/", {"reason": "r"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert records()[-1].outcome == "failed"


def test_disabled_elsewhere_cannot_be_enabled_and_is_not_resaved(fakes, operator_api):
    fakes["cell-a"].add(VALIDATING_WEBHOOKS, webhook_configuration(NEVER_MATCHING_SELECTOR))
    state = operator_api.get("/api/v1/webhook/").json()["cells"][0]
    assert state["state"] == "disabled-by-someone-else"
    body = operator_api.post("/api/v1/webhook/cell-a/disable/", {"reason": "r"}).json()
    assert body["result"]["changed"] is False
    assert SAVED_ANNOTATION not in stored_webhook(fakes, "cell-a")["metadata"].get(
        "annotations", {}
    )
    response = operator_api.post("/api/v1/webhook/cell-a/enable/", {"reason": "r"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_disabled_by_console"


@pytest.fixture
def configured_url(podseidon, settings):
    """The configuration names where kube-apiserver calls the webhook (restore renders it)."""
    from podseidon_site.config import parse_config

    settings.PODSEIDON = parse_config(
        {
            **podseidon.model_dump(exclude={"webhook"}),
            "webhook": {"url": "https://podseidon-webhook.example.internal:8843"},
        }
    )
    return settings.PODSEIDON


def _disabled_by_kubectl(fakes) -> dict:
    """Registered from the configuration with a caBundle, then the runbook's kubectl patch."""
    from django.conf import settings

    from webhook.registration import render_webhook_configuration

    obj = render_webhook_configuration(settings.PODSEIDON, "cell-a", ca_bundle_pem=b"CA-PEM")
    obj["metadata"]["annotations"] = {"cert-manager.io/inject-ca-from": "podseidon/webhook"}
    obj["webhooks"][0]["objectSelector"] = NEVER_MATCHING_SELECTOR
    return fakes["cell-a"].add(VALIDATING_WEBHOOKS, obj)


def test_restore_from_configuration_after_a_disable_elsewhere(fakes, configured_url, operator_api):
    from django.conf import settings

    from protectors.clusters import recorder_for
    from webhook.registration import object_selector

    before = _disabled_by_kubectl(fakes)
    state = operator_api.get("/api/v1/webhook/").json()["cells"][0]
    assert state["state"] == "disabled-by-someone-else"
    dry = operator_api.post("/api/v1/webhook/cell-a/restore/", {"reason": "r", "dry_run": True})
    assert dry.status_code == 200 and dry.json()["result"]["changed"] is True
    assert stored_webhook(fakes, "cell-a") == before

    response = operator_api.post("/api/v1/webhook/cell-a/restore/", {"reason": "back on"})
    assert response.status_code == 200, response.content
    body = response.json()
    stored = stored_webhook(fakes, "cell-a")
    hook = stored["webhooks"][0]
    configured = object_selector(settings.PODSEIDON)
    assert hook["objectSelector"] == configured
    # The caBundle the operator registered is kept (the console holds no CA file here).
    assert hook["clientConfig"]["caBundle"] == before["webhooks"][0]["clientConfig"]["caBundle"]
    assert hook["clientConfig"]["url"].endswith("/cell-a")
    # Someone else's annotation stays.
    assert stored["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": "podseidon/webhook"
    }
    result = body["result"]
    assert result["previous"]["object_selectors"] == {WEBHOOK_NAME: NEVER_MATCHING_SELECTOR}
    assert result["previous"]["resource_version"] == before["metadata"]["resourceVersion"]
    assert result["restored"] == {WEBHOOK_NAME: configured}
    assert result["ca_bundle"] == "kept from the registered object"
    assert operator_api.get("/api/v1/webhook/").json()["cells"][0]["state"] == "enabled"
    dry_record, record = records()
    assert dry_record.dry_run and (record.action, record.outcome) == (
        "webhook-restore",
        "succeeded",
    )
    assert record.result["previous"]["object_selectors"] == {WEBHOOK_NAME: NEVER_MATCHING_SELECTOR}
    assert recorder_for("cell-a").flush(5)
    (event,) = [e for e in fakes["cell-a"].events if e["reason"] == "WebhookRestored"]
    assert event["involvedObject"]["kind"] == "ValidatingWebhookConfiguration"
    assert event["metadata"]["namespace"] == "default"
    assert "by otto" in event["message"] and "not-match-anything" in event["message"]

    # Again: nothing to restore, nothing written.
    again = operator_api.post("/api/v1/webhook/cell-a/restore/", {"reason": "again"}).json()
    assert again["result"]["changed"] is False
    assert stored_webhook(fakes, "cell-a") == stored


def test_restore_writes_the_configured_ca_bundle(fakes, configured_url, operator_api, tmp_path):
    import base64

    from django.conf import settings

    from podseidon_site.config import parse_config

    ca = tmp_path / "ca.crt"
    ca.write_bytes(b"CONFIGURED-CA")
    settings.PODSEIDON = parse_config(
        {
            **configured_url.model_dump(exclude={"webhook"}),
            "webhook": {**configured_url.webhook.model_dump(), "ca_bundle_file": str(ca)},
        }
    )
    _disabled_by_kubectl(fakes)
    body = operator_api.post("/api/v1/webhook/cell-a/restore/", {"reason": "r"}).json()
    assert body["result"]["ca_bundle"] == "webhook.ca_bundle_file"
    bundle = stored_webhook(fakes, "cell-a")["webhooks"][0]["clientConfig"]["caBundle"]
    assert base64.b64decode(bundle) == b"CONFIGURED-CA"
    assert str(tmp_path) not in json.dumps(body)


def test_restore_refuses_what_it_should_not_touch(fakes, operator_api):
    # The console disabled it: Re-enable restores exactly, not the configuration.
    fakes["cell-a"].add(VALIDATING_WEBHOOKS, webhook_configuration(ORIGINAL))
    operator_api.post("/api/v1/webhook/cell-a/disable/", {"reason": "r"})
    response = operator_api.post("/api/v1/webhook/cell-a/restore/", {"reason": "r"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "disabled_by_console"
    # Nothing the configuration can render (no webhook.url): refused, nothing written.
    fakes["cell-b"].add(VALIDATING_WEBHOOKS, webhook_configuration(NEVER_MATCHING_SELECTOR))
    before = stored_webhook(fakes, "cell-b")
    response = operator_api.post("/api/v1/webhook/cell-b/restore/", {"reason": "r"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "config_error"
    assert stored_webhook(fakes, "cell-b") == before
    assert [r.outcome for r in records()] == ["succeeded", "failed", "failed"]


def test_not_registered(fakes, operator_api):
    state = operator_api.get("/api/v1/webhook/").json()["cells"][0]
    assert state["state"] == "not-registered"
    assert operator_api.post("/api/v1/webhook/cell-a/disable/", {"reason": "r"}).status_code == 200
    response = operator_api.post("/api/v1/webhook/cell-a/enable/", {"reason": "r"})
    assert response.status_code == 409 and response.json()["error"]["code"] == "not_registered"


def test_unreachable_cell_fails_and_is_audited(registered, operator_api):
    response = operator_api.post("/api/v1/webhook/cell-dead/disable/", {"reason": "r"})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "cluster_unreachable"
    (record,) = records()
    assert (record.outcome, record.target) == ("failed", "webhook/cell-dead")
    assert record.message.startswith("cluster unreachable")


def test_disable_all_is_one_record_and_reports_each_cell(registered, operator_api):
    body = operator_api.post("/api/v1/webhook/disable-all/", {"reason": "fire"}).json()
    assert body["outcome"] == "partial"  # cell-dead cannot be reached
    per_cell = {c["cell"]: c for c in body["result"]["cells"]}
    assert per_cell["cell-a"]["outcome"] == per_cell["cell-b"]["outcome"] == "succeeded"
    assert per_cell["cell-dead"]["outcome"] == "failed"
    for cell in ("cell-a", "cell-b"):
        assert stored_webhook(registered, cell)["webhooks"][0]["objectSelector"] == (
            NEVER_MATCHING_SELECTOR
        )
    (record,) = records()
    assert (record.action, record.target, record.outcome) == (
        "webhook-disable-all",
        "webhook/*",
        "partial",
    )


def test_disable_all_dry_run(registered, operator_api, settings):
    from podseidon_site.config import parse_config
    from protectors import clusters

    settings.PODSEIDON = parse_config(
        {"cells": [{"id": "cell-a", "kubeconfig": "a"}, {"id": "cell-b", "kubeconfig": "b"}]}
    )
    clusters.reset()
    body = operator_api.post(
        "/api/v1/webhook/disable-all/", {"reason": "r", "dry_run": True}, format="json"
    ).json()
    assert body["outcome"] == "succeeded" and body["dry_run"]
    assert registered["cell-a"].writes == registered["cell-b"].writes == []


# -- pause / resume -------------------------------------------------------------------------


def test_pause_and_resume_an_aggregator_idempotently(core, operator_api):
    def post(verb):
        return operator_api.post(f"/api/v1/cells/cell-b/aggregator/{verb}/", {"reason": "drain"})

    first = post("pause").json()
    assert first["result"] == {"controller": "aggregator/cell-b", "paused": True, "changed": True}
    switch = ControllerSwitch.objects.get(controller_key="aggregator/cell-b")
    assert switch.paused and switch.changed_by == "otto" and switch.reason == "drain"
    assert post("pause").json()["result"]["changed"] is False
    assert post("resume").json()["result"]["changed"] is True
    assert post("resume").json()["result"]["changed"] is False
    assert not ControllerSwitch.objects.get(controller_key="aggregator/cell-b").paused
    assert [r.action for r in records()] == [
        "controller-pause",
        "controller-pause",
        "controller-resume",
        "controller-resume",
    ]
    cells = {c["id"]: c for c in operator_api.get("/api/v1/cells/").json()["cells"]}
    assert cells["cell-b"]["aggregator"]["switch"]["paused"] is False
    assert cells["cell-b"]["aggregator"]["switch"]["changed_by"] == "otto"


def test_pause_the_generator(core, operator_api):
    body = operator_api.post("/api/v1/controllers/generator/pause/", {"reason": "r"}).json()
    assert body["result"]["paused"] is True
    listed = operator_api.get("/api/v1/controllers/").json()["controllers"]
    generator = next(c for c in listed if c["key"] == "generator")
    assert generator["switch"]["paused"] is True and generator["configured"] is True


def test_pause_dry_runs_change_nothing(core, operator_api):
    for path in ("/api/v1/cells/cell-a/aggregator/pause/", "/api/v1/controllers/monitor/pause/"):
        body = operator_api.post(path, {"reason": "what if", "dry_run": True}).json()
        assert body["dry_run"] is True and body["result"]["changed"] is True
        assert body["message"].startswith("would pause")
    assert not ControllerSwitch.objects.filter(paused=True).exists()
    assert [(r.action, r.dry_run) for r in records()] == [("controller-pause", True)] * 2


# -- audit API ------------------------------------------------------------------------------


def test_audit_api_filters(registered, operator_api, users):
    from site_fakes import api_as

    operator_api.post("/api/v1/webhook/cell-a/disable/", {"reason": "one"})
    operator_api.post("/api/v1/webhook/cell-dead/disable/", {"reason": "two"})
    api_as(users["admin"]).post("/api/v1/webhook/cell-b/disable/", {"reason": "three"})
    viewer = api_as(users["viewer"])

    def reasons(**query):
        response = viewer.get("/api/v1/audit/", query)
        assert response.status_code == 200, response.content
        return [r["reason"] for r in response.json()["results"]]

    assert reasons() == ["three", "two", "one"]
    assert reasons(user="ada") == ["three"]
    assert reasons(outcome="failed") == ["two"]
    assert reasons(target="cell-a") == ["one"]
    assert reasons(action="webhook-disable", page_size=1) == ["three"]
    first = AuditRecord.objects.order_by("id").first()
    assert reasons(since=first.created_at.isoformat()) == ["three", "two", "one"]
    assert reasons(until=first.created_at.isoformat()) == []
    bad = viewer.get("/api/v1/audit/", {"outcome": "bogus"})
    assert bad.status_code == 400 and "outcome" in bad.json()["error"]["details"]
    detail = viewer.get(f"/api/v1/audit/{first.pk}/").json()
    assert detail["reason"] == "one" and detail["parameters"] == {"cell": "cell-a"}
    assert viewer.get("/api/v1/audit/999999/").json()["error"]["code"] == "not_found"


def test_a_slow_operation_keeps_beating_and_is_never_expired(
    users, operation_threads, monkeypatch
) -> None:
    import threading

    from audit import operations
    from audit.actions import Done
    from audit.models import Outcome

    monkeypatch.setattr(operations, "STALE_AFTER_SECONDS", 0.6)
    monkeypatch.setattr(operations, "HEARTBEAT_SECONDS", 0.1)
    release = threading.Event()

    def slow(progress) -> Done:
        # No progress reported while it works, like a long first list of the core cluster.
        release.wait(10)
        return Done(Outcome.SUCCEEDED, "done", {})

    operation, started = operations.start(
        user=users["operator"],
        action="remove-cell",
        target="cell/cell-a",
        reason="slow",
        parameters={"cell": "cell-a"},
        work=slow,
    )
    assert started
    try:
        for _ in range(8):  # well past STALE_AFTER_SECONDS without progress
            threading.Event().wait(0.2)
            assert operations.expire_stale() == 0
    finally:
        release.set()
    assert operations.wait(operation.pk, 10)
    operation.refresh_from_db()
    assert operation.state == "succeeded"
    assert [r.reason for r in records()] == ["slow"]
