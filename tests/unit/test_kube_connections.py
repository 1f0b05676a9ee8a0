"""The request pool (protectors/kube/connections.py) against a real TLS server on loopback:
keep-alive, the one retry it allows, TLS settings, timeouts, and how KubeClient and the
webhook's BoundedClient see its answers and failures."""

from __future__ import annotations

import http.client
import itertools
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from kubernetes import client as k8s

from protectors.kube import transport
from protectors.kube.client import PODPROTECTORS, KubeClient, KubeError
from protectors.kube.connections import ConnectionPool, pool_for
from sandbox.pki import make_ca
from tests.unit.scripted_server import WAIT, Reply, ScriptedServer, Seen, answer, chunked
from webhook.bounded_client import BoundedClient, NoAnswer

pytestmark = pytest.mark.timeout(60)

PATH = PODPROTECTORS.path("ns", "p", "status")
HEADERS = {"Accept": "application/json", "Authorization": "Bearer secret-token"}


def _pool(server: ScriptedServer, size: int = 4, **settings: object) -> ConnectionPool:
    configuration = server.configuration()
    for name, value in settings.items():
        setattr(configuration, name, value)
    return ConnectionPool(configuration, size=size)


def _replies(*replies: Reply) -> object:
    """Answer the requests in order with ``replies``, then with a plain 200."""
    queue = list(replies)
    lock = threading.Lock()

    def reply(seen: Seen) -> Reply:
        with lock:
            return queue.pop(0) if queue else Reply(answer())

    return reply


def test_requests_share_one_kept_alive_connection(server: ScriptedServer) -> None:
    pool = _pool(server)
    for i in range(20):
        status, reason, data = pool.request("PUT", PATH, HEADERS, b'{"i":%d}' % i, 5.0)
        assert (status, reason, data) == (200, "OK", b"{}")
    assert server.connections == 1
    assert [s.body for s in server.seen] == [b'{"i":%d}' % i for i in range(20)]
    first = server.seen[0]
    assert (first.method, first.target) == ("PUT", PATH)
    assert first.headers["host"] == f"127.0.0.1:{server.port}"
    assert first.headers["content-length"] == str(len(first.body))
    assert first.headers["authorization"] == "Bearer secret-token"


def test_kube_client_requests_carry_the_api_clients_headers(server: ScriptedServer) -> None:
    api = k8s.ApiClient(server.configuration())
    api.set_default_header("Impersonate-User", "system:serviceaccount:podseidon:aggregator")
    client = KubeClient(api)
    client.replace_status(PODPROTECTORS, "ns", "p", {"status": {"a": 1}})
    client.list(PODPROTECTORS, "ns", label_selector="app=web")
    put, listed = server.seen
    assert put.target == PATH and put.body == b'{"status":{"a":1}}'
    assert put.headers["impersonate-user"] == "system:serviceaccount:podseidon:aggregator"
    assert put.headers["user-agent"].startswith("OpenAPI-Generator/")
    assert put.headers["content-type"] == "application/json"
    assert listed.target == PODPROTECTORS.path("ns") + "?labelSelector=app%3Dweb"
    assert "content-length" not in listed.headers
    assert server.connections == 1
    # One pool per ApiClient, shared by the clients built on it.
    assert pool_for(api) is pool_for(client.fenced(dict).api_client)


def test_a_server_url_path_prefixes_every_request(server: ScriptedServer) -> None:
    configuration = server.configuration()
    configuration.host = server.url + "/through/gateway/"
    ConnectionPool(configuration, size=1).request("GET", "/version", HEADERS, None, 5.0)
    assert server.seen[0].target == "/through/gateway/version"


@pytest.mark.parametrize("close", ["close", "close_notify", "reset"])
def test_an_idle_connection_the_server_closed_is_retried_once_on_a_new_one(
    server: ScriptedServer, close: str
) -> None:
    server.reply = _replies(Reply(answer(), after=close))
    pool = _pool(server)
    pool.request("GET", PATH, HEADERS, None, 5.0)
    if close != "reset":  # (a reset comes only when the next request's bytes arrive)
        server.wait_closed()
    status, _, _ = pool.request("PUT", PATH, HEADERS, b'{"put":1}', 5.0)
    assert status == 200
    assert server.connections == 2
    # The PUT reached the server once, on the new connection.
    assert [(s.connection, s.method) for s in server.seen] == [(1, "GET"), (2, "PUT")]


def test_a_stale_connection_takes_the_ones_idle_longer_with_it(server: ScriptedServer) -> None:
    barrier = threading.Barrier(3, timeout=WAIT)

    # Three requests at once leave three connections idle; the server then closes them all.
    def together(seen: Seen) -> Reply:
        barrier.wait()
        return Reply(answer(), after="close")

    server.reply = together
    pool = _pool(server, size=4)
    _at_once(3, lambda: pool.request("GET", PATH, HEADERS, None, 5.0))
    server.wait_closed(3)
    server.reply = lambda seen: Reply(answer())
    pool.request("GET", PATH, HEADERS, None, 5.0)
    # The newest idle connection failed; the two idle longer were dropped without a try.
    assert server.connections == 4
    assert len(pool._idle) == 1
    pool.request("GET", PATH, HEADERS, None, 5.0)
    assert server.connections == 4


def _at_once(count: int, call: Callable[[], object]) -> None:
    failures: list[BaseException] = []

    def one() -> None:
        try:
            call()
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)
    assert not failures, failures


@pytest.mark.parametrize(
    ("partial", "after", "tls"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{", "close", True),
        (b"HTTP/1.1 2", "close", True),
        # Over TLS an RST reads as an end of stream; plain TCP shows the reset itself.
        (b"HTTP/1.1 200 OK\r\n", "abort", False),
    ],
    ids=["body", "status-line", "reset-mid-headers"],
)
def test_no_retry_after_part_of_an_answer(
    tmp_path: Path, partial: bytes, after: str, tls: bool
) -> None:
    server = ScriptedServer(tmp_path, tls=tls)
    try:
        server.reply = _replies(Reply(answer()), Reply(partial, after=after))
        pool = _pool(server)
        pool.request("GET", PATH, HEADERS, None, 5.0)
        with pytest.raises((http.client.HTTPException, ConnectionResetError)):
            pool.request("PUT", PATH, HEADERS, b"{}", 5.0)
        server.wait_closed()
        assert server.connections == 1
        assert [s.method for s in server.seen] == ["GET", "PUT"]
    finally:
        server.stop()


def test_no_retry_on_a_new_connection_closed_without_an_answer(server: ScriptedServer) -> None:
    server.reply = _replies(Reply(b"", after="close"))
    client = KubeClient(k8s.ApiClient(server.configuration()))
    with pytest.raises(KubeError) as raised:
        client.replace_status(PODPROTECTORS, "ns", "p", {"status": {}})
    assert (raised.value.status, raised.value.reason) == (0, "Unreachable")
    server.wait_closed()
    assert server.connections == 1 and len(server.seen) == 1


def test_an_answer_saying_connection_close_ends_the_connection(server: ScriptedServer) -> None:
    # The server keeps its end open: the client must not reuse it anyway.
    server.reply = _replies(Reply(answer(headers={"Connection": "close"})))
    pool = _pool(server)
    pool.request("GET", PATH, HEADERS, None, 5.0)
    pool.request("GET", PATH, HEADERS, None, 5.0)
    pool.request("GET", PATH, HEADERS, None, 5.0)
    assert server.connections == 2
    assert [s.connection for s in server.seen] == [1, 2, 2]


def test_a_chunked_answer_is_read_whole_and_the_connection_kept(server: ScriptedServer) -> None:
    pieces = [b'{"items": [', b"1, 2, 3" * 5000, b"]}"]
    server.reply = _replies(Reply(chunked(200, pieces)))
    pool = _pool(server)
    assert pool.request("GET", PATH, HEADERS, None, 5.0).data == b"".join(pieces)
    pool.request("GET", PATH, HEADERS, None, 5.0)
    assert server.connections == 1


def test_answers_outside_2xx(server: ScriptedServer) -> None:
    status = b'{"kind":"Status","code":409,"reason":"Conflict","message":"modified"}'
    server.reply = lambda seen: Reply(answer(409, status, reason="Conflict"))
    api = k8s.ApiClient(server.configuration())
    assert pool_for(api).request("PUT", PATH, HEADERS, b"{}", 5.0) == (409, "Conflict", status)
    with pytest.raises(transport.HttpError) as http_error:
        transport.send(api, "PUT", PATH, body={})
    assert (http_error.value.status, http_error.value.body) == (409, status)
    with pytest.raises(KubeError) as kube_error:
        KubeClient(api).replace_status(PODPROTECTORS, "ns", "p", {})
    assert kube_error.value.is_conflict and kube_error.value.message == "modified"
    with pytest.raises(KubeError) as bounded_error:
        BoundedClient(api).replace_status(PODPROTECTORS, "ns", "p", {}, 5.0)
    assert bounded_error.value.is_conflict and bounded_error.value.message == "modified"
    assert server.connections == 2  # the shared pool's, and BoundedClient's own


def test_the_client_certificate_is_presented(tmp_path: Path) -> None:
    server = ScriptedServer(tmp_path, require_client_cert=True)
    try:
        pool = ConnectionPool(server.configuration(client_cert=True), size=1)
        assert pool.request("GET", PATH, HEADERS, None, 5.0).status == 200
        assert server.seen[0].client_cn == "podseidon-test"
        without = KubeClient(k8s.ApiClient(server.configuration()))
        with pytest.raises(KubeError) as raised:
            without.get(PODPROTECTORS, "ns", "p")
        assert raised.value.status == 0
        assert len(server.seen) == 1
    finally:
        server.stop()


def test_the_server_certificate_is_checked_as_configured(
    server: ScriptedServer, tmp_path: Path
) -> None:
    foreign_ca = tmp_path / "foreign-ca.crt"
    foreign_ca.write_bytes(make_ca("someone-else")[0].public_bytes(serialization.Encoding.PEM))
    with pytest.raises(ssl.SSLCertVerificationError):
        _pool(server, ssl_ca_cert=foreign_ca).request("GET", PATH, HEADERS, None, 5.0)
    assert (
        _pool(server, ssl_ca_cert=foreign_ca, verify_ssl=False)
        .request("GET", PATH, HEADERS, None, 5.0)
        .status
        == 200
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        _pool(server, assert_hostname="elsewhere.example").request("GET", PATH, HEADERS, None, 5)
    assert (
        _pool(server, assert_hostname="localhost").request("GET", PATH, HEADERS, None, 5.0).status
        == 200
    )
    # tls_server_name: the name sent (SNI) and checked, whatever address is dialled.
    assert (
        _pool(server, tls_server_name="localhost").request("GET", PATH, HEADERS, None, 5.0).status
        == 200
    )
    assert server.seen[-1].sni == "localhost"
    with pytest.raises(ssl.SSLCertVerificationError):
        _pool(server, tls_server_name="elsewhere.example").request("GET", PATH, HEADERS, None, 5.0)


def test_the_token_is_read_for_every_request(server: ScriptedServer) -> None:
    configuration = server.configuration()
    issued = itertools.count(1)

    def refresh(config: k8s.Configuration) -> None:
        config.api_key["authorization"] = f"token-{next(issued)}"

    configuration.refresh_api_key_hook = refresh
    api = k8s.ApiClient(configuration)
    kube, bounded = KubeClient(api), BoundedClient(api)
    kube.get(PODPROTECTORS, "ns", "p")
    kube.get(PODPROTECTORS, "ns", "p")
    bounded.get(PODPROTECTORS, "ns", "p", 5.0)
    bounded.get(PODPROTECTORS, "ns", "p", 5.0)
    assert [s.headers["authorization"] for s in server.seen] == [
        f"Bearer token-{i}" for i in range(1, 5)
    ]


def test_idle_connections_are_kept_up_to_the_pool_size(server: ScriptedServer) -> None:
    barrier = threading.Barrier(4, timeout=WAIT)

    def together(seen: Seen) -> Reply:
        barrier.wait()
        return Reply(answer())

    server.reply = together
    pool = _pool(server, size=2)
    _at_once(4, lambda: pool.request("GET", PATH, HEADERS, None, 5.0))
    assert server.connections == 4
    server.wait_closed(2)  # the two beyond the pool's size
    server.reply = lambda seen: Reply(answer())
    for _ in range(4):
        pool.request("GET", PATH, HEADERS, None, 5.0)
    assert server.connections == 4


def test_a_header_cannot_smuggle_another(server: ScriptedServer) -> None:
    with pytest.raises(ValueError):
        _pool(server).request("GET", PATH, {"Impersonate-User": "a\r\nX-Evil: 1"}, None, 5.0)
    assert server.seen == []


# Timeouts ---------------------------------------------------------------------------------


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """Completes TCP handshakes (the listen backlog) and never reads: the TLS handshake hangs."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def _timed(call: object, *args: object) -> tuple[BaseException, float]:
    started = time.monotonic()
    try:
        call(*args)  # type: ignore[operator]
    except BaseException as error:
        return error, time.monotonic() - started
    raise AssertionError("no timeout")


def test_a_silent_tls_peer_is_bounded_by_the_total_budget(unanswered_port: int) -> None:
    configuration = k8s.Configuration()
    configuration.host = f"https://127.0.0.1:{unanswered_port}"
    pool = ConnectionPool(configuration, size=1)
    error, elapsed = _timed(pool.request, "GET", PATH, HEADERS, None, 0.4)
    assert isinstance(error, TimeoutError) and 0.35 <= elapsed < 1.0, (error, elapsed)
    kube = KubeClient(k8s.ApiClient(configuration), request_timeout=0.4)
    error, elapsed = _timed(kube.get, PODPROTECTORS, "ns", "p")
    assert isinstance(error, KubeError) and error.status == 0 and elapsed < 1.0


def test_an_answer_that_never_comes_is_bounded(server: ScriptedServer) -> None:
    server.reply = lambda seen: Reply(after="hang")
    error, elapsed = _timed(_pool(server).request, "PUT", PATH, HEADERS, b"{}", 0.4)
    assert isinstance(error, TimeoutError) and 0.35 <= elapsed < 1.0, (error, elapsed)
    # A (connect, read) pair bounds each read.
    error, elapsed = _timed(_pool(server).request, "GET", PATH, HEADERS, None, (2.0, 0.3))
    assert isinstance(error, TimeoutError) and 0.25 <= elapsed < 1.0, (error, elapsed)
    bounded = BoundedClient(k8s.ApiClient(server.configuration()))
    error, elapsed = _timed(bounded.replace_status, PODPROTECTORS, "ns", "p", {}, 0.4)
    assert isinstance(error, NoAnswer) and 0.35 <= elapsed < 1.0, (error, elapsed)
    assert len(server.seen) == 3  # each sent once


def test_a_trickled_answer_cannot_stretch_the_budget(server: ScriptedServer) -> None:
    # 100 bytes at 50 ms each would take 5 s; every read gets only what is left of 0.5 s.
    server.reply = lambda seen: Reply(answer(body=b"x" * 30)[:100], trickle=0.05)
    error, elapsed = _timed(_pool(server).request, "GET", PATH, HEADERS, None, 0.5)
    assert isinstance(error, TimeoutError) and 0.45 <= elapsed < 1.2, (error, elapsed)


def test_a_timed_out_connection_is_not_reused(server: ScriptedServer) -> None:
    server.reply = _replies(Reply(after="hang"))
    pool = _pool(server)
    with pytest.raises(TimeoutError):
        pool.request("GET", PATH, HEADERS, None, 0.3)
    assert pool.request("GET", PATH, HEADERS, None, 5.0).status == 200
    assert server.connections == 2


# Proxies and processes --------------------------------------------------------------------


class _Proxy(BaseHTTPRequestHandler):
    targets: list[str] = []

    def do_GET(self) -> None:
        type(self).targets.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


def test_a_proxied_client_keeps_the_urllib3_path() -> None:
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        configuration = k8s.Configuration()
        configuration.host = "http://kube.invalid"
        configuration.proxy = f"http://127.0.0.1:{proxy.server_address[1]}"
        api = k8s.ApiClient(configuration)
        assert pool_for(api) is None
        assert KubeClient(api).get(PODPROTECTORS, "ns", "p") == {}
        assert BoundedClient(api).get(PODPROTECTORS, "ns", "p", 5.0) == {}
        assert _Proxy.targets == ["http://kube.invalid" + PODPROTECTORS.path("ns", "p")] * 2
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_a_forked_child_does_not_use_the_parents_connections(server: ScriptedServer) -> None:
    pool = _pool(server)
    pool.request("GET", PATH, HEADERS, None, 5.0)
    assert len(pool._idle) == 1
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        os._exit(0 if not pool._idle else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's connection is untouched.
    pool.request("GET", PATH, HEADERS, None, 5.0)
    assert server.connections == 1
