"""The ``operation_threads`` fixture, shared by the site tests and the integration tests that
start tracked operations (``audit.operations``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from django.db import connections

from audit import operations


@pytest.fixture
def operation_threads(db, monkeypatch) -> Iterator[None]:
    """Let operation threads use the test's database connection, as Django's live-server tests
    do: the test database lives in memory inside the test's transaction, which a thread's own
    connection could neither see nor write next to. The threads themselves are the real ones;
    the fixture waits for them before the database goes away."""
    shared = connections["default"]
    shared.inc_thread_sharing()
    for name in ("_execute", "_beat"):
        monkeypatch.setattr(
            operations, name, _on_shared_connection(getattr(operations, name), shared)
        )
    yield
    for thread in threading.enumerate():
        if thread.name.startswith("operation-"):
            thread.join(30)
    shared.dec_thread_sharing()


def _on_shared_connection(function, shared):
    def on_shared_connection(*args) -> None:
        connections["default"] = shared
        function(*args)

    return on_shared_connection
