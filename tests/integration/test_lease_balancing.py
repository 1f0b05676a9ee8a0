"""Lease balancing with real Celery workers: the aggregators spread over the workers.

Same set-up as test_controller_runtime.py (tests/integration/celery_env.py): a sandbox logging
every fenced write, a private redis-server, ``celery -A podseidon_site worker`` processes with
3 s / 2 s / 0.5 s lease timings running the test controllers (each patches a ConfigMap every
200 ms through its fenced client). The configuration has four cells (all four pointing at one
sandbox cluster: the test controllers only write to the core cluster), so there are four
aggregator leases to share. The tests run in order on the same workers:

1. three workers -> the aggregators spread 2/1/1, and stay so;
2. the worker leading two is killed (-9) -> its cells are led by the others within lease + 2 s;
3. a worker joins -> it leads a cell within two retry periods, handed over by a leader with
   more than its share, with no longer pause in that cell's writes than a retry period;
4. a worker pinned to one cell (PODSEIDON_CONTROLLERS) -> it leads that cell and nothing else.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml

from tests.integration.celery_env import (
    Env,
    RedisServer,
    assert_tokens_never_go_back,
    stop_workers,
    wait_for,
    worker_environment,
)
from tests.integration.conftest import start_sandbox, stop_sandbox
from tests.integration.runtime_test_controllers import INTERVAL
from workers.keys import RedisKeys

pytestmark = pytest.mark.integration

LEASE, RENEW_DEADLINE, RETRY = 3.0, 2.0, 0.5
CELLS = ["cell-a", "cell-b", "cell-c", "cell-d"]
AGGREGATORS = [f"aggregator/{cell}" for cell in CELLS]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    if os.environ.get("PODSEIDON_TEST_KUBECONFIGS"):
        pytest.skip("needs the sandbox's write log")
    base = tmp_path_factory.mktemp("balancing")
    state_dir = base / "sandbox"
    state_dir.mkdir()
    write_log = base / "writes.jsonl"
    sandbox = start_sandbox(state_dir, ("core",), ("--write-log", str(write_log)))
    redis_server = RedisServer(base)
    redis_server.start()
    core = str(state_dir / "core.kubeconfig")
    config = {
        "core": {"kubeconfig": core},
        "cells": [{"id": cell, "kubeconfig": core} for cell in CELLS],
        "leader_election": {
            "lease_duration_seconds": LEASE,
            "renew_deadline_seconds": RENEW_DEADLINE,
            "retry_period_seconds": RETRY,
        },
    }
    (base / "podseidon.yaml").write_text(yaml.safe_dump(config))
    keys = RedisKeys(f"it-balance-{uuid.uuid4().hex[:8]}")
    process_env = worker_environment(base, redis_server.url, keys, base / "podseidon.yaml")
    env = Env(base, process_env, redis_server, keys, write_log)
    try:
        env.manage("migrate", "--verbosity", "0")
        yield env
    finally:
        stop_workers(env)
        redis_server.kill()
        stop_sandbox(sandbox)


def aggregator_leaders(env: Env) -> dict[str, int]:
    """aggregator key -> pid of its active leader."""
    return {k: s.pid for k, s in env.leaders().items() if k in AGGREGATORS}


def spread(env: Env) -> list[int]:
    """Aggregators led per live worker, most first (a worker leading none counts 0); empty
    while some aggregator has no active leader."""
    leaders = aggregator_leaders(env)
    if set(leaders) != set(AGGREGATORS):
        return []
    counts = Counter(leaders.values())
    return sorted((counts.get(w.pid, 0) for w in env.alive()), reverse=True)


def members(env: Env) -> set[str]:
    client = redis.Redis.from_url(env.redis.url, socket_timeout=2)
    try:
        return {m.decode() for m in client.zrange(env.keys.members, 0, -1)}
    finally:
        client.close()


def test_three_workers_spread_the_aggregators_two_one_one(env: Env) -> None:
    for _ in range(3):
        env.start_worker()
    wait_for(lambda: spread(env) == [2, 1, 1], 20, "the aggregators spread 2/1/1")
    for _ in range(8):  # and they stay put
        assert spread(env) == [2, 1, 1]
        time.sleep(RETRY / 2)
    assert {"generator", "monitor"} <= set(env.leaders())
    assert len(members(env)) == 3
    seen = time.time()
    wait_for(
        lambda: {w["key"] for w in env.writes() if w["time"] > seen} >= set(AGGREGATORS),
        3,
        "every aggregator writes",
    )
    assert_tokens_never_go_back(env)


def test_a_killed_workers_cells_are_led_elsewhere_within_lease_plus_two_seconds(
    env: Env,
) -> None:
    wait_for(lambda: spread(env) == [2, 1, 1], 10, "2/1/1")
    leaders = aggregator_leaders(env)
    victim_pid = Counter(leaders.values()).most_common(1)[0][0]
    victim = next(w for w in env.alive() if w.pid == victim_pid)
    moved = {k for k, pid in leaders.items() if pid == victim_pid}
    os.kill(victim.pid, signal.SIGKILL)
    victim.process.wait()
    killed_at = time.time()

    wait_for(lambda: spread(env) == [2, 2], LEASE + 2 + 5, "the survivors lead 2/2")
    states = env.leaders()
    for key in moved:
        took = states[key].since.timestamp() - killed_at
        assert took <= LEASE + 2, f"{key}: led again {took:.1f}s after the kill"
    wait_for(
        lambda: {w["key"] for w in env.writes() if w["time"] > killed_at + LEASE} >= moved,
        3,
        "the moved aggregators write again",
    )
    assert_tokens_never_go_back(env)


def test_a_new_worker_leads_cells_within_two_retry_periods(env: Env) -> None:
    wait_for(lambda: spread(env) == [2, 2], 10, "2/2")
    before = aggregator_leaders(env)
    old_members = members(env)
    worker = env.start_worker()
    joined_at = wait_for(
        lambda: (members(env) - old_members) and time.time(), 10, "the new worker joins", 0.01
    )
    wait_for(
        lambda: worker.pid in aggregator_leaders(env).values(), 2 * RETRY + 1, "it leads a cell"
    )
    led_at = min(s.since.timestamp() for k, s in env.leaders().items() if s.pid == worker.pid)
    assert led_at - joined_at <= 2 * RETRY, f"led {led_at - joined_at:.2f}s after joining"
    wait_for(lambda: spread(env) == [2, 1, 1], 5, "2/1/1 again")

    # The cell it took was handed over: its writes paused for less than a retry period (plus
    # the test controllers' tick on either side), not until the old lease expired.
    (key,) = {k for k, pid in aggregator_leaders(env).items() if pid == worker.pid}
    assert before[key] != worker.pid
    wait_for(
        lambda: any(w["key"] == key and w["time"] > led_at for w in env.writes()),
        3,
        "the new leader writes",
    )
    writes = [w for w in env.writes() if w["key"] == key]
    new_token = max(w["token"] for w in writes)
    last_old = max(w["time"] for w in writes if w["token"] < new_token)
    first_new = min(w["time"] for w in writes if w["token"] == new_token)
    gap = first_new - last_old
    assert gap <= RETRY + 2 * INTERVAL, f"{key}: no writes for {gap:.2f}s during the handover"
    assert_tokens_never_go_back(env)


def test_a_worker_pinned_to_a_cell_leads_that_cell(env: Env) -> None:
    wait_for(lambda: spread(env) == [2, 1, 1], 10, "2/1/1")
    pinned = env.start_worker({"PODSEIDON_CONTROLLERS": "aggregator/cell-d"})
    wait_for(
        lambda: aggregator_leaders(env).get("aggregator/cell-d") == pinned.pid,
        LEASE + 5,
        "the pinned worker leads cell-d",
    )
    wait_for(lambda: spread(env) == [1, 1, 1, 1], 5, "the other three share a, b, c")
    assert [k for k, s in env.leaders().items() if s.pid == pinned.pid] == ["aggregator/cell-d"]
    info = json.loads(
        redis.Redis.from_url(env.redis.url).get(
            env.keys.member(next(s.holder for s in env.leaders().values() if s.pid == pinned.pid))
        )
        or b"{}"
    )
    assert info["keys"] == ["aggregator/cell-d"]
    assert_tokens_never_go_back(env)


def test_worker_logs_say_why(env: Env) -> None:
    logs = "".join(Path(w.log).read_text(errors="replace") for w in env.workers)
    assert "handed the lease over" in logs
    assert "fair share" in logs
