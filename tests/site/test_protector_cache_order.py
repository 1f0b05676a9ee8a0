"""The PodProtector cache keeps each column's sort order through adds, updates and deletes: every
page of every query equals a filter and sort of all rows done from scratch."""

from __future__ import annotations

import random

import pytest
from site_fakes import StubInformer, protector

from console.cache import SORT_KEYS, ProtectorCache, RowFilter

FILTERS = [
    RowFilter(),
    RowFilter(namespace="ns-1"),
    RowFilter(at_risk=True),
    RowFilter(namespace="ns-2", at_risk=False),
    RowFilter(name="p-1"),
    RowFilter(cell="cell-b"),
]
SORTS = [f"{sign}{column}" for column in SORT_KEYS for sign in ("", "-")]


class HandlerKeepingInformer(StubInformer):
    """A StubInformer that keeps the cache's handler, so a test can send it watch events."""

    def add_handler(self, handler) -> None:
        self.handler = handler
        super().add_handler(handler)


def make(rng: random.Random, i: int) -> dict:
    total = rng.randint(0, 6)
    obj = protector(
        f"ns-{rng.randint(0, 3)}",
        f"p-{i}",
        required=rng.randint(0, 4),
        cells={"cell-a": total} if rng.random() < 0.3 else {"cell-a": total, "cell-b": 1},
        lag=rng.choice([None, 0, 5, rng.randint(1, 900)]),
    )
    return obj


def from_scratch(rows, row_filter: RowFilter, sort: str) -> list[str]:
    matching = [r for r in rows if row_filter.matches(r)]
    matching.sort(key=SORT_KEYS[sort.lstrip("-")], reverse=sort.startswith("-"))
    return [r.key for r in matching]


def check_every_query(cache: ProtectorCache) -> None:
    rows = cache.rows()
    for row_filter in FILTERS:
        for sort in SORTS:
            want = from_scratch(rows, row_filter, sort)
            for page_size in (3, 50):
                for page in range(1, len(want) // page_size + 3):
                    got = cache.query(row_filter, sort=sort, page=page, page_size=page_size)
                    start = (page - 1) * page_size
                    assert got.count == len(want)
                    assert [r.key for r in got.rows] == want[start : start + page_size], (
                        row_filter,
                        sort,
                        page,
                        page_size,
                    )


def test_orders_follow_adds_updates_and_deletes() -> None:
    rng = random.Random(7)
    objects = {f"p-{i}": make(rng, i) for i in range(40)}
    informer = HandlerKeepingInformer(list(objects.values()))
    cache = ProtectorCache(informer)  # type: ignore[arg-type]
    check_every_query(cache)  # builds every column's order

    for step in range(300):
        name = f"p-{rng.randint(0, 59)}"
        if name in objects and rng.random() < 0.25:
            informer.handler.on_delete(objects.pop(name))
        elif name in objects:
            old = objects[name]
            # Same namespace and name: an update of the same object.
            new = make(rng, int(name[2:]))
            new["metadata"]["namespace"] = old["metadata"]["namespace"]
            objects[name] = new
            informer.handler.on_update(old, new)
        else:
            objects[name] = make(rng, int(name[2:]))
            informer.handler.on_add(objects[name])
        if step % 50 == 0:
            check_every_query(cache)
    check_every_query(cache)
    assert sorted(r.key for r in cache.rows()) == sorted(
        f"{o['metadata']['namespace']}/{n}" for n, o in objects.items()
    )


def test_an_unchanged_sort_key_keeps_the_new_row() -> None:
    """An update that leaves the sort position alone still shows the new numbers."""
    informer = HandlerKeepingInformer([protector("ns", "a"), protector("ns", "b")])
    cache = ProtectorCache(informer)  # type: ignore[arg-type]
    assert [r.total for r in cache.query(RowFilter(), sort="name").rows] == [6, 6]
    old = informer.store["ns/a"]
    new = protector("ns", "a", cells={"cell-a": 1, "cell-b": 1})
    informer.handler.on_update(old, new)
    assert [r.total for r in cache.query(RowFilter(), sort="name").rows] == [2, 6]


def test_unknown_sort_column_is_an_error() -> None:
    cache = ProtectorCache(StubInformer([protector("ns", "a")]))  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="unknown sort column 'secret'"):
        cache.query(RowFilter(), sort="secret")
