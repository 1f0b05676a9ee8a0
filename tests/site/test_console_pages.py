"""Console pages: login everywhere, the PodProtector table (filters, sorting, pagination),
the detail page, and pages that keep rendering when the cache, Redis or a cluster is down."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from site_fakes import install_cache, protector, webhook_configuration

from audit.models import AuditRecord
from protectors.kube.client import PODPROTECTORS, VALIDATING_WEBHOOKS

pytestmark = pytest.mark.django_db

PAGES = ["/", "/protectors/", "/protectors/ns-1/web/", "/cells/", "/webhook/", "/audit/"]
ACTION_POSTS = [
    "/cells/cell-a/remove/",
    "/cells/cell-a/aggregator/pause/",
    "/cells/cell-a/aggregator/resume/",
    "/webhook/cell-a/disable/",
    "/webhook/cell-a/enable/",
    "/webhook/disable-all/",
]


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def names_on(body: str) -> list[str]:
    return re.findall(r'href="/protectors/[^/"]+/([^/"]+)/"', body)


@pytest.fixture
def many(fakes):
    """120 protectors over 3 namespaces; every 10th at risk; every 4th only in cell-b."""
    objects = []
    for i in range(120):
        cells = {"cell-b": 2} if i % 4 == 0 else {"cell-a": 3, "cell-b": 3}
        total = sum(cells.values())
        objects.append(
            protector(
                f"ns-{i % 3}",
                f"app-{i:03d}",
                required=total if i % 10 == 0 else 1,
                cells=cells,
                lag=i * 7,
            )
        )
    for obj in objects:
        fakes["core"].add(PODPROTECTORS, obj)
    install_cache(objects)
    return objects


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_users_are_sent_to_login(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert "/login/" in response["Location"]


@pytest.mark.parametrize("path", ACTION_POSTS)
def test_anonymous_posts_are_sent_to_login_and_do_nothing(client: Client, path: str) -> None:
    response = client.post(path, {"reason": "r", "confirm_cell": "cell-a", "confirm": "1"})
    assert response.status_code == 302
    assert "/login/" in response["Location"]
    assert AuditRecord.objects.count() == 0


def test_every_page_renders_for_a_viewer_without_secrets(fakes, users, tmp_path) -> None:
    install_cache([protector("ns-1", "web")])
    fakes["cell-a"].add(VALIDATING_WEBHOOKS, webhook_configuration({"matchLabels": {"a": "b"}}))
    client = logged_in(users["viewer"])
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
        body = response.content.decode()
        assert str(tmp_path) not in body, path  # no kubeconfig paths, even in error messages
        assert "Remove this cell" in body or path != "/cells/"
    overview = client.get("/").content.decode()
    assert "data-live-seconds=" in overview  # updates in place (base.html's script)
    assert "cell-dead" in overview and "unreachable" in overview
    for link in ("/protectors/", "/cells/", "/webhook/", "/audit/"):
        assert f'href="{link}"' in overview


def test_list_paginates_and_counts(many, users) -> None:
    client = logged_in(users["viewer"])
    body = client.get("/protectors/").content.decode()
    assert "120 PodProtectors" in body
    assert names_on(body)[:3] == ["app-000", "app-003", "app-006"]  # ns-0 first, by name
    assert len(names_on(body)) == 50
    assert "page 1 of 3" in body
    last = client.get("/protectors/?page=3").content.decode()
    assert len(names_on(last)) == 20
    assert "page 3 of 3" in last and 'rel="next"' not in last
    # Out of range or garbage page numbers do not fail.
    assert "page 3 of 3" in client.get("/protectors/?page=99").content.decode()
    assert "page 1 of 3" in client.get("/protectors/?page=x").content.decode()
    assert len(names_on(client.get("/protectors/?page_size=25").content.decode())) == 25


def test_list_filters(many, users) -> None:
    client = logged_in(users["viewer"])
    body = client.get("/protectors/?namespace=ns-1&name=app-01").content.decode()
    assert names_on(body) == ["app-010", "app-013", "app-016", "app-019"]
    at_risk = client.get("/protectors/?at_risk=yes").content.decode()
    assert "12 PodProtectors" in at_risk
    assert set(names_on(at_risk)) == {f"app-{i:03d}" for i in range(0, 120, 10)}
    assert "AT RISK" in at_risk
    only_a = client.get("/protectors/?cell=cell-a").content.decode()
    assert "90 PodProtectors" in only_a
    # Pagination links keep the filters.
    assert 'href="?cell=cell-a&amp;sort=namespace&amp;page=2"' in only_a
    assert "No PodProtector matches" in client.get("/protectors/?name=zzz").content.decode()


def test_list_sorts_by_column_both_ways(many, users) -> None:
    client = logged_in(users["viewer"])
    descending = client.get("/protectors/?sort=-bucket_lag").content.decode()
    assert names_on(descending)[:2] == ["app-119", "app-118"]
    ascending = client.get("/protectors/?sort=bucket_lag").content.decode()
    assert names_on(ascending)[:2] == ["app-000", "app-001"]
    # The active column's header link reverses it.
    assert 'href="?sort=-bucket_lag"' in ascending
    # An unknown sort key falls back to the default instead of failing.
    assert client.get("/protectors/?sort=secret").status_code == 200


def test_cache_not_synced_is_a_message_not_an_error(fakes, users) -> None:
    install_cache([protector("ns-1", "web")], synced=False)
    client = logged_in(users["viewer"])
    for path in ("/protectors/", "/protectors/ns-1/web/", "/cells/", "/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "still listing the core cluster" in response.content.decode(), path


def test_detail_shows_cells_buckets_source_and_events(fakes, users) -> None:
    obj = protector("ns-1", "web", required=2)
    obj["status"]["cells"][0]["admissionHistory"]["buckets"] = [
        {"startTime": "2026-01-01T00:00:01Z", "podName": "web-abc", "counter": 1},
        {"startTime": "2026-01-01T00:00:02Z", "endTime": "2026-01-01T00:00:03Z", "counter": 4},
    ]
    fakes["core"].add(PODPROTECTORS, obj)
    fakes["core"].add(
        _deployments(),
        {"metadata": {"namespace": "ns-1", "name": "web"}, "spec": {"replicas": 6}},
    )
    fakes["core"].add(
        _events(),
        {
            "metadata": {"namespace": "ns-1", "name": "ev-1"},
            "involvedObject": {"name": "web", "kind": "PodProtector"},
            "type": "Warning",
            "reason": "DanglingProtector",
            "message": "something happened",
            "lastTimestamp": "2026-01-01T00:00:05Z",
        },
    )
    install_cache([obj])
    body = logged_in(users["viewer"]).get("/protectors/ns-1/web/").content.decode()
    assert "cell-a" in body and "cell-b" in body
    assert body.count('class="bucket"') == 2
    assert "web-abc" in body and "2026-01-01T00:00:02Z" in body
    assert "Deployment web" in body
    assert "something happened" in body


def test_detail_tolerates_a_missing_workload_and_failing_events(fakes, users, monkeypatch) -> None:
    from protectors.kube.client import KubeError

    obj = protector("ns-1", "web")
    install_cache([obj])
    real_list = fakes["core"].list

    def failing_list(resource, namespace=None, **kwargs):
        if resource.plural == "events":
            raise KubeError(403, "Forbidden", "events is forbidden")
        return real_list(resource, namespace, **kwargs)

    monkeypatch.setattr(fakes["core"], "list", failing_list)
    response = logged_in(users["viewer"]).get("/protectors/ns-1/web/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "Events could not be listed" in body and "Forbidden" in body
    assert "dangling" in body


def test_unknown_protector_is_404(fakes, users) -> None:
    install_cache([])
    assert logged_in(users["viewer"]).get("/protectors/ns-1/nope/").status_code == 404


def test_pages_render_when_redis_is_down(fakes, users, settings) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    install_cache([protector("ns-1", "web")])
    client = logged_in(users["viewer"])
    for path in ("/", "/cells/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "Redis unreachable" in response.content.decode(), path


def test_audit_page_filters(fakes, users) -> None:
    AuditRecord.objects.create(
        username="otto",
        action="webhook-disable",
        target="webhook/cell-a",
        reason="fire",
        outcome="succeeded",
    )
    AuditRecord.objects.create(
        username="ada",
        action="remove-cell",
        target="cell/cell-b",
        reason="gone",
        outcome="failed",
        message="cluster unreachable",
    )
    client = logged_in(users["viewer"])
    assert client.get("/audit/").content.decode().count('class="record"') == 2
    by_user = client.get("/audit/?user=ott").content.decode()
    assert by_user.count('class="record"') == 1 and "webhook/cell-a" in by_user
    failed = client.get("/audit/?outcome=failed").content.decode()
    assert failed.count('class="record"') == 1 and "cluster unreachable" in failed
    by_action = client.get("/audit/?action=remove-cell").content.decode()
    assert by_action.count('class="record"') == 1 and "cell/cell-b" in by_action


def _deployments():
    from protectors.kube.client import Resource

    return Resource("apps", "v1", "deployments")


def _events():
    from console.services import EVENTS

    return EVENTS
