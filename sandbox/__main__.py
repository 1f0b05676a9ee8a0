"""`python -m sandbox`: run local stand-ins for kube-apiserver, one HTTPS port per cluster.

    python -m sandbox --cluster core=0 --cluster cell-a=0 --state-dir var/sandbox [--persist]

For each cluster NAME this writes DIR/NAME.kubeconfig, DIR/NAME.token and, once listening,
DIR/NAME.ready (holding the server URL). SIGTERM/SIGINT stop it cleanly with exit status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from sandbox.server import SandboxServer


def _cluster_arg(text: str) -> tuple[str, int]:
    name, sep, port = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=PORT, got {text!r}")
    try:
        return name, int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port of {name!r} must be an integer") from None


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
        default=5.0,
        help="seconds between BOOKMARK events on watches that allow them",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    names = [n for n, _ in args.cluster]
    if len(set(names)) != len(names):
        parser.error("cluster names must be unique")
    return args


async def _serve(args: argparse.Namespace) -> None:
    server = SandboxServer(
        state_dir=args.state_dir,
        clusters=dict(args.cluster),
        persist=args.persist,
        history_window=args.history_window,
        bookmark_interval=args.bookmark_interval,
        host=args.host,
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
