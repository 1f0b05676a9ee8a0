"""The console's pictures in Chromium: cell tiles and the last hour's admitted/refused deletions per
cell on the overview, availability bars on the PodProtector list, cell bars, the bucket timeline
and the refusal log on a PodProtector's page, all updating in place.

The key one: refusals made by real deletions through the real webhook (history written to the
real Redis by the webhook's background thread) are still in the chart after the console's web
process restarts.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

from kubernetes import client as k8s
from playwright.sync_api import Page, expect

from .conftest import CELLS, GUARDED, SCREENSHOTS, Console

Shoot = Callable[[Page, str], Path]

DOCS_IMAGES = SCREENSHOTS.parent / "docs-images"


def _refuse_deletions(console: Console, cell: str, times: int) -> list[str]:
    """Ask to delete guarded pods in ``cell`` ``times`` times; every one must be refused (the
    pods stay). Returns the pods asked for."""
    pods = console.pods(cell)
    names = sorted(
        p.metadata.name
        for p in pods.list_namespaced_pod(console.guarded_namespace).items
        if p.metadata.name.startswith(f"{GUARDED}-{cell}-")
    )
    assert names, f"no guarded pod left in {cell}"
    asked = []
    for i in range(times):
        name = names[i % len(names)]
        try:
            pods.delete_namespaced_pod(name, console.guarded_namespace)
        except k8s.ApiException as error:
            assert error.status in (409, 429), (error.status, error.body)
            assert "PodProtector" in json.loads(error.body).get("message", "")
        else:
            raise AssertionError(f"deleting {cell}/{name} was admitted")
        asked.append(name)
    for name in set(asked):
        pods.read_namespaced_pod(name, console.guarded_namespace)  # still there
    return asked


def _chart(page: Page, cell: str):
    return page.locator(f'figure.cell-chart[data-cell="{cell}"]')


def _refused_in_chart(page: Page, cell: str) -> int:
    return int(_chart(page, cell).get_attribute("data-refused") or "0")


def _wait_for_refused(page: Page, cell: str, expected: int, *, reload: bool) -> None:
    deadline = time.monotonic() + 20
    while True:
        if reload:
            page.reload()
        expect(_chart(page, cell)).to_be_visible()
        if _refused_in_chart(page, cell) == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{cell}: {_refused_in_chart(page, cell)} != {expected}")
        page.wait_for_timeout(500)


def _keep_for_docs(page: Page, name: str) -> None:
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_IMAGES / f"{name}.png"), full_page=False)


def test_refusals_per_cell_survive_a_console_restart(
    operator_page: Page, console: Console, shoot: Shoot
) -> None:
    page = operator_page
    expect(page.get_by_role("heading", name="Deletions per cell, last hour")).to_be_visible()
    page.wait_for_timeout(1500)  # anything earlier tests refused has been written by now
    page.reload()
    before = {cell: _refused_in_chart(page, cell) for cell in CELLS}

    asked = {"cell-a": 3, "cell-b": 2}
    for cell, times in asked.items():
        _refuse_deletions(console, cell, times)
    for cell in CELLS:
        _wait_for_refused(page, cell, before[cell] + asked[cell], reload=True)
    shoot(page, "before-restart")

    console.web.restart()

    # The same session (it lives in the database), a new process with nothing in memory.
    page.goto(console.web.url + "/")
    for cell in CELLS:
        _wait_for_refused(page, cell, before[cell] + asked[cell], reload=False)
        chart = _chart(page, cell)
        svg = chart.get_by_role("img")
        expect(svg).to_have_attribute(
            "aria-label", re.compile(rf"{before[cell] + asked[cell]} refused in the last 60")
        )
        expect(chart.locator("rect.refused")).not_to_have_count(0)
        tile = page.locator(f'li.tile[data-cell="{cell}"]')
        expect(tile.locator(".refused-60")).to_have_text(str(before[cell] + asked[cell]))
    expect(page.locator("time.as-of")).to_have_text(re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"))
    shoot(page, "after-restart")
    _keep_for_docs(page, "overview")


def test_the_overview_updates_in_place(operator_page: Page, console: Console, shoot: Shoot) -> None:
    page = operator_page
    expect(_chart(page, "cell-b")).to_be_visible()
    page.wait_for_timeout(1500)
    page.reload()
    before = _refused_in_chart(page, "cell-b")
    first_as_of = page.locator("time.as-of").inner_text()
    page.evaluate("window.__noReload = true")  # gone if the page were reloaded
    _refuse_deletions(console, "cell-b", 1)
    expect(_chart(page, "cell-b")).to_have_attribute(
        "data-refused", str(before + 1), timeout=20_000
    )
    assert page.evaluate("window.__noReload") is True  # swapped in place, not reloaded
    expect(page.locator("#live")).to_have_attribute("data-refreshed", re.compile(r"\d+"))
    assert page.locator("time.as-of").inner_text() != first_as_of
    shoot(page, "updated")


def test_cell_tiles_say_what_is_wrong_in_words(
    operator_page: Page, console: Console, shoot: Shoot
) -> None:
    page = operator_page
    tiles = page.get_by_role("list", name="Cell health").get_by_role("listitem")
    expect(tiles).to_have_count(len(CELLS))
    for cell in CELLS:
        tile = page.locator(f'li.tile[data-cell="{cell}"]')
        expect(tile).to_contain_text("API")
        expect(tile).to_contain_text("failurePolicy")
        expect(tile.locator(".health-word")).to_have_text(re.compile("^(ok|warn|bad)$"))
        # No aggregator runs in these tests: the tile is red and says why.
        expect(tile).to_have_class(re.compile(r"\btile-bad\b"))
        expect(tile.locator(".reasons")).to_contain_text("no aggregator leader")
        expect(tile).to_contain_text("enabled")
    # Every picture has a name a screen reader can read.
    for svg in page.locator("svg[role=img]").all():
        assert (svg.get_attribute("aria-label") or "").strip()
    shoot(page, "tiles")


def test_protector_list_bars_and_at_risk_first(
    operator_page: Page, console: Console, shoot: Shoot
) -> None:
    page = operator_page
    page.get_by_role("link", name="PodProtectors", exact=True).first.click()
    rows = page.locator("tr.protector-row")
    expect(rows.first).to_be_visible()
    for row in rows.all():
        bar = row.get_by_role("img", name=re.compile(r"^required \d+, estimated available"))
        expect(bar).to_be_visible()

    # Keyboard only: tab to "At-risk first" and follow it.
    link = page.get_by_role("link", name="At-risk first")
    for _ in range(60):
        page.keyboard.press("Tab")
        if link.evaluate("el => el === document.activeElement"):
            break
    else:
        raise AssertionError("At-risk first is not reachable with the keyboard")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"sort=at_risk"))
    rows = page.locator("tr.protector-row")
    expect(rows.first).to_be_visible()
    flags = [("at-risk" in (r.get_attribute("class") or "")) for r in rows.all()]
    headrooms = [int(r.get_attribute("data-headroom") or "0") for r in rows.all()]
    assert flags == sorted(flags, reverse=True), flags  # at-risk rows first
    assert flags[0], "the guarded PodProtector (minimum = every pod) is at risk"
    at_risk = [h for f, h in zip(flags, headrooms, strict=True) if f]
    assert at_risk == sorted(at_risk)
    shoot(page, "at-risk-first")

    page.get_by_role("link", name="Headroom").click()
    expect(page).to_have_url(re.compile(r"sort=headroom"))
    headrooms = [
        int(r.get_attribute("data-headroom") or "0") for r in page.locator("tr.protector-row").all()
    ]
    assert headrooms == sorted(headrooms), headrooms
    _keep_for_docs(page, "protectors")


def test_protector_detail_pictures_and_refusals(
    operator_page: Page, console: Console, shoot: Shoot
) -> None:
    page = operator_page
    asked = _refuse_deletions(console, "cell-a", 1)
    page.goto(f"{console.web.url}/protectors/{console.guarded_namespace}/{GUARDED}/")
    expect(page.get_by_role("heading", name=re.compile(GUARDED), level=1)).to_be_visible()
    expect(page.locator("figure.cell-bars").get_by_role("img")).to_have_attribute(
        "aria-label", re.compile(r"cell cell-a: \d+ of \d+ available")
    )
    expect(page.locator("figure.bucket-timeline")).to_have_count(len(CELLS))
    refusals = page.get_by_role("table", name="Recent refusals")
    newest = refusals.locator("tr.refusal").first
    expect(newest).to_contain_text(f"{console.guarded_namespace}/{asked[0]}", timeout=20_000)
    expect(newest).to_contain_text("cell-a")
    expect(newest.get_by_role("cell", name=re.compile(r"^(409|429) "))).to_be_visible()
    expect(newest.get_by_role("cell", name="delete", exact=True)).to_be_visible()
    expect(newest.get_by_role("cell").last).not_to_have_text("unknown")  # userInfo.username
    shoot(page, "detail")
    _keep_for_docs(page, "protector-detail")
