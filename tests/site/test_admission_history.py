"""The admission history: the webhook's writer (bounded queue, background thread, Redis) and the
console's reader (Redis, or Prometheus range queries from a fake server on loopback)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import redis

from console import history as reader
from podseidon_site.config import ConsoleConfig
from webhook.decision import AUDIT_KEY_REJECT_BY
from webhook.history import HistoryWriter, redis_factory, refusals_key
from webhook.review import ReviewRequest, Verdict

REDIS_URL = "redis://127.0.0.1:6379/0"


def _review(name: str = "web-0", user: str = "alice") -> ReviewRequest:
    return ReviewRequest(
        uid=str(uuid.uuid4()),
        operation="DELETE",
        group="",
        resource="pods",
        sub_resource="",
        namespace="shop",
        name=name,
        object=None,
        old_object={"metadata": {"name": name, "namespace": "shop"}},
        dry_run=False,
        username=user,
    )


REFUSED = Verdict.reject(429, "too few", {AUDIT_KEY_REJECT_BY: "shop/web"})


@pytest.fixture
def prefix(settings) -> str:
    settings.REDIS_URL = REDIS_URL
    settings.PODSEIDON_REDIS_PREFIX = f"history-test-{uuid.uuid4().hex[:8]}"
    reader.reset_client()
    yield settings.PODSEIDON_REDIS_PREFIX
    reader.reset_client()
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{settings.PODSEIDON_REDIS_PREFIX}:history:*"))
    if keys:
        client.delete(*keys)


def _wait(predicate, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_counts_and_refusals_reach_redis_and_the_console_reads_them(prefix) -> None:
    writer = HistoryWriter(redis_factory(REDIS_URL), prefix=prefix)
    try:
        for _ in range(3):
            writer.record("cell-a", _review(), Verdict.allow())
        writer.record("cell-a", _review("web-1", "bob"), REFUSED)
        writer.record("cell-b", _review("web-2"), REFUSED)
        _wait(lambda: writer.written == 5)
    finally:
        writer.stop()
    data = reader.admissions(ConsoleConfig(), ["cell-a", "cell-b"])
    assert data["error"] is None and data["source"] == "redis"
    cells = {c["id"]: c for c in data["cells"]}
    assert (cells["cell-a"]["admitted_total"], cells["cell-a"]["refused_total"]) == (3, 1)
    assert (cells["cell-b"]["admitted_total"], cells["cell-b"]["refused_total"]) == (0, 1)
    assert len(cells["cell-a"]["refused"]) == 60 and cells["cell-a"]["refused"][-1] == 1
    log = reader.refusals("shop", "web")
    assert [(e["pod"], e["cell"], e["code"], e["user"]) for e in log["refusals"]] == [
        ("web-2", "cell-b", 429, "alice"),
        ("web-1", "cell-a", 429, "bob"),
    ]


def test_the_refusal_log_is_bounded(prefix) -> None:
    writer = HistoryWriter(redis_factory(REDIS_URL), prefix=prefix)
    try:
        for i in range(130):
            writer.record("cell-a", _review(f"p-{i}"), REFUSED)
        _wait(lambda: writer.written == 130)
    finally:
        writer.stop()
    client = redis.Redis.from_url(REDIS_URL)
    key = refusals_key(prefix, "shop", "web")
    assert client.llen(key) == 100
    assert 0 < client.ttl(key) <= 24 * 3600


def test_an_unreachable_redis_costs_history_never_time(prefix) -> None:
    writer = HistoryWriter(redis_factory("redis://127.0.0.1:1/0"), prefix=prefix, queue_size=50)
    try:
        started = time.monotonic()
        for _ in range(500):  # more than the queue holds
            writer.record("cell-a", _review(), REFUSED)
        assert time.monotonic() - started < 0.5  # never waited on Redis
        _wait(lambda: writer.dropped >= 450)
    finally:
        writer.stop()
    assert writer.written == 0


def test_redis_down_is_reported_not_drawn_as_zero(settings) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    reader.reset_client()
    try:
        data = reader.admissions(ConsoleConfig(), ["cell-a"])
        assert data["cells"] == [] and "redis unavailable" in data["error"]
        assert "redis unavailable" in reader.refusals("shop", "web")["error"]
    finally:
        reader.reset_client()


class _FakePrometheus(BaseHTTPRequestHandler):
    queries: list[dict] = []
    answer: dict = {}

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        type(self).queries.append({"path": parts.path, **parse_qs(parts.query)})
        body = json.dumps(type(self).answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_charts_read_prometheus_range_queries_when_configured() -> None:
    now = 1_800_000_000.0
    minutes = reader.minute_starts(now)
    last = minutes[-1] + 60  # the point at t is the increase over the minute before t
    _FakePrometheus.queries = []
    _FakePrometheus.answer = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {"metric": {"cell": "cell-a", "allowed": "false"}, "values": [[last, "4"]]},
                {"metric": {"cell": "cell-a", "allowed": "true"}, "values": [[last - 60, "7.2"]]},
                {"metric": {"cell": "cell-z", "allowed": "false"}, "values": [[last, "1"]]},
            ],
        },
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakePrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = ConsoleConfig(prometheus_url=f"http://127.0.0.1:{server.server_port}/")
        data = reader.admissions(config, ["cell-a", "cell-b"], now=now)
    finally:
        server.shutdown()
        server.server_close()
    assert data["source"] == "prometheus" and data["error"] is None
    (query,) = _FakePrometheus.queries
    assert query["path"] == "/api/v1/query_range"
    assert query["query"] == [reader.PROMETHEUS_QUERY] and query["step"] == ["60"]
    assert float(query["end"][0]) == last and float(query["start"][0]) == minutes[0] + 60
    cells = {c["id"]: c for c in data["cells"]}
    assert list(cells) == ["cell-a", "cell-b", "cell-z"]
    assert cells["cell-a"]["refused"][-1] == 4 and cells["cell-a"]["admitted"][-2] == 7
    assert cells["cell-b"]["refused_total"] == 0 and cells["cell-z"]["refused_total"] == 1


def test_prometheus_down_is_an_error() -> None:
    from tests.integration.webhook_env import free_port

    config = ConsoleConfig(prometheus_url=f"http://127.0.0.1:{free_port()}")
    data = reader.admissions(config, ["cell-a"])
    assert data["cells"] == [] and data["error"].startswith("prometheus unavailable")
