"""The balance plan: fair shares of the aggregator leases, groups of pinned workers, stability."""

from __future__ import annotations

import pytest

from workers.balance import Balancer, Member, View, plan

CELLS = [f"aggregator/cell-{c}" for c in "abcd"]
ALL = frozenset(CELLS)


def member(name: str, keys=ALL) -> Member:
    return Member(name, frozenset(keys))


def shares(members: list[Member], holders: dict[str, str | None]) -> dict[str, int]:
    view = View(tuple(members), holders)
    return {m.id: plan(view, m).share for m in members}


def settle(members: list[Member], holders: dict[str, str | None], rounds: int = 10) -> dict:
    """Apply every worker's plan in turn (hand over, then acquire free keys) until stable."""
    holders = dict(holders)
    for _ in range(rounds):
        before = dict(holders)
        for m in members:
            for key in plan(View(tuple(members), holders), m).release:
                holders[key] = None
        for m in members:
            for key in sorted(CELLS):
                if (
                    holders.get(key) is None
                    and key in plan(View(tuple(members), holders), m).acquire
                ):
                    holders[key] = m.id
        if holders == before:
            return holders
    raise AssertionError(f"no stable spread after {rounds} rounds: {holders}")


def per_member(holders: dict[str, str | None]) -> list[int]:
    counts: dict[str, int] = {}
    for holder in holders.values():
        if holder is not None:
            counts[holder] = counts.get(holder, 0) + 1
    return sorted(counts.values(), reverse=True)


@pytest.mark.parametrize(
    ("workers", "spread"),
    [(1, [4]), (2, [2, 2]), (3, [2, 1, 1]), (4, [1, 1, 1, 1]), (5, [1, 1, 1, 1])],
)
def test_every_cell_is_led_and_the_spread_is_fair(workers: int, spread: list[int]) -> None:
    members = [member(f"w{i}") for i in range(workers)]
    holders = settle(members, dict.fromkeys(CELLS))
    assert None not in holders.values()
    assert per_member(holders) == spread
    assert sum(shares(members, holders).values()) == len(CELLS)


def test_a_fair_spread_does_not_move() -> None:
    members = [member("w1"), member("w2"), member("w3")]
    holders = {CELLS[0]: "w3", CELLS[1]: "w3", CELLS[2]: "w1", CELLS[3]: "w2"}
    assert shares(members, holders) == {"w1": 1, "w2": 1, "w3": 2}  # the extra one stays put
    for m in members:
        assert not plan(View(tuple(members), holders), m).release


def test_a_new_worker_gets_its_share_from_the_one_that_holds_everything() -> None:
    old = member("w1")
    holders = dict.fromkeys(CELLS, "w1")
    new = [member("w2"), member("w3")]
    view = View((old, *new), holders)
    assert plan(view, old).release == {CELLS[2], CELLS[3]}  # keeps the first two
    assert plan(view, new[0]).acquire == ALL
    assert per_member(settle([old, *new], holders)) == [2, 1, 1]


def test_a_worker_pinned_to_a_cell_owns_it() -> None:
    pinned = member("z-pinned", {CELLS[3]})
    others = [member("w1"), member("w2")]
    holders = dict.fromkeys(CELLS, "w1")
    view = View((*others, pinned), holders)
    # w1 keeps two of the three unpinned cells and gives the pinned cell to its owner.
    assert plan(view, others[0]).release == {CELLS[2], CELLS[3]}
    assert plan(view, pinned).acquire == {CELLS[3]}
    assert plan(view, pinned).share == 1
    settled = settle([*others, pinned], holders)
    assert settled[CELLS[3]] == "z-pinned"
    assert per_member({k: v for k, v in settled.items() if k != CELLS[3]}) == [2, 1]


def test_workers_pinned_to_different_cells_never_compete() -> None:
    members = [member(f"p{c}", {key}) for c, key in zip("abcd", CELLS, strict=True)]
    settled = settle(members, dict.fromkeys(CELLS))
    assert settled == {key: f"p{c}" for c, key in zip("abcd", CELLS, strict=True)}


def test_a_worker_the_view_misses_still_counts_itself() -> None:
    me = member("w9")
    view = View((member("w1"),), dict.fromkeys(CELLS, "w1"))
    assert plan(view, me).share == 2


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_key_nobody_takes_is_taken_after_the_fallback_and_kept() -> None:
    me, other = member("w1"), member("w2")
    clock = Clock()
    holders: dict[str, str | None] = {CELLS[0]: "w1", CELLS[1]: "w1", CELLS[2]: None}
    holders[CELLS[3]] = None
    balancer = Balancer(me, lambda: View((me, other), holders), fallback=1.0, keep=5.0, clock=clock)
    balancer.refresh()
    assert not balancer.may_acquire(CELLS[2])  # w2's share: it should take it
    clock.now = 1.5
    assert balancer.may_acquire(CELLS[2])  # ... but it did not
    balancer.note(CELLS[2], "w1")
    assert not balancer.should_release(CELLS[2]), "kept for a lease duration"
    clock.now = 7.0
    holders[CELLS[2]] = "w1"
    balancer.refresh()
    assert balancer.should_release(CELLS[2])


def test_without_a_reading_everything_is_first_come() -> None:
    balancer = Balancer(member("w1"), lambda: View((), {}), fallback=1.0, keep=1.0)
    assert balancer.may_acquire(CELLS[0]) and not balancer.should_release(CELLS[0])
    assert balancer.may_acquire("generator")
