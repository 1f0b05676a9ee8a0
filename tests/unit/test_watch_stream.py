"""WatchStream reads a watch's chunked body itself: events split over chunks or sharing one,
chunk extensions and trailers, and every way a stream can break, against a scripted server."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from protectors.kube.client import PODPROTECTORS, WATCH_TIMEOUT_REASON, KubeClient, KubeError
from tests.unit.scripted_server import Reply, ScriptedServer, answer


def _event(n: int) -> bytes:
    return b'{"type":"MODIFIED","object":{"metadata":{"name":"p%d","resourceVersion":"%d"}}}' % (
        n,
        n,
    )


def _chunked_head() -> bytes:
    return answer(200, b"", headers={"Transfer-Encoding": "chunked"})


def _stream(server: ScriptedServer, body: bytes, *, after: str = "close", read_timeout=5.0):
    server.reply = lambda seen: Reply(_chunked_head() + body, after=after)
    client = KubeClient(k8s.ApiClient(server.configuration()))
    return client.watch(PODPROTECTORS, "ns", timeout_seconds=60, read_timeout=read_timeout)


def _names(stream) -> list[str]:
    return [event["object"]["metadata"]["name"] for event in stream]


def test_events_in_chunks_of_their_own_split_or_shared(server: ScriptedServer) -> None:
    one, two, three, four = (_event(n) + b"\n" for n in range(4))
    body = (
        b"%x\r\n%s\r\n" % (len(one), one)
        # An event split across two chunks, the second also carrying a whole event.
        + b"%x\r\n%s\r\n" % (10, two[:10])
        + b"%x\r\n%s\r\n" % (len(two) - 10 + len(three), two[10:] + three)
        # A chunk extension, a blank keep-alive line, then the last chunk and a trailer.
        + b"%x;name=value\r\n%s\r\n" % (len(four) + 1, b"\n" + four)
        + b"0\r\nX-Trailer: yes\r\n\r\n"
    )
    assert _names(_stream(server, body)) == ["p0", "p1", "p2", "p3"]


def test_a_last_event_without_a_newline_still_counts(server: ScriptedServer) -> None:
    event = _event(7)
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(event), event)
    assert _names(_stream(server, body)) == ["p7"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"40\r\n" + b"x" * 10, id="cut-inside-a-chunk"),
        pytest.param(b"%x\r\n%s\r\n" % (len(_event(1)) + 1, _event(1) + b"\n"), id="no-last-chunk"),
        pytest.param(b"zz\r\n", id="garbage-size"),
        pytest.param(b"5\r\nabcdeXY", id="no-crlf-after-data"),
        pytest.param(b"1" * 2000, id="endless-size-line"),
    ],
)
def test_a_broken_stream_ends_in_an_unreachable_error(server: ScriptedServer, body: bytes) -> None:
    stream = _stream(server, body)
    with pytest.raises(KubeError) as raised:
        for _ in stream:
            pass
    assert (raised.value.status, raised.value.reason) == (0, "Unreachable")


def test_events_before_the_break_are_delivered(server: ScriptedServer) -> None:
    event = _event(1) + b"\n"
    stream = _stream(server, b"%x\r\n%s\r\n" % (len(event), event) + b"40\r\nxx")
    got = []
    with pytest.raises(KubeError):
        for item in stream:
            got.append(item["object"]["metadata"]["name"])
    assert got == ["p1"]


def test_a_silent_stream_ends_in_a_watch_timeout(server: ScriptedServer) -> None:
    event = _event(1) + b"\n"
    stream = _stream(server, b"%x\r\n%s\r\n" % (len(event), event), after="hold", read_timeout=0.3)
    got = []
    with pytest.raises(KubeError) as raised:
        for item in stream:
            got.append(item["object"]["metadata"]["name"])
    assert got == ["p1"] and raised.value.reason == WATCH_TIMEOUT_REASON


def test_a_compressed_stream_goes_through_urllib3(server: ScriptedServer) -> None:
    import gzip

    event = gzip.compress(_event(3) + b"\n")
    head = answer(200, b"", headers={"Transfer-Encoding": "chunked", "Content-Encoding": "gzip"})
    server.reply = lambda seen: Reply(
        head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(event), event), after="close"
    )
    client = KubeClient(k8s.ApiClient(server.configuration()))
    assert _names(client.watch(PODPROTECTORS, "ns", timeout_seconds=60)) == ["p3"]
