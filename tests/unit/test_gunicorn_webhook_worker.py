"""The webhook's gunicorn worker: a kept-alive connection's next request is served on the thread
that answered the last one when it arrives at once; otherwise the connection goes back to the
poller, and no thread waits while half of them are in use.

Real sockets (a socketpair); gunicorn's own request handling is replaced by one that reads a
line per "request", so these tests see only what the subclass decides.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.workers.gthread import ThreadWorker

from podseidon_site import gunicorn_webhook_worker
from podseidon_site.gunicorn_webhook_worker import WebhookWorker


def make_worker(threads: int = 4) -> WebhookWorker:
    cfg = Config()
    cfg.set("threads", threads)
    return WebhookWorker(0, os.getppid(), [], None, 30, cfg, None)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


@pytest.fixture
def served(monkeypatch) -> list[bytes]:
    """gunicorn's handle, replaced: reads one line as the request; keeps the connection alive
    unless the line is ``close`` or the peer has gone."""
    requests: list[bytes] = []

    def handle(self, conn):
        line = b""
        while not line.endswith(b"\n"):
            chunk = conn.sock.recv(1)
            if not chunk:
                return False, conn
            line += chunk
        requests.append(line.strip())
        return line.strip() != b"close", conn

    monkeypatch.setattr(ThreadWorker, "handle", handle)
    return requests


def test_requests_that_arrive_at_once_are_served_on_the_same_thread(pair, served) -> None:
    server, client = pair
    worker = make_worker()
    client.sendall(b"one\ntwo\nthree\n")
    started = time.monotonic()
    keepalive, conn = worker.handle(SimpleNamespace(sock=server))
    assert served == [b"one", b"two", b"three"]
    assert keepalive is True and conn.sock is server  # then back to the poller
    # It waited once, for the request that did not come, and not much longer.
    elapsed = time.monotonic() - started
    assert gunicorn_webhook_worker.LINGER_MILLIS / 1000 <= elapsed < 2
    assert worker._busy == 0


def test_a_request_within_the_linger_is_served_too(pair, served) -> None:
    server, client = pair
    worker = make_worker()
    client.sendall(b"one\n")
    late = threading.Timer(0.005, client.sendall, (b"two\n",))
    late.start()
    try:
        worker.handle(SimpleNamespace(sock=server))
    finally:
        late.join()
    assert served == [b"one", b"two"]


def test_a_closing_answer_ends_the_loop(pair, served) -> None:
    server, client = pair
    client.sendall(b"close\nnever\n")
    keepalive, _ = make_worker().handle(SimpleNamespace(sock=server))
    assert (keepalive, served) == (False, [b"close"])


def test_a_peer_that_hangs_up_while_waited_for_is_let_go(pair, served) -> None:
    server, client = pair
    client.sendall(b"one\n")
    client.shutdown(socket.SHUT_WR)
    keepalive, _ = make_worker().handle(SimpleNamespace(sock=server))
    assert (keepalive, served) == (False, [b"one"])


def test_no_thread_waits_while_half_of_them_are_busy(pair, served) -> None:
    server, client = pair
    worker = make_worker(threads=4)
    worker._busy = 2  # two others in use: this one makes three of four
    client.sendall(b"one\ntwo\n")
    worker.handle(SimpleNamespace(sock=server))
    assert served == [b"one"], "it went on serving with most threads in use"
    assert worker._busy == 2


def test_a_worker_shutting_down_does_not_wait(pair, served) -> None:
    server, client = pair
    worker = make_worker()
    worker.alive = False
    client.sendall(b"one\ntwo\n")
    worker.handle(SimpleNamespace(sock=server))
    assert served == [b"one"]


def test_a_closed_socket_is_not_waited_on(pair) -> None:
    server, _ = pair
    server.close()
    assert make_worker()._next_request_soon(SimpleNamespace(sock=server)) is False
