"""The aggregators of one process share one PodProtector informer (workers/aggregator/shared.py):
one watch of the core cluster however many cells, each cell still aggregated, the informer kept
while any aggregator runs and stopped with the last."""

from __future__ import annotations

import threading

from podseidon_site.config import CellConfig, ClusterAccess, PodseidonConfig
from tests.unit.test_aggregator_controller import FakeKube, make_pod, make_protector, wait_for
from workers.aggregator.controller import AggregatorController
from workers.controller import AlwaysValidFence, ControllerContext

CELLS = ("cell-a", "cell-b")


def available(core: FakeKube, cell_id: str) -> int | None:
    obj = core.get_obj("podprotectors", "demo/web")
    for cell in (obj.get("status") or {}).get("cells") or ():
        if cell["cellID"] == cell_id:
            return cell["aggregation"]["availableReplicas"]
    return None


def protector_watchers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "informer-aggregator/podprotectors"]


def test_cells_share_one_protector_informer_until_the_last_stops():
    core = FakeKube()
    cells = {cell_id: FakeKube() for cell_id in CELLS}
    cells["cell-a"].put("pods", make_pod("a1"))
    for name in ("b1", "b2"):
        cells["cell-b"].put("pods", make_pod(name))
    core.put("podprotectors", make_protector())
    config = PodseidonConfig(
        core=ClusterAccess(kubeconfig="/dev/null"),
        cells=[CellConfig(id=cell_id, kubeconfig="/dev/null") for cell_id in CELLS],
    )
    before = len(protector_watchers())
    controllers = {cell_id: AggregatorController(config, cell_id) for cell_id in CELLS}

    def start(cell_id: str) -> None:
        controllers[cell_id].start(
            ControllerContext(
                config=config,
                core=core,  # type: ignore[arg-type]
                cells=cells,  # type: ignore[arg-type]
                fence=AlwaysValidFence(),
            )
        )

    try:
        for cell_id in CELLS:
            start(cell_id)
        wait_for(lambda: available(core, "cell-a") == 1 and available(core, "cell-b") == 2)
        assert len(protector_watchers()) == before + 1

        # One leaves: the other keeps the informer and keeps aggregating.
        controllers["cell-a"].stop()
        assert len(protector_watchers()) == before + 1
        cells["cell-b"].put("pods", make_pod("b3"))
        wait_for(lambda: available(core, "cell-b") == 3)

        # It comes back (a regained lease): it joins the running informer and catches up.
        cells["cell-a"].put("pods", make_pod("a2"))
        start("cell-a")
        wait_for(lambda: available(core, "cell-a") == 2)
        assert len(protector_watchers()) == before + 1
    finally:
        for controller in controllers.values():
            controller.stop()
    # The last one out stops the watch.
    wait_for(lambda: len(protector_watchers()) == before, timeout=5)
