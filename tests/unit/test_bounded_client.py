"""BoundedClient: a peer that accepts connections but never answers (a stopped process whose
kernel still completes TCP handshakes) cannot hold a request past its budget."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client as k8s

from protectors.kube.client import PODPROTECTORS, KubeError
from webhook.bounded_client import BoundedClient, NoAnswer


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that completes TCP handshakes (the listen backlog) and then says
    nothing, like a kube-apiserver frozen with SIGSTOP."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def _client(url: str) -> BoundedClient:
    configuration = k8s.Configuration()
    configuration.host = url
    configuration.verify_ssl = False
    configuration.api_key = {"authorization": "secret-token"}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return BoundedClient(k8s.ApiClient(configuration))


@pytest.mark.parametrize("scheme", ["https", "http"], ids=["tls-handshake", "response"])
def test_silent_peer_is_bounded_by_the_budget(silent_port: int, scheme: str) -> None:
    client = _client(f"{scheme}://127.0.0.1:{silent_port}")
    started = time.monotonic()
    with pytest.raises(NoAnswer) as raised:
        client.replace_status(PODPROTECTORS, "ns", "p", {"status": {}}, 0.3)
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 1.0, elapsed  # once, not retried
    assert raised.value.budget == 0.3
    assert "no answer within 300 ms" in str(raised.value)


def test_no_budget_left_means_no_request(silent_port: int) -> None:
    with pytest.raises(NoAnswer):
        _client(f"http://127.0.0.1:{silent_port}").get(PODPROTECTORS, "ns", "p", 0)


def test_refused_connection_is_unreachable_not_silent() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(KubeError) as raised:
        _client(f"http://127.0.0.1:{port}").get(PODPROTECTORS, "ns", "p", 2.0)
    assert not isinstance(raised.value, NoAnswer)
    assert raised.value.status == 0 and raised.value.reason == "Unreachable"


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str | None, bytes]] = []
    status = 200

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append((self.command, self.path, self.headers["Authorization"], body))
        if type(self).status == 409:
            answer = {"kind": "Status", "reason": "Conflict", "message": "modified", "code": 409}
        else:
            answer = {"metadata": {"resourceVersion": "8"}}
        payload = json.dumps(answer).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


def test_writes_authenticate_and_map_status_errors() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = _client(f"http://127.0.0.1:{server.server_address[1]}")
        written = client.replace_status(PODPROTECTORS, "ns", "p", {"status": {"a": 1}}, 2.0)
        assert written == {"metadata": {"resourceVersion": "8"}}
        method, path, auth, body = _Recorder.seen[-1]
        assert (method, path, auth) == (
            "PUT",
            "/apis/podseidon.kubewharf.io/v1alpha1/namespaces/ns/podprotectors/p/status",
            "Bearer secret-token",
        )
        assert json.loads(body) == {"status": {"a": 1}}
        _Recorder.status = 409
        with pytest.raises(KubeError) as raised:
            client.replace_status(PODPROTECTORS, "ns", "p", {}, 2.0)
        assert raised.value.is_conflict and raised.value.message == "modified"
    finally:
        server.shutdown()
        server.server_close()
