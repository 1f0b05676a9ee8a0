"""The read endpoints: PodProtectors from the cache (filters, sorting, pages, 10,000 rows), the
detail page's extra reads, cells, webhook state and controllers."""

from __future__ import annotations

import time

import pytest
from site_fakes import finished_operation, install_cache, protector

from protectors.kube.client import DEPLOYMENTS, PODPROTECTORS, Resource

pytestmark = pytest.mark.django_db

EVENTS = Resource("", "v1", "events")


@pytest.fixture
def table(fakes):
    objects = [
        protector("ns-1", "web", required=2, cells={"cell-a": 3, "cell-b": 2}, lag=40),
        protector("ns-1", "api", required=5, cells={"cell-a": 2, "cell-b": 3}),  # at risk
        protector("ns-2", "web-admin", required=1, cells={"cell-b": 4}, lag=900),
        protector(
            "ns-2",
            "db",
            required=9,
            cells={"cell-a": 1},
            labels={"podseidon.kubewharf.io/source-kind": "StatefulSet"},
        ),
    ]
    install_cache(objects)
    for obj in objects:
        fakes["core"].add(PODPROTECTORS, obj)
    return fakes


def names(api, **query) -> list[str]:
    response = api.get("/api/v1/podprotectors/", query)
    assert response.status_code == 200, response.content
    return [f"{r['namespace']}/{r['name']}" for r in response.json()["results"]]


def test_list_filters(table, viewer_api) -> None:
    assert names(viewer_api) == ["ns-1/api", "ns-1/web", "ns-2/db", "ns-2/web-admin"]
    assert names(viewer_api, namespace="ns-2") == ["ns-2/db", "ns-2/web-admin"]
    assert names(viewer_api, name="WEB") == ["ns-1/web", "ns-2/web-admin"]
    assert names(viewer_api, source_kind="statefulset") == ["ns-2/db"]
    assert names(viewer_api, source_name="web") == ["ns-1/web"]
    assert names(viewer_api, at_risk="true") == ["ns-1/api", "ns-2/db"]
    assert names(viewer_api, at_risk="false") == ["ns-1/web", "ns-2/web-admin"]
    assert names(viewer_api, cell="cell-a") == ["ns-1/api", "ns-1/web", "ns-2/db"]


def test_list_sorts_and_pages(table, viewer_api) -> None:
    assert names(viewer_api, sort="-required") == [
        "ns-2/db",
        "ns-1/api",
        "ns-1/web",
        "ns-2/web-admin",
    ]
    assert names(viewer_api, sort="bucket_lag")[-2:] == ["ns-1/web", "ns-2/web-admin"]
    assert names(viewer_api, sort="estimated")[0] == "ns-2/db"
    body = viewer_api.get("/api/v1/podprotectors/", {"page_size": 3, "page": 2}).json()
    assert (body["count"], body["pages"], body["page"]) == (4, 2, 2)
    assert [r["name"] for r in body["results"]] == ["web-admin"]
    row = viewer_api.get("/api/v1/podprotectors/", {"name": "api"}).json()["results"][0]
    assert row["at_risk"] is True and row["required"] == 5 and row["estimated"] == 5
    assert [c["cell_id"] for c in row["cells"]] == ["cell-a", "cell-b"]


@pytest.mark.parametrize(
    "query, field",
    [
        ({"sort": "colour"}, "sort"),
        ({"at_risk": "maybe"}, "at_risk"),
        ({"page": 0}, "page"),
        ({"page_size": 501}, "page_size"),
    ],
)
def test_bad_list_queries(table, viewer_api, query, field) -> None:
    response = viewer_api.get("/api/v1/podprotectors/", query)
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]


def test_not_synced_is_a_503(fakes, viewer_api) -> None:
    install_cache([], synced=False)
    response = viewer_api.get("/api/v1/podprotectors/")
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert response.json()["error"]["code"] == "cache_not_synced"
    cells = viewer_api.get("/api/v1/cells/").json()  # degrades instead of failing
    assert cells["cache_synced"] is False and cells["cells"][0]["totals"] is None


def test_ten_thousand_protectors_page_fast(fakes, viewer_api) -> None:
    objects = [
        protector(f"ns-{i % 50}", f"app-{i:05d}", required=i % 7, lag=i % 1000)
        for i in range(10_000)
    ]
    install_cache(objects)
    timings = []
    for query in (
        {},
        {"sort": "-bucket_lag", "page": 100},
        {"name": "app-09", "at_risk": "true", "sort": "estimated"},
        {"namespace": "ns-7", "cell": "cell-b", "sort": "-name", "page_size": 500},
    ):
        started = time.perf_counter()
        response = viewer_api.get("/api/v1/podprotectors/", query)
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200
    assert response.json()["count"] == 200
    assert max(timings) < 0.5, timings


def test_detail(table, viewer_api) -> None:
    core = table["core"]
    core.add(
        DEPLOYMENTS,
        {
            "metadata": {"namespace": "ns-1", "name": "web"},
            "spec": {"replicas": 5},
            "status": {"availableReplicas": 5},
        },
    )
    for i, when in enumerate(("2026-01-01T00:00:01Z", "2026-01-01T00:00:09Z")):
        core.add(
            EVENTS,
            {
                "metadata": {"namespace": "ns-1", "name": f"web.{i}"},
                "involvedObject": {"kind": "PodProtector", "name": "web"},
                "reason": f"R{i}",
                "message": "m",
                "type": "Normal",
                "lastTimestamp": when,
            },
        )
    body = viewer_api.get("/api/v1/podprotectors/ns-1/web/").json()
    assert body["spec"]["minAvailable"] == 2
    assert [c["cellID"] for c in body["status"]["cells"]] == ["cell-a", "cell-b"]
    assert body["source"]["found"] is True and body["source"]["replicas"] == 5
    assert [e["reason"] for e in body["events"]["items"]] == ["R1", "R0"]
    assert body["row"]["bucket_lag"] == 40

    dangling = viewer_api.get("/api/v1/podprotectors/ns-1/api/").json()["source"]
    assert dangling["found"] is False and "dangling" in dangling["error"]
    missing = viewer_api.get("/api/v1/podprotectors/ns-1/nothing/")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_cells(table, viewer_api, operator_api, operation_threads) -> None:
    finished_operation(
        operator_api,
        operator_api.post(
            "/api/v1/cells/cell-a/remove-from-protectors/", {"reason": "r"}, format="json"
        ),
    )
    install_cache(table["core"].list(PODPROTECTORS)["items"])
    body = viewer_api.get("/api/v1/cells/").json()
    cells = {c["id"]: c for c in body["cells"]}
    assert list(cells) == ["cell-a", "cell-b", "cell-dead"]
    assert cells["cell-a"]["totals"]["protectors"] == 3
    assert cells["cell-a"]["totals"]["available"] == 3 + 2 + 1
    assert cells["cell-a"]["pending_removal"] == 3
    assert cells["cell-b"]["totals"]["total"] == 2 + 3 + 4
    assert cells["cell-dead"]["totals"]["protectors"] == 0
    assert cells["cell-a"]["reachability"]["reachable"] is True
    assert cells["cell-a"]["reachability"]["version"] == "v1.24.0-fake"
    dead = cells["cell-dead"]["reachability"]
    assert dead["reachable"] is False and dead["error"]
    assert cells["cell-a"]["aggregator"]["key"] == "aggregator/cell-a"
    assert cells["cell-a"]["aggregator"]["leader"] is None  # nobody leads in this test


def test_a_cell_left_only_in_status_is_listed(fakes, viewer_api) -> None:
    install_cache([protector("ns", "p", cells={"cell-a": 1, "cell-old": 2})])
    cells = {c["id"]: c for c in viewer_api.get("/api/v1/cells/").json()["cells"]}
    assert cells["cell-old"]["configured"] is False
    assert cells["cell-old"]["totals"]["available"] == 2


def test_controllers_show_leaders_from_redis(fakes, viewer_api, settings) -> None:
    import redis

    from workers.keys import RedisKeys

    keys = RedisKeys(settings.PODSEIDON_REDIS_PREFIX)
    client = redis.Redis.from_url(settings.REDIS_URL)
    now = time.time()
    try:
        client.sadd(keys.leaders, "generator")
        client.hset(
            keys.leader("generator"),
            mapping={
                "holder": "h:1:x",
                "hostname": "h",
                "pid": "1",
                "worker": "celery@h",
                "token": "7",
                "since": f"{now - 60}",
                "renewed_at": f"{now - 1}",
                "lease_duration": "15",
                "running": "1",
                "last_error": "boom",
            },
        )
    except redis.RedisError:
        pytest.skip("needs Redis (make test starts one)")
    try:
        body = viewer_api.get("/api/v1/controllers/").json()
    finally:
        client.delete(keys.leaders, keys.leader("generator"))
    assert body["redis_error"] is None
    by_key = {c["key"]: c for c in body["controllers"]}
    assert set(by_key) >= {"generator", "aggregator/cell-a", "aggregator/cell-b", "monitor"}
    leader = by_key["generator"]["leader"]
    assert leader["active"] and leader["token"] == 7 and leader["worker"] == "celery@h"
    assert 0 <= leader["heartbeat_age_seconds"] < 5 and leader["last_error"] == "boom"


def test_controllers_without_redis(fakes, viewer_api, settings) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    body = viewer_api.get("/api/v1/controllers/").json()
    assert body["redis_error"].startswith("Redis unreachable")
    assert all(c["leader"] is None for c in body["controllers"])
