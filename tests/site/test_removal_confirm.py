"""How a cell removal confirms its effect: one list, then a watch taken up again from where it
left off; a new list only when the watch has expired (410) or broke."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from console import services
from protectors.kube.client import PODPROTECTORS, KubeError

PARAMETERS = {"cell": "cell-a", "namespace": None, "label_selector": None, "names": []}


def _protector(name: str, rv: str, cells: list[str], annotated: bool = False) -> dict:
    annotations = {services.constants.ANNOTATION_REMOVE_CELL_ONCE: "cell-a"} if annotated else {}
    return {
        "metadata": {
            "namespace": "ns",
            "name": name,
            "resourceVersion": rv,
            "annotations": annotations,
        },
        "status": {"cells": [{"cellID": c} for c in cells]},
    }


class Stream:
    """Scripted watch: its events, then (``hold``) nothing until closed, as a quiet watch."""

    def __init__(self, events: list[dict], hold: bool) -> None:
        self.events, self.hold = events, hold
        self.closed = threading.Event()

    def __iter__(self):
        yield from self.events
        if self.hold:
            self.closed.wait(10)

    def close(self) -> None:
        self.closed.set()


class Client:
    def __init__(self, lists: list[Any], watches: list[tuple[list[dict], bool]]) -> None:
        self.lists, self.watches = lists, watches
        self.listed = 0
        self.watched_from: list[str | None] = []

    def list_all(self, resource, namespace=None, **kwargs) -> dict:
        assert resource == PODPROTECTORS
        self.listed += 1
        answer = self.lists.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def watch(self, resource, namespace=None, *, resource_version=None, **kwargs) -> Stream:
        self.watched_from.append(resource_version)
        events, hold = self.watches.pop(0) if self.watches else ([], True)
        return Stream(events, hold)


def _listing(rv: str, *items: dict) -> dict:
    return {"items": list(items), "metadata": {"resourceVersion": rv}}


def test_events_confirm_without_a_second_list() -> None:
    client = Client(
        [_listing("10", _protector("a", "8", ["cell-a"], True), _protector("b", "9", ["cell-a"]))],
        [
            (
                [
                    {"type": "MODIFIED", "object": _protector("a", "11", [])},
                    {"type": "DELETED", "object": _protector("b", "12", ["cell-a"])},
                ],
                True,
            )
        ],
    )
    started = time.monotonic()
    assert services._confirm(client, PARAMETERS, ["ns/a", "ns/b"], None, 5.0) == {}
    assert time.monotonic() - started < 1
    assert client.listed == 1 and client.watched_from == ["10"]


def test_a_quiet_watch_is_taken_up_again_from_its_last_version(monkeypatch) -> None:
    monkeypatch.setattr(services, "CONFIRM_WATCH_SECONDS", 0.05)
    bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}}
    client = Client(
        [_listing("10", _protector("a", "8", ["cell-a"], True))],
        [
            ([bookmark], True),
            ([], True),
            ([{"type": "MODIFIED", "object": _protector("a", "16", [])}], True),
        ],
    )
    assert services._confirm(client, PARAMETERS, ["ns/a"], None, 5.0) == {}
    assert client.listed == 1 and client.watched_from == ["10", "15", "15"]


def test_an_expired_watch_lists_again_and_a_written_back_cell_is_named(monkeypatch) -> None:
    gone = {"type": "ERROR", "object": {"code": 410, "reason": "Expired", "message": "too old"}}
    client = Client(
        [
            _listing("10", _protector("a", "8", ["cell-a"], True)),
            _listing("30", _protector("a", "29", ["cell-a"])),  # annotation gone, cell back
        ],
        [([gone], False)],
    )
    still = services._confirm(client, PARAMETERS, ["ns/a"], None, 0.3)
    assert client.listed == 2 and client.watched_from[:2] == ["10", "30"]
    assert still == {"ns/a": services.pending_reason(_protector("a", "29", ["cell-a"]), "cell-a")}
    assert "written back after its removal" in still["ns/a"]


@pytest.mark.parametrize("broken", ["list", "watch"])
def test_a_broken_read_is_retried_until_the_deadline(monkeypatch, broken) -> None:
    monkeypatch.setattr(services, "CONFIRM_RETRY_SECONDS", 0.05)
    down = KubeError(0, "Unreachable", "connection refused")
    first = down if broken == "list" else _listing("10", _protector("a", "8", ["cell-a"], True))

    class Broken(Client):
        def watch(self, *args, **kwargs):
            if broken == "watch" and len(self.watched_from) == 0:
                self.watched_from.append("10")
                raise down
            return super().watch(*args, **kwargs)

    client = Broken([first, _listing("20", _protector("a", "19", []))], [])
    assert services._confirm(client, PARAMETERS, ["ns/a"], None, 5.0) == {}
    assert client.listed == 2


def test_a_watch_the_server_ends_at_once_is_not_reopened_in_a_loop(monkeypatch) -> None:
    monkeypatch.setattr(services, "CONFIRM_RETRY_SECONDS", 0.05)
    listing = _listing("10", _protector("a", "8", ["cell-a"], True))
    client = Client([listing] * 50, [([], False)] * 50)  # every watch ends empty at once
    still = services._confirm(client, PARAMETERS, ["ns/a"], None, 0.5)
    assert still == {"ns/a": "annotated, not processed yet (is the generator running?)"}
    # Pauses of 0.05, 0.1, 0.2 s... between the attempts, not hundreds of requests.
    watches = len(client.watched_from)
    assert 2 <= watches <= 6 and client.listed in (watches, watches + 1)
