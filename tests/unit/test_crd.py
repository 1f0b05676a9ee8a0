"""The CRD we ship describes every field the domain model writes, with the right guards."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from protectors import constants
from protectors.model import WRITTEN_FIELD_PATHS

CRD_PATH = Path(__file__).resolve().parents[2] / "deploy" / "crds" / "podprotectors.yaml"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    (only,) = crd["spec"]["versions"]
    return only


def _schema_at(root: dict[str, Any], path: str) -> dict[str, Any]:
    node = root
    for part in path.split("."):
        is_list = part.endswith("[]")
        name = part.removesuffix("[]")
        assert node.get("type") == "object", f"{path}: parent of {name} is not an object"
        properties = node.get("properties") or {}
        assert name in properties, f"{path}: {name} missing from the CRD schema"
        node = properties[name]
        if is_list:
            assert node.get("type") == "array", f"{path}: {name} should be an array"
            node = node["items"]
    return node


@pytest.mark.parametrize("path", WRITTEN_FIELD_PATHS)
def test_every_written_field_is_in_the_schema(version: dict[str, Any], path: str) -> None:
    _schema_at(version["schema"]["openAPIV3Schema"], path)


def test_names_and_scope(crd: dict[str, Any]) -> None:
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == constants.CRD_NAME
    assert crd["spec"]["group"] == constants.GROUP
    assert crd["spec"]["scope"] == "Namespaced"
    names = crd["spec"]["names"]
    assert names["plural"] == constants.PLURAL
    assert names["kind"] == constants.KIND
    assert names["shortNames"] == [constants.SHORT_NAME]


def test_version_serves_status_subresource(version: dict[str, Any]) -> None:
    assert version["name"] == constants.VERSION
    assert version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


def test_min_available_is_required_and_non_negative(version: dict[str, Any]) -> None:
    root = version["schema"]["openAPIV3Schema"]
    assert "minAvailable" in root["properties"]["spec"]["required"]
    assert "selector" in root["properties"]["spec"]["required"]
    assert _schema_at(root, "spec.minAvailable")["minimum"] == 0


def test_cells_are_a_list_map_keyed_by_cell_id(version: dict[str, Any]) -> None:
    cells = _schema_at(version["schema"]["openAPIV3Schema"], "status.cells")
    assert cells["x-kubernetes-list-type"] == "map"
    assert cells["x-kubernetes-list-map-keys"] == ["cellID"]
    assert "cellID" in cells["items"]["required"]


def test_printer_columns(version: dict[str, Any]) -> None:
    columns = [
        (c["name"], c["jsonPath"], c.get("priority", 0))
        for c in version["additionalPrinterColumns"]
    ]
    assert columns == [
        ("Required", ".spec.minAvailable", 0),
        ("Aggregated", ".status.summary.aggregatedAvailableReplicas", 0),
        ("Estimated", ".status.summary.estimatedAvailableReplicas", 0),
        ("Bucket lag", ".status.summary.maxLatencyMillis", 1),
        ("Age", ".metadata.creationTimestamp", 0),
    ]


def _walk(node: dict[str, Any], path: str = ""):
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from _walk(child, f"{path}.{name}" if path else name)
    if "items" in node:
        yield from _walk(node["items"], path + "[]")


def test_schema_is_structural(version: dict[str, Any]) -> None:
    # apiextensions v1 rejects a CRD whose schema leaves a node without a type.
    for path, node in _walk(version["schema"]["openAPIV3Schema"]):
        assert "type" in node, f"{path or '(root)'} has no type"
