"""The aiohttp application of one sandbox cluster, and the process hosting several of them."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import orjson
from aiohttp import web

from sandbox import discovery, errors
from sandbox.cluster import Cluster
from sandbox.errors import ApiError
from sandbox.handlers import Handlers, error_response, parse_route, respond
from sandbox.kubeconfig import write_kubeconfig
from sandbox.pki import ServerPki, ensure_pki
from sandbox.store import SqlitePersistence, Watcher
from sandbox.watch_timing import WatchTiming

log = logging.getLogger(__name__)

# Readable without a token, as with the apiserver's anonymous system:public-info-viewer.
_PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})


def build_app(
    cluster: Cluster,
    token: str,
    timing: WatchTiming | None = None,
    write_log: IO[str] | None = None,
    write_latency: float = 0.0,
) -> web.Application:
    """The HTTP face of `cluster`, guarded by a bearer `token`; watches end and get bookmarks
    as `timing` says (kube-apiserver's defaults); successful writes are appended to `write_log`
    as JSON lines when given; every write waits `write_latency` seconds first."""
    handlers = Handlers(cluster, timing, write_latency)
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def api(request: web.Request, handler: Any) -> web.StreamResponse:
        auth = request.headers.get("Authorization")
        if auth is None and request.path in _PUBLIC_PATHS:
            pass
        elif auth is None or not hmac.compare_digest(auth.encode(), expected):
            return respond(errors.unauthorized_body(), 401)
        try:
            if request.path in ("/healthz", "/livez", "/readyz"):
                return web.Response(text="ok")
            if request.path.startswith("/openapi/"):
                return openapi(cluster, request)
            found = await handlers.discovery(request) if request.method == "GET" else None
            if found is not None:
                return found
            route = parse_route(cluster, request.path)
            if route is None:
                return respond(errors.page_not_found(), 404)
            return await handlers.resource(request, route)
        except ApiError as exc:
            return error_response(exc)
        except web.HTTPException:
            raise
        except Exception as exc:  # an internal bug must still answer as an apiserver would
            log.exception("internal error on %s %s", request.method, request.path)
            return error_response(errors.internal(str(exc) or type(exc).__name__))

    @web.middleware
    async def log_writes(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        if (
            write_log is not None
            and request.method not in ("GET", "HEAD", "OPTIONS")
            and 200 <= response.status < 300
            and "dryRun" not in request.query
        ):
            write_log.write(_write_record(cluster.name, request, response))
            write_log.flush()
        return response

    middlewares = [log_writes, api] if write_log is not None else [api]
    app = web.Application(middlewares=middlewares, client_max_size=64 * 1024 * 1024)
    app["cluster"] = cluster
    app["watchers"] = set()

    async def fallback(request: web.Request) -> web.Response:  # the middleware answers all
        return web.Response(status=404)

    app.router.add_route("*", "/{tail:.*}", fallback)
    return app


FENCE_HEADER = "X-Podseidon-Fence"


def _write_record(cluster: str, request: web.Request, response: web.StreamResponse) -> str:
    """One `--write-log` line: when, where, what, the resulting resourceVersion, the fence."""
    resource_version = None
    body = getattr(response, "body", None)
    if isinstance(body, bytes):
        with contextlib.suppress(ValueError):
            obj = orjson.loads(body)
            if isinstance(obj, dict):
                resource_version = (obj.get("metadata") or {}).get("resourceVersion")
    record = {
        "time": time.time(),
        "cluster": cluster,
        "method": request.method,
        "path": request.path,
        "status": response.status,
        "resourceVersion": resource_version,
        "fence": request.headers.get(FENCE_HEADER),
    }
    return orjson.dumps(record).decode() + "\n"


def openapi(cluster: Cluster, request: web.Request) -> web.Response:
    """OpenAPI v3 paths without schemas (enough for kubectl); no v2 document."""
    parts = [p for p in request.path.split("/") if p][2:]
    if request.path.rstrip("/") == "/openapi/v3":
        return respond(discovery.openapi_v3_index(cluster.registry))
    body = None
    if request.path.startswith("/openapi/v3/"):
        if len(parts) == 2 and parts[0] == "api":
            body = discovery.openapi_v3_document(cluster.registry, "", parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            body = discovery.openapi_v3_document(cluster.registry, parts[1], parts[2])
    if body is None:
        return respond(errors.page_not_found(), 404)
    return respond(body)


class ClusterPlugin(Protocol):
    """In-process machinery attached to one cluster (phase 2: controllers, kubelet, GC,
    webhook dispatcher). Started after the cluster listens, stopped before it closes."""

    async def start(self, cluster: Cluster) -> None: ...

    async def stop(self) -> None: ...


# Called once per cluster; returns the plugins to run on it.
PluginFactory = Callable[[Cluster], list[ClusterPlugin]]


@dataclass
class RunningCluster:
    cluster: Cluster
    runner: web.AppRunner
    port: int
    app: web.Application
    kubeconfig: Path
    plugins: list[ClusterPlugin] = field(default_factory=list)


@dataclass
class SandboxServer:
    """Hosts several independent clusters, each with its own HTTPS port and state."""

    state_dir: Path
    clusters: dict[str, int]
    persist: bool = False
    history_window: int = 10000
    watch_timing: WatchTiming = field(default_factory=WatchTiming)
    host: str = "127.0.0.1"
    plugin_factories: list[PluginFactory] = field(default_factory=list)
    # Append one JSON line per successful write here (tests of writers, e.g. fencing).
    write_log: Path | None = None
    # Seconds every write waits before it is handled (see Handlers).
    write_latency: float = 0.0
    running: dict[str, RunningCluster] = field(default_factory=dict)
    _flusher: asyncio.Task[None] | None = None
    _write_log_file: IO[str] | None = None

    def _token(self, name: str) -> str:
        path = self.state_dir / f"{name}.token"
        if path.exists():
            return path.read_text().strip()
        token = secrets.token_urlsafe(32)
        path.write_text(token)
        path.chmod(0o600)
        return token

    async def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        pki: ServerPki = ensure_pki(self.state_dir)
        ssl_context = pki.ssl_context()
        if self.write_log is not None:
            self._write_log_file = open(self.write_log, "a", encoding="utf-8")  # noqa: SIM115
        for name, port in self.clusters.items():
            persistence = (
                SqlitePersistence(self.state_dir / f"{name}.sqlite") if self.persist else None
            )
            cluster = Cluster(name, history_window=self.history_window, persistence=persistence)
            token = self._token(name)
            app = build_app(
                cluster, token, self.watch_timing, self._write_log_file, self.write_latency
            )
            runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
            await runner.setup()
            site = web.TCPSite(runner, self.host, port, ssl_context=ssl_context)
            await site.start()
            sockets = getattr(site._server, "sockets", None) or []
            bound = sockets[0].getsockname()[1] if sockets else port
            server_url = f"https://{self.host}:{bound}"
            kubeconfig = self.state_dir / f"{name}.kubeconfig"
            write_kubeconfig(kubeconfig, name, server_url, pki.ca_pem(), token)
            running = RunningCluster(cluster, runner, bound, app, kubeconfig)
            self.running[name] = running
            for factory in self.plugin_factories:
                for plugin in factory(cluster):
                    await plugin.start(cluster)
                    running.plugins.append(plugin)
            (self.state_dir / f"{name}.ready").write_text(f"{server_url}\n")
            log.info("cluster %s serving on %s", name, server_url)
        if self.persist:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        # Batching keeps disk syncs off the write path; at most 200 ms of writes can be lost.
        while True:
            await asyncio.sleep(0.2)
            for rc in self.running.values():
                rc.cluster.store.flush()

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        for name, rc in self.running.items():
            (self.state_dir / f"{name}.ready").unlink(missing_ok=True)
            for plugin in reversed(rc.plugins):
                try:
                    await plugin.stop()
                except Exception:
                    log.exception("plugin %r of cluster %s failed to stop", plugin, name)
            watchers: set[Watcher] = rc.app["watchers"]
            for watcher in list(watchers):
                watcher.close()
            rc.cluster.store.close_watchers()
        await asyncio.sleep(0)
        for rc in self.running.values():
            await rc.runner.cleanup()
            rc.cluster.close()
        self.running.clear()
        if self._write_log_file is not None:
            self._write_log_file.close()
            self._write_log_file = None
