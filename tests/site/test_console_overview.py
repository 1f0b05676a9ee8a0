"""The overview's counts of dangling PodProtectors (from the source-workload watch cache) and its
recent rejections per cell (scraped from the webhook's metrics), on the page and in the API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client
from site_fakes import (
    MetricsServer,
    api_as,
    closed_port,
    install_cache,
    install_workloads,
    protector,
)

from podseidon_site.config import ConfigError, parse_config
from webhook import rejections
from webhook.rejections import RejectionHistory, display_url, parse_rejections

pytestmark = pytest.mark.django_db

T0 = 1_800_000_000.0


@pytest.fixture
def metrics() -> Iterator[MetricsServer]:
    server = MetricsServer()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _no_leftover_scraper() -> Iterator[None]:
    yield
    rejections.stop_scraper()


def workload(namespace: str, name: str) -> dict:
    return {"metadata": {"namespace": namespace, "name": name}}


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# -- dangling ---------------------------------------------------------------------------------


@pytest.fixture
def table(fakes):
    statefulset = protector("ns-1", "db", labels={})
    statefulset["metadata"]["labels"].update(
        {
            "podseidon.kubewharf.io/source-kind": "StatefulSet",
            "podseidon.kubewharf.io/source-resource": "statefulsets",
        }
    )
    hand_made = protector("ns-1", "by-hand")
    for key in list(hand_made["metadata"]["labels"]):
        del hand_made["metadata"]["labels"][key]
    young = protector("ns-2", "new")
    young["metadata"]["creationTimestamp"] = "2999-01-01T00:00:00Z"  # created "just now"
    objects = [
        protector("ns-1", "web"),
        protector("ns-1", "gone-1"),
        protector("ns-2", "gone-2"),
        statefulset,
        hand_made,
        young,
    ]
    for obj in objects:
        obj["metadata"].setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
    install_cache(objects)
    return fakes


def test_dangling_protectors_are_counted_and_listed(table, users) -> None:
    install_workloads({"deployments.apps": [workload("ns-1", "web")]})
    page = logged_in(users["viewer"]).get("/").content.decode()
    assert "Dangling (source workload gone)" in page
    assert '<span class="bad">2</span>' in page
    assert 'href="/protectors/ns-1/gone-1/"' in page and 'href="/protectors/ns-2/gone-2/"' in page
    assert "ns-1/web" not in page and "ns-2/new" not in page
    # The StatefulSet's kind is not protected by this configuration: not checked, and said so.
    assert "1 from workload kinds the generator does not watch" in page

    counts = api_as(users["viewer"]).get("/api/v1/overview/").json()["counts"]
    assert counts["dangling"] == 2
    assert counts["dangling_protectors"] == ["ns-1/gone-1", "ns-2/gone-2"]
    assert (counts["dangling_unchecked"], counts["dangling_complete"]) == (1, True)
    assert counts["protectors"] == 6


def test_a_workload_coming_back_ends_dangling(table, users) -> None:
    install_workloads(
        {
            "deployments.apps": [
                workload("ns-1", "web"),
                workload("ns-1", "gone-1"),
                workload("ns-2", "gone-2"),
            ]
        }
    )
    counts = api_as(users["viewer"]).get("/api/v1/overview/").json()["counts"]
    assert (counts["dangling"], counts["dangling_protectors"]) == (0, [])


def test_dangling_count_while_the_workloads_are_still_listing(table, users) -> None:
    install_workloads({"deployments.apps": []}, synced=False)
    counts = api_as(users["viewer"]).get("/api/v1/overview/").json()["counts"]
    assert counts["dangling"] == 0 and counts["dangling_complete"] is False
    page = logged_in(users["viewer"]).get("/").content.decode()
    assert "still listing the workloads: may be incomplete" in page


# -- rejections: the history ------------------------------------------------------------------


def test_parse_counts_only_rejections_per_cell(metrics) -> None:
    metrics.set_rejections(
        {"cell-a": {"Ok": 40, "Denied": 3, "Retry": 2}, "cell-b": {"AlreadyUnhealthy": 5}}
    )
    assert parse_rejections(metrics.text) == {"cell-a": 5.0, "cell-b": 0.0}


def test_windows_add_increases_across_sources_and_restarts(metrics) -> None:
    other = MetricsServer()
    try:
        history = RejectionHistory((metrics.url, other.url), timeout=2)
        metrics.set_rejections({"cell-a": {"Denied": 10}})
        other.set_rejections({"cell-a": {"Denied": 1}, "cell-b": {"Retry": 4}})
        history.scrape(now=T0)
        metrics.set_rejections({"cell-a": {"Denied": 12}})
        history.scrape(now=T0 + 50 * 60)  # 50 minutes later: +2 in cell-a
        metrics.set_rejections({"cell-a": {"Denied": 15}})
        other.set_rejections({"cell-a": {"Denied": 1}, "cell-b": {"Retry": 6}})
        history.scrape(now=T0 + 58 * 60)  # +3 in cell-a, +2 in cell-b
        metrics.set_rejections({"cell-a": {"Denied": 1}})  # that webhook process restarted
        history.scrape(now=T0 + 60 * 60)  # +1 in cell-a
        summary = history.summary(["cell-a", "cell-b"], now=T0 + 60 * 60)
    finally:
        other.close()
    five, sixty = summary["windows"]
    assert (five["minutes"], sixty["minutes"]) == (5, 60)
    # A window starts from the last sample at or before its start (here the 50th minute), so
    # it may hold up to one scrape interval more than its length: +3 +1 and +2.
    assert five["rejected"] == {"cell-a": 4, "cell-b": 2}
    assert sixty["rejected"] == {"cell-a": 2 + 3 + 1, "cell-b": 2}
    assert sixty["covered_minutes"] == 60.0
    assert summary["since_start"] == {"cell-a": 1 + 1, "cell-b": 6}
    assert summary["complete"] is True


def test_a_short_history_is_not_a_zero(metrics) -> None:
    history = RejectionHistory((metrics.url,), timeout=2)
    metrics.set_rejections({"cell-a": {"Denied": 7}})
    history.scrape(now=T0)
    summary = history.summary(["cell-a"], now=T0)
    assert [w["rejected"] for w in summary["windows"]] == [{"cell-a": None}, {"cell-a": None}]
    assert summary["since_start"] == {"cell-a": 7}
    history.scrape(now=T0 + 120)
    summary = history.summary(["cell-a"], now=T0 + 120)
    assert summary["windows"][0]["rejected"] == {"cell-a": 0}
    assert summary["windows"][1]["covered_minutes"] == 2.0


def test_unreachable_sources_are_shown_as_such_never_as_zero(metrics) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/metrics"
    history = RejectionHistory((metrics.url, dead), timeout=1)
    metrics.set_rejections({"cell-a": {"Denied": 1}})
    history.scrape(now=T0)
    metrics.set_rejections({"cell-a": {"Denied": 4}})
    history.scrape(now=T0 + 60)
    summary = history.summary(["cell-a"], now=T0 + 60)
    assert summary["complete"] is False
    assert summary["windows"][0]["rejected"] == {"cell-a": 3}  # what the live source saw
    up, down = summary["sources"]
    assert up["up"] is True and down["up"] is False
    assert "unreachable" in down["error"] and down["last_success_age_seconds"] is None
    # Every source down: no number at all.
    metrics.status = 500
    history.scrape(now=T0 + 120)
    summary = history.summary(["cell-a"], now=T0 + 120)
    assert [w["rejected"] for w in summary["windows"]] == [{"cell-a": None}, {"cell-a": None}]
    assert summary["since_start"] == {"cell-a": None}
    assert summary["sources"][0]["error"] == "HTTP 500 Internal Server Error"
    assert summary["sources"][0]["last_success_age_seconds"] == 60


def test_metrics_urls_are_validated_and_shown_without_credentials() -> None:
    with pytest.raises(ConfigError, match=r"console.webhook_metrics_urls: .*not an http"):
        parse_config({"console": {"webhook_metrics_urls": ["webhook:9090/metrics"]}})
    with pytest.raises(ConfigError, match="more than once"):
        parse_config({"console": {"webhook_metrics_urls": ["http://a:1/m", "http://a:1/m"]}})
    with pytest.raises(ConfigError, match="metrics_timeout_seconds"):
        parse_config({"console": {"metrics_timeout_seconds": 0}})
    assert display_url("https://user:secret@hook:9090/metrics") == "https://hook:9090/metrics"


# -- rejections: the page and the API ---------------------------------------------------------


def test_overview_scrapes_the_configured_webhooks(fakes, users, settings, metrics) -> None:
    dead = f"http://scraper:secret@127.0.0.1:{closed_port()}/metrics"
    settings.PODSEIDON = parse_config(
        {
            **settings.PODSEIDON.model_dump(exclude={"console"}),
            "console": {"webhook_metrics_urls": [metrics.url, dead], "metrics_timeout_seconds": 1},
        }
    )
    install_cache([protector("ns-1", "web")])
    install_workloads({"deployments.apps": [workload("ns-1", "web")]})
    metrics.set_rejections({"cell-a": {"Denied": 2}, "cell-b": {"Ok": 9}})
    page = logged_in(users["viewer"]).get("/").content.decode()
    assert "Recent rejections" in page
    assert "Some webhook metrics sources did not answer" in page
    assert metrics.url in page and "unreachable" in page
    assert "secret" not in page
    assert "The history starts now" in page

    # A second round (the scraper's next tick, done here at once) turns history into windows.
    history = rejections._scraper.history
    metrics.set_rejections({"cell-a": {"Denied": 5}, "cell-b": {"Ok": 9}})
    history.scrape()
    body = api_as(users["viewer"]).get("/api/v1/overview/").json()["rejections"]
    assert body["configured"] is True and body["complete"] is False
    assert body["windows"][0]["rejected"] == {"cell-a": 3, "cell-b": 0, "cell-dead": 0}
    assert body["since_start"]["cell-a"] == 5
    assert [s["up"] for s in body["sources"]] == [True, False]
    assert body["sources"][1]["url"].startswith("http://127.0.0.1:")


def test_overview_says_when_rejections_are_not_configured(fakes, users) -> None:
    install_cache([])
    install_workloads({"deployments.apps": []})
    page = logged_in(users["viewer"]).get("/").content.decode()
    assert "Not configured: list the webhook's metrics URLs" in page
    body = api_as(users["viewer"]).get("/api/v1/overview/").json()
    assert body["rejections"]["configured"] is False
    assert {c["id"] for c in body["cells"]} == {"cell-a", "cell-b", "cell-dead"}
    assert body["core"]["reachable"] is True
