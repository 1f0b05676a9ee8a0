"""Fair shares of the aggregators' leases across the live workers (docs/architecture.md,
"Balancing the aggregators").

Every worker announces itself in Redis (``workers.membership``) with the aggregator keys it may
lead (its placement). From one reading of who is alive and who holds which lease, every worker
computes the same plan:

- workers with the same set of keys form a *group*; each key is *owned* by the smallest group
  whose set contains it (ties: the alphabetically first set). A worker pinned to one cell thus
  owns that cell's aggregator whenever it is alive, and the unpinned workers share the rest;
- inside a group the owned keys are dealt out evenly: with M keys and N workers each gets
  M // N, and the M % N workers holding the most keys now (then by id) one more, so a spread
  that is already fair never moves;
- a worker acquires a free key only when its group owns it and it is below its share, and
  hands a held key over when its group does not own it or it holds more than its share (it
  keeps the alphabetically first ones).

The plan needs no coordination beyond the reading: two workers that read the same state agree,
and a worker that read an older one is corrected at its next reading (one retry period). A key
that stays free anyway (the worker it was meant for cannot take it) is taken by any worker that
may lead it after ``Balancer.fallback`` seconds, and kept for a lease duration before the plan
may move it again, so a stuck share never leaves a cell without an aggregator.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["Balancer", "Member", "Plan", "View", "plan"]


@dataclass(frozen=True)
class Member:
    """A live worker: its holder id and the balanced keys it may lead."""

    id: str
    keys: frozenset[str]


@dataclass(frozen=True)
class View:
    """One reading: the live members and the holder of each balanced key (None: free)."""

    members: tuple[Member, ...]
    holders: Mapping[str, str | None]


@dataclass(frozen=True)
class Plan:
    """What one worker should do with the balanced keys, by one view."""

    share: int
    # Keys this worker may acquire when free.
    acquire: frozenset[str] = frozenset()
    # Keys this worker holds and should hand over.
    release: frozenset[str] = frozenset()
    # Live members, and members of this worker's group (for logs and metrics).
    members: int = 0
    peers: int = 0


def _owner(key: str, groups: Iterable[frozenset[str]]) -> frozenset[str] | None:
    candidates = [group for group in groups if key in group]
    if not candidates:
        return None
    return min(candidates, key=lambda group: (len(group), sorted(group)))


def plan(view: View, me: Member) -> Plan:
    """The plan for ``me`` (counted as alive even when the view does not list it yet)."""
    members = {m.id: m for m in view.members if m.keys}
    if me.keys:
        members[me.id] = me
    groups = {m.keys for m in members.values()}
    keys = sorted(set().union(*groups)) if groups else []
    owner = {key: _owner(key, groups) for key in keys}
    mine = me.keys
    owned = sorted(k for k in keys if owner[k] == mine)
    peers = [m for m in members.values() if m.keys == mine]

    def held(member: Member) -> int:
        return sum(1 for k in owned if view.holders.get(k) == member.id)

    peers.sort(key=lambda m: (-held(m), m.id))
    share = 0
    if peers:
        base, extra = divmod(len(owned), len(peers))
        index = next(i for i, m in enumerate(peers) if m.id == me.id)
        share = base + (1 if index < extra else 0)
    holding = sorted(k for k, holder in view.holders.items() if holder == me.id)
    release = {k for k in holding if owner.get(k) != mine}
    kept_here = [k for k in holding if owner.get(k) == mine]
    release.update(kept_here[share:])
    acquire = frozenset(owned) if len(kept_here) < share else frozenset()
    return Plan(share, acquire, frozenset(release), len(members), len(peers))


@dataclass
class Balancer:
    """The latest view and plan of one worker, read by its electors.

    ``read`` returns a fresh ``View`` (Redis); ``refresh`` calls it, typically every retry
    period and whenever a worker joins or a lease is released. Electors ask ``may_acquire`` and
    ``should_release`` and report what they did with ``note``, which updates the plan at once
    instead of at the next reading.
    """

    me: Member
    read: Callable[[], View]
    # Seconds a key may stay free before any worker that may lead it takes it.
    fallback: float
    # Seconds a key taken that way is kept before the plan may move it again.
    keep: float
    clock: Callable[[], float] = time.monotonic
    view: View | None = None
    current: Plan | None = None
    _free_since: dict[str, float] = field(default_factory=dict)
    _kept_until: dict[str, float] = field(default_factory=dict)
    _fallback_taken: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def keys(self) -> frozenset[str]:
        return self.me.keys

    def refresh(self) -> Plan:
        """Read the state again and recompute the plan; Redis errors propagate."""
        view = self.read()
        with self._lock:
            self._apply(view)
            assert self.current is not None
            return self.current

    def _apply(self, view: View) -> None:
        now = self.clock()
        for key in self.me.keys:
            if view.holders.get(key) is None:
                self._free_since.setdefault(key, now)
            else:
                self._free_since.pop(key, None)
        self.view = view
        self.current = plan(view, self.me)

    def note(self, key: str, holder: str | None) -> None:
        """This worker acquired (``holder`` = its id) or released (None) ``key``."""
        with self._lock:
            if key in self._fallback_taken:
                self._fallback_taken.discard(key)
                if holder is not None:
                    self._kept_until[key] = self.clock() + self.keep
            if self.view is None or key not in self.me.keys:
                return
            self._apply(View(self.view.members, {**self.view.holders, key: holder}))

    def may_acquire(self, key: str) -> bool:
        if key not in self.me.keys:
            return True  # not balanced: first come, first served
        with self._lock:
            if self.current is None:
                return True  # no reading yet (or no Redis): behave as without balancing
            if key in self.current.acquire:
                return True
            since = self._free_since.get(key)
            if since is not None and self.clock() - since >= self.fallback:
                self._fallback_taken.add(key)
                return True
            return False

    def should_release(self, key: str) -> bool:
        with self._lock:
            if self.current is None or key not in self.current.release:
                return False
            return self.clock() >= self._kept_until.get(key, 0.0)
