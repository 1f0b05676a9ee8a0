"""The controller runtime of one worker process: elections, switches, start/stop of controllers.

``ControllerManager`` owns, for every controller the registry builds, an ``Elector`` thread:

    every retry period (sooner when woken by a switch change or a released lease)
      not leading:  try to acquire the lease (only once the switches have been read)
      leading:      renew it; "not ours any more" → lost at once; Redis errors → lost once the
                    renew deadline has passed since the last successful renewal
      then:         run the controller iff we lead and it is not paused; otherwise stop it

Each start gets a fresh ``RedisFence`` and fenced cluster clients (``KubeClient.fenced``); a stop
revokes that fence *before* calling ``controller.stop()``, so in-flight work of a stopped term
cannot write. After a start or a stop the elector writes the leader state and announces it
(``state`` on ``<prefix>:events``). A ``SwitchWatcher`` thread subscribes to that channel
(switch changes, released leases) and re-reads the switches every retry period as a fallback;
it also beats the worker ``heartbeat``. On ``stop()`` controllers are stopped and leases
released, so a standby takes over within one retry period instead of a lease duration.

Balancing (``controllers.balance``, on by default): the watcher also keeps this worker in the
membership (``workers.membership``) once the switches are read, and re-plans its share of the
aggregator leases (``workers.balance``) every retry period and whenever the membership changes
or a lease is released. An elector acquires a free aggregator lease only when the plan gives
it to this worker, and hands a held one over when the plan gives it away: it revokes the fence,
releases the lease and announces it (the new leader starts at once), then stops the controller.

The manager knows nothing about Celery (``workers.bootstep`` starts it) and reads switches
through a callable, so it runs the same in a worker, a test or a one-off script.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping

import redis

from podseidon_site.config import PodseidonConfig
from protectors.kube.client import KubeClient
from workers import metrics
from workers.balance import Balancer
from workers.controller import Controller, ControllerContext, ControllerStatus
from workers.keys import (
    MEMBERS_EVENT,
    RELEASED_EVENT,
    STATE_EVENT,
    SWITCH_EVENT,
    RedisKeys,
    decode_event,
    encode_event,
)
from workers.leadership import MAX_ERROR_CHARS, status_fields
from workers.leases import Holder, Lease, LeaseStore, RedisFence, Timings
from workers.membership import Membership

logger = logging.getLogger("podseidon.workers.runtime")

SwitchLoader = Callable[[], Mapping[str, bool]]
# Shortest sleep of an election loop, so a broken clock or zero TTL cannot spin it.
_MIN_WAIT = 0.01
# How long a pub/sub read blocks, bounding how late the watcher notices stop().
_PUBSUB_POLL = 0.5
# Lease keys spread over the workers when balancing is on.
BALANCED_PREFIX = "aggregator/"


class ClusterClients:
    """Unfenced clients built once per process; every term gets fenced views of them."""

    def __init__(
        self,
        config: PodseidonConfig,
        factory: Callable[..., KubeClient] = KubeClient.from_access,
    ) -> None:
        self._config = config
        self._factory = factory
        self._lock = threading.Lock()
        self._core: KubeClient | None = None
        self._cells: dict[str, KubeClient] = {}

    def core(self) -> KubeClient:
        with self._lock:
            if self._core is None:
                self._core = self._factory(self._config.core)
            return self._core

    def cells(self) -> dict[str, KubeClient]:
        with self._lock:
            for cell in self._config.cells:
                if cell.id not in self._cells:
                    self._cells[cell.id] = self._factory(cell)
            return dict(self._cells)


class Elector:
    """The election loop of one controller key in this process."""

    def __init__(self, manager: ControllerManager, controller: Controller) -> None:
        self.manager = manager
        self.controller = controller
        self.key = controller.name
        self.lease: Lease | None = None
        self.fence: RedisFence | None = None
        self.status = ControllerStatus()
        self.running = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._redis_ok = True
        self._start_failures = 0
        self._next_start = 0.0
        self._last_failed = False

    # -- thread ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"elector:{self.key}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def join(self, timeout: float | None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        manager = self.manager
        while not manager.stopping.is_set():
            began = manager.clock()
            try:
                wait = self._step()
            except Exception:  # a bug must not kill the loop; renewals must go on
                logger.exception("election loop of %s failed; retrying", self.key)
                wait = manager.timings.retry_period
            # Rounds start every ``wait`` seconds, however long starting a controller took.
            self._wake.wait(max(wait - (manager.clock() - began), _MIN_WAIT))
            self._wake.clear()
        self._shutdown()

    # -- one round -------------------------------------------------------------------------

    def _step(self) -> float:
        """One election round; returns how long to sleep before the next one."""
        manager = self.manager
        timings = manager.timings
        wait = timings.retry_period
        if self.lease is None:
            if manager.paused(self.key) is None:
                return wait  # switches not read yet: we would not know whether to run
            if not manager.may_acquire(self.key):
                return wait  # another worker's share (the plan wakes us when that changes)
            try:
                result = manager.store.try_acquire(self.key, self._state(acquiring=True))
            except redis.RedisError as error:
                self._redis_failed(error)
                return wait
            self._redis_back()
            if result.lease is None:
                # Come back right when the current lease would expire, if that is sooner.
                return min(wait, result.ttl + _MIN_WAIT)
            self.lease = result.lease
            manager.note(self.key, manager.holder.id)
            self.status = ControllerStatus()
            self._last_failed = False
            metrics.LEADER_HEARTBEAT.labels(self.key).set(time.time())
            logger.info("%s: acquired the lease (token %d)", self.key, self.lease.token)
        else:
            try:
                renewed = manager.store.renew(self.lease, self._state())
            except redis.RedisError as error:
                self._redis_failed(error)
                left = timings.renew_deadline - (manager.clock() - self.lease.renewed_mono)
                if left <= 0:
                    self._lose(f"could not renew within the renew deadline ({error})")
                else:
                    wait = min(wait, left + _MIN_WAIT)
            else:
                self._redis_back()
                if renewed:
                    metrics.LEADER_HEARTBEAT.labels(self.key).set(time.time())
                    if manager.should_release(self.key):
                        self._hand_over()
                        return wait
                else:
                    self._lose("the lease expired or another worker holds it")
        self._apply()
        return wait

    def _apply(self) -> None:
        """Run the controller iff we lead and it is not paused."""
        manager = self.manager
        want = (
            self.lease is not None
            and manager.paused(self.key) is False
            and not manager.stopping.is_set()
        )
        if want and not self.running and manager.clock() >= self._next_start:
            self._start_controller()
            self._publish_state()
        elif not want and self.running:
            why = "paused" if self.lease is not None else "no longer the leader"
            self._stop_controller(why)
            self._publish_state()

    def _start_controller(self) -> None:
        assert self.lease is not None
        manager = self.manager
        fence = RedisFence(manager.store, self.lease, on_reject=self._fence_rejected)
        try:
            clients = manager.clients
            context = ControllerContext(
                config=manager.config,
                core=clients.core().fenced(fence.before_write),
                cells={
                    cell_id: client.fenced(fence.before_write)
                    for cell_id, client in clients.cells().items()
                },
                fence=fence,
                status=self.status,
                report=self._report,
            )
            self.controller.start(context)
        except Exception as error:
            fence.revoke()
            with contextlib.suppress(Exception):  # undo whatever part of it did start
                self.controller.stop()
            self._start_failures += 1
            backoff = min(manager.timings.retry_period * 2 ** (self._start_failures - 1), 60.0)
            self._next_start = manager.clock() + backoff
            self._report(f"start failed: {error}")
            logger.exception("%s: start failed; next try in %.1fs", self.key, backoff)
            return
        self._start_failures = 0
        self.fence = fence
        self.running = True
        metrics.CONTROLLER_RUNNING.labels(self.key).set(1)
        logger.info("%s: started (token %d)", self.key, self.lease.token)

    def _stop_controller(self, why: str) -> None:
        if self.fence is not None:
            self.fence.revoke()  # first: nothing of this term may write from now on
        self.running = False
        metrics.CONTROLLER_RUNNING.labels(self.key).set(0)
        logger.info("%s: stopping (%s)", self.key, why)
        try:
            self.controller.stop()
        except Exception:
            logger.exception("%s: stop failed", self.key)
        self.fence = None

    def _lose(self, why: str) -> None:
        logger.warning("%s: lost the lease: %s", self.key, why)
        if self.running:
            self._stop_controller("lost the lease")
        self.lease = None
        self.manager.note(self.key, None)
        _remove_series(metrics.LEADER_HEARTBEAT, self.key)

    def _hand_over(self) -> None:
        """Give the lease to the worker the balance plan names: no write of this term goes out
        any more (fence), the lease is free and announced, so the next leader starts while this
        controller is still stopping."""
        lease, self.lease = self.lease, None
        assert lease is not None
        manager = self.manager
        if self.fence is not None:
            self.fence.revoke()
        _remove_series(metrics.LEADER_HEARTBEAT, self.key)
        try:
            if manager.store.release(lease, {"released": "1", "running": "0"}):
                manager.publish(RELEASED_EVENT, self.key)
        except redis.RedisError as error:
            logger.warning("%s: could not release the lease (it will expire): %s", self.key, error)
        manager.note(self.key, None)
        logger.info(
            "%s: handed the lease over (token %d) to balance the aggregators", self.key, lease.token
        )
        if self.running:
            self._stop_controller("handed over to another worker")

    def _shutdown(self) -> None:
        if self.running:
            self._stop_controller("worker shutting down")
        lease, self.lease = self.lease, None
        _remove_series(metrics.LEADER_HEARTBEAT, self.key)
        if lease is None:
            return
        try:
            released = self.manager.store.release(lease, {"released": "1", "running": "0"})
            if released:
                self.manager.publish(RELEASED_EVENT, self.key)
                logger.info("%s: released the lease (token %d)", self.key, lease.token)
        except redis.RedisError as error:
            logger.warning("%s: could not release the lease (it will expire): %s", self.key, error)

    # -- state and reports -----------------------------------------------------------------

    def _state(self, *, acquiring: bool = False) -> dict[str, object]:
        holder = self.manager.store.holder
        now = time.time()
        paused = self.manager.paused(self.key)
        fields: dict[str, object] = {
            "renewed_at": f"{now:.3f}",
            "paused": "1" if paused else "0",
            "running": "1" if self.running and not acquiring else "0",
        }
        if acquiring:
            fields.update(
                holder=holder.id,
                hostname=holder.hostname,
                pid=holder.pid,
                worker=holder.worker,
                since=f"{now:.3f}",
                lease_duration=self.manager.timings.lease_duration,
                released="0",
            )
        status = self.status if not acquiring else ControllerStatus()
        failed = self._last_failed and not acquiring
        fields.update(
            status_fields(status.last_reconcile_at, failed, status.last_error, status.last_error_at)
        )
        return fields

    def _publish_state(self) -> None:
        """Write that the controller started or stopped, and say so on the events channel."""
        if self.lease is None:
            return
        try:
            written = self.manager.store.update_state(self.lease, self._state())
        except redis.RedisError:
            return  # the next renewal carries it
        if written:
            self.manager.publish(STATE_EVENT, self.key)

    def _report(self, error: str | None) -> None:
        now = time.time()
        self.status.last_reconcile_at = now
        self._last_failed = error is not None
        if error is not None:
            self.status.last_error = str(error)[:MAX_ERROR_CHARS]
            self.status.last_error_at = now

    def _fence_rejected(self, why: str) -> None:
        metrics.FENCE_REJECTIONS.labels(self.key).inc()
        logger.debug("%s: write refused by the fence: %s", self.key, why)

    def _redis_failed(self, error: Exception) -> None:
        if self._redis_ok:
            logger.warning("%s: Redis unreachable: %s", self.key, error)
        self._redis_ok = False

    def _redis_back(self) -> None:
        if not self._redis_ok:
            logger.info("%s: Redis reachable again", self.key)
        self._redis_ok = True


def _remove_series(gauge, label: str) -> None:
    with contextlib.suppress(KeyError):
        gauge.remove(label)


class ControllerManager:
    """Runs this worker's share of the controllers, as the leases decide."""

    def __init__(
        self,
        config: PodseidonConfig,
        controllers: list[Controller],
        *,
        client: redis.Redis,
        keys: RedisKeys,
        switch_loader: SwitchLoader,
        holder: Holder | None = None,
        timings: Timings | None = None,
        clients: ClusterClients | None = None,
        clock: Callable[[], float] = time.monotonic,
        balance: bool | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.keys = keys
        self.timings = timings or Timings.from_config(config.leader_election)
        self.clock = clock
        self.store = LeaseStore(
            client, keys, holder or Holder.for_this_process(), self.timings, clock=clock
        )
        self.clients = clients or ClusterClients(config)
        self.stopping = threading.Event()
        self._switch_loader = switch_loader
        self._paused: dict[str, bool] | None = None
        self._switches_ok = True
        self.electors = {c.name: Elector(self, c) for c in controllers}
        self._watcher: threading.Thread | None = None
        balance = config.controllers.balance if balance is None else balance
        balanced = [k for k in self.electors if k.startswith(BALANCED_PREFIX)] if balance else []
        self.membership: Membership | None = None
        self.balancer: Balancer | None = None
        if balanced:
            timings = self.timings
            # A dead worker leaves the membership well before its leases expire, so the others
            # plan without it by the time they can take them.
            ttl = min(timings.lease_duration, 2.5 * timings.retry_period)
            self.membership = Membership(client, keys, self.store.holder, balanced, ttl)
            self.balancer = Balancer(
                self.membership.me,
                self.membership.read,
                fallback=2 * timings.retry_period,
                keep=timings.lease_duration,
                clock=clock,
            )
        self._announced = False
        self._balance_ok = True

    @property
    def holder(self) -> Holder:
        return self.store.holder

    def paused(self, key: str) -> bool | None:
        """Whether ``key`` is paused; None until the switches were read once."""
        paused = self._paused
        return None if paused is None else paused.get(key, False)

    # -- balancing (no-ops when it is off) --------------------------------------------------

    def may_acquire(self, key: str) -> bool:
        return self.balancer is None or self.balancer.may_acquire(key)

    def should_release(self, key: str) -> bool:
        return self.balancer is not None and self.balancer.should_release(key)

    def note(self, key: str, holder: str | None) -> None:
        if self.balancer is not None:
            self.balancer.note(key, holder)

    def _rebalance(self) -> None:
        """Beat in the membership, re-plan, wake the electors the plan concerns."""
        if self.membership is None or self.balancer is None or self._paused is None:
            return  # not able to lead before the switches are read: not a member yet
        if self.stopping.is_set():
            return  # leaving
        try:
            self.membership.heartbeat()
            plan = self.balancer.refresh()
        except redis.RedisError as error:
            if self._balance_ok:
                logger.warning("cannot read the membership (keeping the last plan): %s", error)
            self._balance_ok = False
            return
        if not self._balance_ok:
            logger.info("membership readable again")
        self._balance_ok = True
        if not self._announced:
            self._announced = True
            self.publish(MEMBERS_EVENT, self.holder.id)
            logger.info(
                "joined %d live worker(s); fair share: %d of the aggregators",
                plan.members,
                plan.share,
            )
        metrics.WORKERS.set(plan.members)
        metrics.LEASE_SHARE.set(plan.share)
        for key in plan.acquire | plan.release:
            self.electors[key].wake()

    def running(self) -> dict[str, bool]:
        return {key: elector.running for key, elector in self.electors.items()}

    def leading(self) -> dict[str, int]:
        """controller key → token, for the controllers this process holds the lease of."""
        return {
            key: elector.lease.token
            for key, elector in self.electors.items()
            if elector.lease is not None
        }

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        logger.info(
            "controller runtime %s starting: %s (lease %.1fs, renew deadline %.1fs, retry %.1fs)",
            self.holder.id,
            ", ".join(self.electors) or "no controllers",
            self.timings.lease_duration,
            self.timings.renew_deadline,
            self.timings.retry_period,
        )
        self._watcher = threading.Thread(
            target=self._watch, name="controller-switches", daemon=True
        )
        self._watcher.start()
        for elector in self.electors.values():
            elector.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every controller and release every lease held; returns within ``timeout``."""
        self.stopping.set()
        deadline = time.monotonic() + timeout
        # Leave first: when our released leases are announced, the others plan without us.
        self._leave(announce=False)
        for elector in self.electors.values():
            elector.wake()
        for elector in self.electors.values():
            elector.join(max(deadline - time.monotonic(), 0))
        if self._watcher is not None:
            self._watcher.join(max(min(deadline - time.monotonic(), _PUBSUB_POLL * 2), 0))
        self._leave(announce=True)  # again, in case a beat of the watcher raced the first
        logger.info("controller runtime %s stopped", self.holder.id)

    def _leave(self, *, announce: bool) -> None:
        if self.membership is None or not self._announced:
            return
        try:
            self.membership.leave()
        except redis.RedisError as error:
            logger.warning("could not leave the membership (it will expire): %s", error)
            return
        if announce:
            self.publish(MEMBERS_EVENT, self.holder.id)

    def publish(self, kind: str, key: str) -> None:
        with contextlib.suppress(redis.RedisError):  # the others poll every retry period
            self.client.publish(self.keys.events, encode_event(kind, key))

    # -- switches --------------------------------------------------------------------------

    def _reload_switches(self) -> None:
        try:
            loaded = dict(self._switch_loader())
        except Exception as error:
            if self._switches_ok:
                logger.warning("cannot read controller switches (keeping the last ones): %s", error)
            self._switches_ok = False
            return
        if not self._switches_ok:
            logger.info("controller switches readable again")
        self._switches_ok = True
        previous = self._paused
        current = {key: bool(loaded.get(key, False)) for key in self.electors}
        self._paused = current
        for key, paused in current.items():
            if previous is None or previous.get(key) != paused:
                if previous is not None:
                    logger.info("%s: switch is now %s", key, "paused" if paused else "running")
                self.electors[key].wake()

    def _watch(self) -> None:
        retry = self.timings.retry_period
        pubsub = None
        next_reload = self.clock()  # the first read lets the electors begin
        while not self.stopping.is_set():
            now = self.clock()
            if now >= next_reload:
                self._reload_switches()
                self._rebalance()
                next_reload = now + retry
            metrics.HEARTBEAT.labels(metrics.WORKER_COMPONENT).set(time.time())
            timeout = min(max(next_reload - self.clock(), 0), _PUBSUB_POLL)
            try:
                if pubsub is None:
                    pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(self.keys.events)
                    # Missed messages while unsubscribed: catch up now.
                    next_reload = self.clock()
                    continue
                message = pubsub.get_message(timeout=timeout)
            except (redis.RedisError, OSError):
                if pubsub is not None:
                    _close_quietly(pubsub)
                pubsub = None
                self.stopping.wait(timeout or _MIN_WAIT)
                continue
            if message is None or message.get("type") != "message":
                continue
            event = decode_event(message["data"])
            if event is None:
                continue
            kind, key = event
            if kind == SWITCH_EVENT:
                self._reload_switches()
            elif kind == RELEASED_EVENT:
                if key in self.electors:
                    self.electors[key].wake()
                self._rebalance()
            elif kind == MEMBERS_EVENT and key != self.holder.id:
                self._rebalance()
        if pubsub is not None:
            _close_quietly(pubsub)


def _close_quietly(pubsub) -> None:
    with contextlib.suppress(Exception):
        pubsub.close()
