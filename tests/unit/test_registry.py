"""Which controllers a worker builds, the test override, and the metrics port option."""

from __future__ import annotations

import pytest

from podseidon_site.config import ConfigError, parse_config
from workers.bootstep import metrics_port
from workers.registry import (
    TEST_CONTROLLERS_ENV,
    build_controllers,
    controller_keys,
    placement,
)


class Named:
    def __init__(self, name: str) -> None:
        self.name = name

    def start(self, context) -> None: ...

    def stop(self) -> None: ...


def two(config):
    return [Named("generator"), Named(f"aggregator/{config.cell_ids[0]}")]


def duplicate(config):
    return [Named("monitor"), Named("monitor")]


def bad_name(config):
    return [Named("aggregator/")]


def test_keys_follow_the_configuration() -> None:
    config = parse_config({"cells": [{"id": "cell-a"}, {"id": "cell-b"}]})
    assert controller_keys(config) == [
        "generator",
        "aggregator/cell-a",
        "aggregator/cell-b",
        "monitor",
    ]
    # No kind to generate for: the generator still runs, for remove-cell-once on every
    # PodProtector (hand-made ones included).
    config = parse_config({"generator": {"protection_selectors": {}, "monitor": False}})
    assert controller_keys(config) == ["generator", "aggregator/default"]


def test_the_test_override_replaces_the_registry() -> None:
    config = parse_config({"cells": [{"id": "cell-a"}]})
    environ = {TEST_CONTROLLERS_ENV: f"{__name__}:two"}
    assert [c.name for c in build_controllers(config, environ)] == [
        "generator",
        "aggregator/cell-a",
    ]


@pytest.mark.parametrize(
    ("factory", "message"),
    [("duplicate", "two controllers"), ("bad_name", "not a valid lease key")],
)
def test_controller_names_are_checked(factory: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_controllers(parse_config({}), {TEST_CONTROLLERS_ENV: f"{__name__}:{factory}"})


def test_a_malformed_override_is_refused() -> None:
    with pytest.raises(ValueError, match="MODULE:FACTORY"):
        build_controllers(parse_config({}), {TEST_CONTROLLERS_ENV: "nocolon"})


@pytest.mark.parametrize(
    ("value", "port"), [(None, 9090), ("", 9090), ("0", 0), ("19090", 19090), (" 8080 ", 8080)]
)
def test_metrics_port(value: str | None, port: int) -> None:
    environ = {} if value is None else {"PODSEIDON_METRICS_PORT": value}
    assert metrics_port(9090, environ) == port


@pytest.mark.parametrize("value", ["x", "-1", "65536"])
def test_metrics_port_rejects_nonsense(value: str) -> None:
    with pytest.raises(ValueError, match="PODSEIDON_METRICS_PORT"):
        metrics_port(9090, {"PODSEIDON_METRICS_PORT": value})


TWO_CELLS = {"cells": [{"id": "cell-a"}, {"id": "cell-b"}]}


@pytest.mark.parametrize(
    ("controllers", "environ", "keys"),
    [
        ({}, {}, ["generator", "aggregator/cell-a", "aggregator/cell-b", "monitor"]),
        ({"cells": ["cell-b"]}, {}, ["generator", "aggregator/cell-b", "monitor"]),
        ({"cells": [], "monitor": False}, {}, ["generator"]),
        ({"generator": False, "monitor": False}, {}, ["aggregator/cell-a", "aggregator/cell-b"]),
        # One worker per cell: the environment replaces the section.
        ({"cells": []}, {"PODSEIDON_CONTROLLERS": "aggregator/cell-a"}, ["aggregator/cell-a"]),
        ({}, {"PODSEIDON_CONTROLLERS": " monitor , generator "}, ["generator", "monitor"]),
        (
            {"cells": ["cell-a"]},
            {"PODSEIDON_CONTROLLERS": ""},
            ["generator", "aggregator/cell-a", "monitor"],
        ),
    ],
)
def test_placement(controllers: dict, environ: dict, keys: list[str]) -> None:
    config = parse_config({**TWO_CELLS, "controllers": controllers})
    assert placement(config, environ) == keys
    override = {**environ, TEST_CONTROLLERS_ENV: f"{__name__}:every_key"}
    assert [c.name for c in build_controllers(config, override)] == keys


def every_key(config):
    return [Named(key) for key in controller_keys(config)]


def test_placement_refuses_what_the_configuration_does_not_run() -> None:
    config = parse_config(TWO_CELLS)
    with pytest.raises(ValueError, match="PODSEIDON_CONTROLLERS: aggregator/cell-c is not"):
        placement(config, {"PODSEIDON_CONTROLLERS": "aggregator/cell-a,aggregator/cell-c"})
    with pytest.raises(ConfigError, match=r"controllers\.cells: 'cell-c' is not a configured"):
        parse_config({**TWO_CELLS, "controllers": {"cells": ["cell-c"]}})
