"""KubeClient: every request is bounded, even against a peer that accepts connections and then
says nothing (a kube-apiserver frozen with SIGSTOP still completes TCP handshakes)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s

from protectors.kube.client import PODPROTECTORS, KubeClient, KubeError


@pytest.fixture
def silent_url() -> Iterator[str]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()


def _client(url: str, request_timeout: float) -> KubeClient:
    configuration = k8s.Configuration()
    configuration.host = url
    return KubeClient(k8s.ApiClient(configuration), request_timeout=request_timeout)


@pytest.mark.parametrize("timeout", [0.3, 1])
def test_a_silent_peer_cannot_hold_a_request_past_its_timeout(silent_url: str, timeout) -> None:
    # A float timeout used to be dropped by the client's REST layer: the GET waited forever.
    client = _client(silent_url, request_timeout=timeout)
    started = time.monotonic()
    with pytest.raises(KubeError) as raised:
        client.get(PODPROTECTORS, "ns", "p")
    elapsed = time.monotonic() - started
    assert raised.value.status == 0
    assert elapsed < timeout + 2.0


def test_a_per_call_float_timeout_bounds_the_request(silent_url: str) -> None:
    client = _client(silent_url, request_timeout=30)
    started = time.monotonic()
    with pytest.raises(KubeError):
        client.request("GET", "/version", timeout=0.4)
    assert time.monotonic() - started < 2.5
