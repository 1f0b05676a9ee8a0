"""The controller runtime in real Celery workers: leases, failover, Redis loss, switches.

Real processes on loopback: a sandbox (core, cell-a, cell-b) logging every write with its
``X-Podseidon-Fence`` header (``--write-log``), a private ``redis-server`` (so it can be killed
and restarted without disturbing anything else), and ``celery -A podseidon_site worker``
processes with production settings, a temp SQLite database and shortened lease timings
(3 s / 2 s / 0.5 s). The workers run test controllers (``runtime_test_controllers``) that patch
a ConfigMap every 200 ms through the fenced client, so the write log shows which token wrote
when. The last test runs the registry's real controllers in a worker the same way.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
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
from tests.integration.runtime_test_controllers import SIMULATED_ERROR
from workers.keys import RedisKeys
from workers.leadership import LeaderState

pytestmark = pytest.mark.integration

LEASE, RENEW_DEADLINE, RETRY = 3.0, 2.0, 0.5
KEYS = ["generator", "aggregator/cell-a", "aggregator/cell-b", "monitor"]
WRITERS = KEYS[:3]  # the monitor test controller only reports errors


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    if os.environ.get("PODSEIDON_TEST_KUBECONFIGS"):
        pytest.skip("needs the sandbox's write log")
    base = tmp_path_factory.mktemp("runtime")
    state_dir = base / "sandbox"
    state_dir.mkdir()
    write_log = base / "writes.jsonl"
    sandbox = start_sandbox(state_dir, extra=("--write-log", str(write_log)))
    redis_server = RedisServer(base)
    redis_server.start()
    config = {
        "core": {"kubeconfig": str(state_dir / "core.kubeconfig")},
        "cells": [
            {"id": name, "kubeconfig": str(state_dir / f"{name}.kubeconfig")}
            for name in ("cell-a", "cell-b")
        ],
        "leader_election": {
            "lease_duration_seconds": LEASE,
            "renew_deadline_seconds": RENEW_DEADLINE,
            "retry_period_seconds": RETRY,
        },
    }
    (base / "podseidon.yaml").write_text(yaml.safe_dump(config))
    keys = RedisKeys(f"it-runtime-{uuid.uuid4().hex[:8]}")
    process_env = worker_environment(base, redis_server.url, keys, base / "podseidon.yaml")
    env = Env(base, process_env, redis_server, keys, write_log)
    try:
        env.manage("migrate", "--verbosity", "0")
        for _ in range(2):
            env.start_worker()
        yield env
    finally:
        stop_workers(env)
        redis_server.kill()
        stop_sandbox(sandbox)


def wait_for_leaders(env: Env, timeout: float = 15) -> dict[str, LeaderState]:
    return wait_for(
        lambda: (leaders := env.leaders()) and set(leaders) >= set(KEYS) and leaders,
        timeout,
        "every controller has a leader",
    )


def test_one_leader_per_controller(env: Env) -> None:
    leaders = wait_for_leaders(env)
    pids = {w.pid for w in env.alive()}
    assert len(pids) == 2
    assert {s.pid for s in leaders.values()} <= pids
    # Exactly one worker claims each lease in its metrics, and both beat.
    for key in KEYS:
        claims = [w.name for w in env.alive() if w.leads_in_metrics(key)]
        assert len(claims) == 1, f"{key}: {claims}"
    for worker in env.alive():
        assert 'heartbeat{component="worker"}' in worker.metrics()
    # Every writer writes, tagged with its own key and the leader's current token.
    seen = time.time()
    wait_for(
        lambda: {w["key"] for w in env.writes() if w["time"] > seen} >= set(WRITERS),
        3,
        "every writer wrote",
    )
    leaders = env.leaders()
    for write in env.writes():
        if write["time"] > seen:
            assert write["token"] == leaders[write["key"]].token
            assert write["cluster"] == "core" and write["method"] == "PATCH"
            assert write["resourceVersion"]
    assert_tokens_never_go_back(env)


def test_leader_state_is_readable(env: Env) -> None:
    leaders = wait_for_leaders(env)
    workers = {w.pid: w for w in env.alive()}
    now = time.time()
    for state in leaders.values():
        worker = workers[state.pid]
        assert state.hostname == socket.gethostname()
        assert state.worker == f"{worker.name}@{socket.gethostname()}"
        assert state.holder.startswith(f"{state.hostname}:{state.pid}:")
        assert state.token > 0 and state.since <= state.renewed_at
        assert now - state.renewed_at.timestamp() < RETRY + 1
        assert state.lease_duration == LEASE
        assert state.running and not state.paused and not state.released
    wait_for(
        lambda: all(
            (s := env.leaders()[k]).last_reconcile_at
            and time.time() - s.last_reconcile_at.timestamp() < 2
            for k in KEYS
        ),
        3,
        "reconciles reported",
    )
    leaders = env.leaders()
    for key in WRITERS:
        assert not leaders[key].last_reconcile_failed, leaders[key].last_error
    assert leaders["monitor"].last_reconcile_failed
    assert leaders["monitor"].last_error == SIMULATED_ERROR
    status = {row["controller"]: row for row in json.loads(env.manage("controllers", "--json"))}
    assert status["generator"]["token"] == leaders["generator"].token
    assert status["monitor"]["last_error"] == SIMULATED_ERROR


def test_pause_and_resume_within_two_seconds(env: Env) -> None:
    leaders = wait_for_leaders(env)
    key = "aggregator/cell-a"
    token = leaders[key].token
    env.manage("controllers", "pause", key, "--reason", "integration test", "--user", "it")
    paused_at = time.time()
    time.sleep(2.5)
    late = [w for w in env.writes() if w["key"] == key and w["time"] > paused_at + 2.0]
    assert not late, f"{key} still wrote {len(late)} times more than 2 s after the pause"
    others = [w for w in env.writes() if w["time"] > paused_at + 2.0]
    assert {w["key"] for w in others} >= {"generator", "aggregator/cell-b"}
    state = env.leaders()[key]
    assert state.paused and not state.running
    assert state.token == token, "the paused controller's leader keeps the lease"

    env.manage("controllers", "resume", key, "--user", "it")
    resumed_at = time.time()
    first = wait_for(
        lambda: [w for w in env.writes() if w["key"] == key and w["time"] > resumed_at],
        3,
        "writes again",
    )[0]
    assert first["time"] - resumed_at < 2.0
    assert first["token"] == token
    assert not env.leaders()[key].paused


def test_standby_takes_over_after_kill_9(env: Env) -> None:
    leaders = wait_for_leaders(env)
    victim = next(w for w in env.alive() if w.pid == leaders["generator"].pid)
    survivor = next(w for w in env.alive() if w is not victim)
    old_tokens = {k: s.token for k, s in leaders.items()}
    os.kill(victim.pid, signal.SIGKILL)
    victim.process.wait()
    killed_at = time.time()

    wait_for(
        lambda: all(s.pid == survivor.pid for s in env.leaders().values())
        and set(env.leaders()) >= set(KEYS),
        LEASE + RETRY + 5,
        "the standby leads everything",
    )
    leaders = env.leaders()
    for key, state in leaders.items():
        if old_tokens[key] != state.token:  # a lease that changed hands
            assert state.token > old_tokens[key]
            took = state.since.timestamp() - killed_at
            assert took <= LEASE + 2, f"{key}: standby took over after {took:.1f}s"
    # The new leaders write, and nothing the dead worker sent lands after them.
    wait_for(
        lambda: {w["key"] for w in env.writes() if w["time"] > killed_at + LEASE} >= set(WRITERS),
        3,
        "new leaders write",
    )
    assert_tokens_never_go_back(env)
    env.start_worker()  # a new standby for the next tests


def test_redis_loss_stops_writes_and_they_resume(env: Env) -> None:
    wait_for_leaders(env)
    before = {k: s.token for k, s in env.leaders().items()}
    env.redis.kill()
    down_at = time.time()
    time.sleep(RENEW_DEADLINE + 2 * RETRY)

    # Nothing wrote without a provable lease (a fence check needs Redis), and the controllers
    # were stopped once the renew deadline passed.
    late = [w for w in env.writes() if w["time"] > down_at + 0.5]
    assert not late, f"{len(late)} writes while Redis was down: {late[:3]}"
    for worker in env.alive():
        text = worker.metrics()
        for key in KEYS:
            assert f'controller_running{{controller="{key}"}} 1.0' not in text, (worker, key)
            assert f'leader_heartbeat{{controller="{key}"}}' not in text

    env.redis.start()  # empty: leases and token counters are gone
    up_at = time.time()
    leaders = wait_for_leaders(env, timeout=10)
    for key, state in leaders.items():
        assert state.token > before[key], "tokens keep growing across Redis losing its data"
    wait_for(
        lambda: {w["key"] for w in env.writes() if w["time"] > up_at} >= set(WRITERS),
        5,
        "writes resume",
    )
    resumed = min(w["time"] for w in env.writes() if w["time"] > up_at) - up_at
    assert resumed < RETRY + 2
    assert_tokens_never_go_back(env)
    assert len(env.alive()) == 2, "the workers rode out the broker outage"


def test_clean_shutdown_hands_over_at_once(env: Env) -> None:
    leaders = wait_for_leaders(env)
    leader = next(w for w in env.alive() if w.pid == leaders["generator"].pid)
    survivor = next(w for w in env.alive() if w is not leader)
    leader.process.send_signal(signal.SIGTERM)
    stopped_at = time.time()
    assert leader.process.wait(timeout=20) == 0
    wait_for(
        lambda: all(s.pid == survivor.pid for s in env.leaders().values())
        and set(env.leaders()) >= set(KEYS),
        LEASE,
        "the standby leads everything",
    )
    took = max(s.since.timestamp() for s in env.leaders().values()) - stopped_at
    assert took < LEASE, f"released leases should be taken at once, took {took:.1f}s"
    assert_tokens_never_go_back(env)


def test_the_real_controllers_run_in_a_worker(env: Env, tmp_path: Path) -> None:
    """The same runtime with the registry's real controllers: fenced generator and aggregator
    writes for a labelled Deployment."""
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    from tests.integration.webhook_env import install_crd

    api = k8s_config.new_client_from_config(config_file=str(env.base / "sandbox/core.kubeconfig"))
    try:
        install_crd(api)
        namespace = f"rt-{uuid.uuid4().hex[:6]}"
        k8s.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
        worker = env.start_worker(
            {
                "PODSEIDON_TEST_CONTROLLERS": None,
                "PODSEIDON_REDIS_PREFIX": f"{env.keys.prefix}-real",
            }
        )
        k8s.AppsV1Api(api).create_namespaced_deployment(
            namespace,
            {
                "metadata": {"name": "web", "labels": {"podseidon.kubewharf.io/protect": "true"}},
                "spec": {
                    "replicas": 4,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
                    },
                },
            },
        )
        path = f"/apis/podseidon.kubewharf.io/v1alpha1/namespaces/{namespace}/podprotectors"

        def fenced_by(prefix: str) -> list[dict]:
            return [
                w
                for w in env.writes()
                if w["path"].startswith(path) and w["fence"].startswith(prefix)
            ]

        wait_for(lambda: fenced_by("generator/"), 10, "the generator creates the PodProtector")
        wait_for(lambda: fenced_by("aggregator/cell-"), 10, "aggregators write its status")
        ppr = k8s.CustomObjectsApi(api).get_namespaced_custom_object(
            "podseidon.kubewharf.io", "v1alpha1", namespace, "podprotectors", "deployment-web"
        )
        assert ppr["spec"]["minAvailable"] == 3
        assert 'controller_running{controller="generator"} 1.0' in worker.metrics()
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(timeout=20) == 0
    finally:
        api.close()
