"""`python -m sandbox`: run local stand-ins for kube-apiserver, one HTTPS port per cluster.

    python -m sandbox --cluster core=0 --cluster cell-a=0 --state-dir var/sandbox [--persist]
        [--controllers all|none|gc,kubelet,replicaset,deployment,statefulset] [--nodes N]
        [--service-endpoint NAMESPACE/NAME[:PORT]=https://HOST:PORT ...]
        [--admission-control-config-file FILE]

For each cluster NAME this writes DIR/NAME.kubeconfig, DIR/NAME.token and, once listening,
DIR/NAME.ready (holding the server URL). SIGTERM/SIGINT stop it cleanly with exit status 0.
Every cluster calls its ValidatingWebhookConfigurations as kube-apiserver does
(sandbox/webhooks.py); --service-endpoint says where a webhook's clientConfig.service is, and
--admission-control-config-file which client certificate (or token) to present to which webhook,
in kube-apiserver's own format (sandbox/admission_config.py).

Sandbox-only test backdoor (never on a real apiserver): `DELETE <object path>?sandboxForce=true`
drops the object from storage at once, as if etcd had lost it: no admission, finalizers
ignored, no deletionTimestamp ever set; watchers see a plain DELETED event.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from pathlib import Path

from sandbox.admission_config import AdmissionConfigError, load_admission_config
from sandbox.controllers import ControllerOptions, parse_controllers, plugin_factory
from sandbox.server import PluginFactory, SandboxServer
from sandbox.watch_timing import BOOKMARK_INTERVAL, MIN_REQUEST_TIMEOUT, WatchTiming
from sandbox.webhooks import dispatcher_factory, parse_service_endpoint


def _cluster_arg(text: str) -> tuple[str, int]:
    name, sep, port = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=PORT, got {text!r}")
    try:
        return name, int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port of {name!r} must be an integer") from None


def _non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 <= value < float("inf"):  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _controllers_arg(text: str) -> frozenset[str]:
    try:
        return parse_controllers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _service_endpoint_arg(text: str) -> tuple[str, str]:
    try:
        return parse_service_endpoint(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _load_factory(spec: str) -> PluginFactory:
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise SystemExit(f"--plugin expects MODULE:FACTORY, got {spec!r}")
    return getattr(importlib.import_module(module), attr)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--cluster",
        action="append",
        type=_cluster_arg,
        required=True,
        metavar="NAME=PORT",
        help="serve a cluster; PORT 0 picks a free port",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        required=True,
        help="CA, kubeconfigs, tokens, ready files and (with --persist) data",
    )
    parser.add_argument(
        "--persist",
        action="store_true",
        help="keep objects and resourceVersions in SQLite under --state-dir",
    )
    parser.add_argument(
        "--history-window",
        type=int,
        default=10000,
        help="watch events retained per cluster; older resourceVersions get "
        "410 Gone (default 10000)",
    )
    parser.add_argument(
        "--bookmark-interval",
        type=float,
        default=BOOKMARK_INTERVAL,
        metavar="S",
        help="seconds between BOOKMARK events on watches that allow them; one also comes 2 s "
        "before a watch's deadline, as from kube-apiserver's watch cache; 0 sends none "
        f"(default {BOOKMARK_INTERVAL:g})",
    )
    parser.add_argument(
        "--min-request-timeout",
        type=float,
        default=MIN_REQUEST_TIMEOUT,
        metavar="S",
        help="a watch without timeoutSeconds ends after a random time in [S, 2S), as with "
        f"kube-apiserver's flag of that name; 0: never (default {MIN_REQUEST_TIMEOUT:g})",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    controllers = parser.add_argument_group("built-in controllers")
    controllers.add_argument(
        "--controllers",
        type=_controllers_arg,
        default=ControllerOptions().controllers,
        metavar="LIST",
        help="controllers to run in every cluster: all, none or a comma-separated list of "
        "gc, kubelet, replicaset, deployment, statefulset (default all)",
    )
    controllers.add_argument(
        "--nodes",
        type=int,
        default=ControllerOptions.nodes,
        help="Ready nodes sandbox-node-0..N-1 the kubelet registers (default 1)",
    )
    controllers.add_argument(
        "--kubelet-ready-delay",
        type=float,
        default=ControllerOptions.kubelet_ready_delay,
        metavar="S",
        help="seconds from scheduling to Running/Ready (default 1)",
    )
    controllers.add_argument(
        "--kubelet-grace-cap",
        type=float,
        default=ControllerOptions.kubelet_grace_cap,
        metavar="S",
        help="the kubelet ends a graceful deletion after min(grace period, S) (default 1)",
    )
    controllers.add_argument(
        "--gc-backoff-initial",
        type=float,
        default=ControllerOptions.gc_backoff_initial,
        metavar="S",
        help="first retry delay of a rejected garbage-collector deletion, doubling per "
        "failure (default 0.005, as kube-controller-manager)",
    )
    controllers.add_argument(
        "--gc-backoff-max",
        type=float,
        default=ControllerOptions.gc_backoff_max,
        metavar="S",
        help="longest retry delay of the garbage collector (default 30)",
    )
    parser.add_argument(
        "--service-endpoint",
        action="append",
        type=_service_endpoint_arg,
        default=[],
        metavar="NS/NAME[:PORT]=https://HOST:PORT",
        help="where to reach a webhook's clientConfig.service (the sandbox cannot route to "
        "Services); unmapped Services fail like missing ones (repeatable)",
    )
    parser.add_argument(
        "--admission-control-config-file",
        type=Path,
        metavar="FILE",
        help="an AdmissionConfiguration as kube-apiserver takes it: the kubeconfig of its "
        "ValidatingAdmissionWebhook plugin says which credentials to present to which webhook",
    )
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE:FACTORY",
        help="also run the plugins FACTORY(cluster) returns in every cluster (repeatable)",
    )
    parser.add_argument(
        "--write-log",
        type=Path,
        metavar="FILE",
        help="append one JSON line per successful write (time, cluster, method, path, status, "
        "resourceVersion, X-Podseidon-Fence header) to FILE",
    )
    parser.add_argument(
        "--write-latency",
        type=_non_negative_seconds,
        default=0.0,
        metavar="S",
        help="seconds every write (POST, PUT, PATCH, DELETE) waits before it is handled, for "
        "kube-apiserver's and etcd's share of a write that the in-memory store does not pay "
        "(0.0045 makes a 10 KB status PUT cost about what a v1.24 kube-apiserver's does on "
        "2 CPUs); reads and watches are not delayed (default 0)",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    names = [n for n, _ in args.cluster]
    if len(set(names)) != len(names):
        parser.error("cluster names must be unique")
    args.webhook_credentials = None
    if args.admission_control_config_file is not None:
        try:
            args.webhook_credentials = load_admission_config(args.admission_control_config_file)
        except AdmissionConfigError as exc:
            parser.error(f"--admission-control-config-file: {exc}")
    return args


async def _serve(args: argparse.Namespace) -> None:
    server = SandboxServer(
        state_dir=args.state_dir,
        clusters=dict(args.cluster),
        persist=args.persist,
        history_window=args.history_window,
        watch_timing=WatchTiming(args.bookmark_interval, args.min_request_timeout),
        host=args.host,
        write_log=args.write_log,
        write_latency=args.write_latency,
        # Controllers come last: admission plugins are in place before they write.
        plugin_factories=[
            dispatcher_factory(dict(args.service_endpoint), args.webhook_credentials),
            *(_load_factory(spec) for spec in args.plugin),
            plugin_factory(
                ControllerOptions(
                    controllers=args.controllers,
                    nodes=args.nodes,
                    kubelet_ready_delay=args.kubelet_ready_delay,
                    kubelet_grace_cap=args.kubelet_grace_cap,
                    gc_backoff_initial=args.gc_backoff_initial,
                    gc_backoff_max=args.gc_backoff_max,
                )
            ),
        ],
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
