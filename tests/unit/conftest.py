"""Fixtures shared by unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.scripted_server import ScriptedServer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ScriptedServer]:
    """A scripted HTTPS server on loopback (tests/unit/scripted_server.py), stopped after the
    test."""
    server = ScriptedServer(tmp_path)
    try:
        yield server
    finally:
        server.stop()
