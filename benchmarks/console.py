"""Console and API: does a PodProtector table page of 10,000 protectors answer as fast as 10?

    .venv/bin/python benchmarks/console.py [--sizes 10,10000] [--repeats 200] [--profile]

One process, Django's test settings (``podseidon_site.settings.test``) on a temporary SQLite
database migrated here. For each size it fills a PodProtector cache the way the site tests do
(``tests/site/site_fakes.py``: ``protector`` objects through ``install_cache``, i.e. the real
``ProtectorCache`` rows over a fixed informer store): two cells, eight namespaces, a mix of
healthy, degraded and at-risk statuses. Then it times, with Django's test ``Client`` in
process, interleaving the sizes request by request:

- ``api first page``: ``GET /api/v1/podprotectors/?page_size=50`` with a DRF token;
- ``api filter+sort``: the same with ``namespace``, ``at_risk=false`` and ``sort=-estimated``;
- ``html first page``: the console's ``/protectors/`` (logged-in session);
- ``html middle page``: ``/protectors/?page=P``, P the middle page of that size.

Every cluster client the site asks for during the run is refused and counted (there must be
none: the table is served from the cache). Prints a table of medians and p95s per size, the
ratio of the largest size's median to the smallest's and to the like-for-like size's (the
smallest whose page holds as many rows as the largest's: 10 protectors put only 10 rows on a
page of 50), and the verdict line ``page as fast as 10: PASS|FAIL``: every figure's median at
the largest size within 1.5 x the like-for-like median and under 50 ms, and no cluster call
(reasons in docs/benchmarks.md, section "Console"). Exit status 0 when the run completed (1 on
FAIL with --check), 2 when the harness failed, 143 on SIGTERM.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# `python benchmarks/console.py` puts benchmarks/ first on sys.path, where benchmarks/sandbox.py
# would shadow the `sandbox` package that site_fakes imports: the repository root goes first.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# The site tests' helpers (fake protectors, the cache filler) are plain modules there.
sys.path.append(str(REPO / "tests" / "site"))

from harness import HarnessError, exit_on_sigterm  # noqa: E402

CELLS = ("cell-a", "cell-b")
NAMESPACES = tuple(f"team-{k:02d}" for k in range(8))
FILTER_NAMESPACE = "team-01"  # holds 2 protectors at N=10, 1,250 at N=10,000
FILTER_SORT = "-estimated"
PAGE_SIZE = 50
RATIO_LIMIT = 1.5
BOUND_MS = 50.0


# --- the site, configured in this process ------------------------------------------------------


def configure_django(state_dir: Path) -> None:
    """Test settings over a fresh SQLite file in ``state_dir``, migrated."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "podseidon_site.settings.test"
    os.environ["DATABASE_URL"] = f"sqlite:///{state_dir / 'console-bench.sqlite3'}"
    os.environ["PODSEIDON_ROLE"] = "web"
    os.environ["ALLOWED_HOSTS"] = "testserver"  # the test Client's host name
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # The configuration is set below, as the site tests set it; a file named by the caller's
    # environment must not leak in.
    os.environ.pop("PODSEIDON_CONFIG", None)

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


@dataclass
class ClusterGuard:
    """Refuses every cluster client the site asks for, and counts the requests for one."""

    requests: list[str] = field(default_factory=list)

    def refuse(self, name: str, access: Any, timeout: float) -> Any:
        from protectors.kube.client import KubeError

        self.requests.append(name)
        raise KubeError(0, "Unreachable", "the console benchmark allows no cluster calls")


def configure_podseidon(state_dir: Path, guard: ClusterGuard) -> None:
    """core, cell-a and cell-b as in tests/site/conftest.py, at closed ports, behind ``guard``."""
    from django.conf import settings
    from site_fakes import closed_port, kubeconfig_at

    from podseidon_site.config import parse_config
    from protectors import clusters

    def kubeconfig(name: str) -> str:
        return str(kubeconfig_at(state_dir / f"{name}.kubeconfig", closed_port()))

    settings.PODSEIDON = parse_config(
        {
            "core": {"kubeconfig": kubeconfig("core")},
            "cells": [{"id": cell, "kubeconfig": kubeconfig(cell)} for cell in CELLS],
            "generator": {"protection_selectors": {"deployments.apps": "protect=true"}},
        }
    )
    clusters.reset()
    clusters._build_client = guard.refuse


def protector_object(i: int) -> dict:
    """Protector ``i`` of a fleet: replicas split over both cells, 10 % at risk, some with
    admitted deletions still in their buckets, some with a recorded bucket lag."""
    from site_fakes import protector

    replicas = 2 + i % 11
    cells = {"cell-a": replicas - replicas // 2, "cell-b": replicas // 2}
    if i % 10 == 3:  # at risk: nothing more may go
        required = replicas
    elif i % 10 == 7:  # degraded but still above its minimum
        required = max(1, replicas // 2)
    else:
        required = max(1, replicas - 1 - i % 3)
    obj = protector(
        NAMESPACES[i % len(NAMESPACES)],
        f"svc-{i:05d}",
        required=required,
        cells=cells,
        lag=None if i % 4 == 0 else 150 + (i * 37) % 900,
    )
    if i % 10 == 7:
        # One pod unavailable in cell-a, one admitted deletion in cell-b not yet observed.
        status = obj["status"]
        status["cells"][0]["aggregation"]["availableReplicas"] -= 1
        status["cells"][1]["admissionHistory"]["buckets"] = [
            {"time": "2026-11-21T10:00:00Z", "counter": 1}
        ]
        status["summary"]["aggregatedAvailableReplicas"] = replicas - 1
        status["summary"]["estimatedAvailableReplicas"] = replicas - 2
    return obj


@dataclass
class Fleet:
    size: int
    cache: Any  # console.cache.ProtectorCache
    fill_seconds: float
    at_risk: int
    filtered: int  # rows matching the filter of "api filter+sort"

    @property
    def middle_page(self) -> int:
        pages = max(1, math.ceil(self.size / PAGE_SIZE))
        return (pages + 1) // 2


def build_fleet(size: int) -> Fleet:
    """Rows for ``size`` protectors in a ProtectorCache, filled as the site tests fill it."""
    from site_fakes import install_cache

    # make_row imports the generator's annotation parser on first use: not part of the fill.
    import workers.generator.protector  # noqa: F401

    objects = [protector_object(i) for i in range(size)]
    started = time.perf_counter()
    cache = install_cache(objects)
    fill = time.perf_counter() - started
    rows = cache.rows()
    at_risk = sum(row.at_risk for row in rows)
    filtered = sum(row.namespace == FILTER_NAMESPACE and not row.at_risk for row in rows)
    return Fleet(size, cache, fill, at_risk, filtered)


def use_fleet(fleet: Fleet) -> None:
    """Make ``fleet`` the process-wide cache the views read (what install_cache installs)."""
    from console import cache as cache_module

    cache_module._cache = fleet.cache


# --- the figures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    name: str
    client: str  # "api" (token) or "html" (session)
    path: Callable[[Fleet], str]
    expect_rows: Callable[[Fleet], int]


def _rows_on_first_page(count: int) -> int:
    return min(PAGE_SIZE, count)


FIGURES = (
    Figure(
        "api first page",
        "api",
        lambda f: f"/api/v1/podprotectors/?page_size={PAGE_SIZE}",
        lambda f: _rows_on_first_page(f.size),
    ),
    Figure(
        "api filter+sort",
        "api",
        lambda f: (
            f"/api/v1/podprotectors/?namespace={FILTER_NAMESPACE}&at_risk=false"
            f"&sort={FILTER_SORT}&page_size={PAGE_SIZE}"
        ),
        lambda f: _rows_on_first_page(f.filtered),
    ),
    Figure(
        "html first page",
        "html",
        lambda f: "/protectors/",
        lambda f: _rows_on_first_page(f.size),
    ),
    Figure(
        "html middle page",
        "html",
        lambda f: f"/protectors/?page={f.middle_page}",
        lambda f: min(PAGE_SIZE, f.size - (f.middle_page - 1) * PAGE_SIZE),
    ),
)


def make_clients() -> dict[str, Any]:
    """A viewer with a DRF token (API) and the same viewer logged in (console session)."""
    from django.contrib.auth.models import Group, User
    from django.test import Client
    from rest_framework.authtoken.models import Token

    user = User.objects.create_user("bench-viewer", password="bench-viewer-pw-123456")
    user.groups.add(Group.objects.get(name="viewer"))
    token = Token.objects.create(user=user)
    api = Client(HTTP_AUTHORIZATION=f"Token {token.key}")
    html = Client()
    html.force_login(user)
    return {"api": api, "html": html}


def check_response(figure: Figure, fleet: Fleet, response: Any) -> None:
    """The request did what it should: 200, and the page holds the rows it should."""
    import re

    if response.status_code != 200:
        raise HarnessError(
            f"{figure.name} at N={fleet.size}: HTTP {response.status_code}: "
            f"{response.content[:300]!r}"
        )
    want = figure.expect_rows(fleet)
    if figure.client == "api":
        got = len(response.json()["results"])
    else:
        got = len(re.findall(r'<a href="/protectors/[^/"]+/[^/"]+/">', response.content.decode()))
    if got != want:
        raise HarnessError(f"{figure.name} at N={fleet.size}: {got} rows on the page, not {want}")


def percentile(samples: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def measure(
    fleets: list[Fleet], clients: dict[str, Any], repeats: int, warmup: int
) -> dict[tuple[str, int], list[float]]:
    """Milliseconds per request, by (figure, size); sizes alternate request by request."""
    samples: dict[tuple[str, int], list[float]] = {
        (figure.name, fleet.size): [] for figure in FIGURES for fleet in fleets
    }
    for round_ in range(warmup + repeats):
        for figure in FIGURES:
            client = clients[figure.client]
            # Alternate which size goes first, so neither always follows the other's garbage.
            for fleet in fleets if round_ % 2 == 0 else reversed(fleets):
                use_fleet(fleet)
                path = figure.path(fleet)
                started = time.perf_counter()
                response = client.get(path)
                elapsed = time.perf_counter() - started
                check_response(figure, fleet, response)
                if round_ >= warmup:
                    samples[(figure.name, fleet.size)].append(elapsed * 1000)
    return samples


def profile(fleet: Fleet, clients: dict[str, Any], requests: int, top: int) -> str:
    """cProfile of ``requests`` requests of every figure at ``fleet``'s size: where time goes."""
    use_fleet(fleet)
    out = io.StringIO()
    for figure in FIGURES:
        client = clients[figure.client]
        path = figure.path(fleet)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(requests):
            client.get(path)
        profiler.disable()
        out.write(f"--- profile: {figure.name}, N={fleet.size:,}, {requests} requests ---\n")
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


# --- report -----------------------------------------------------------------------------------


def like_for_like(fleets: list[Fleet], figure: Figure) -> Fleet:
    """The smallest fleet whose page of ``figure`` holds as many rows as the largest fleet's:
    against it, whatever the largest costs more is the number of protectors, not the rows on
    the page (10 protectors put 10 rows on a page of 50)."""
    want = figure.expect_rows(fleets[-1])
    return next(f for f in fleets if figure.expect_rows(f) == want)


def verdict(
    fleets: list[Fleet], samples: dict[tuple[str, int], list[float]]
) -> tuple[bool, list[str]]:
    """PASS when, for every figure, the largest fleet's median is within RATIO_LIMIT of the
    like-for-like fleet's median and under BOUND_MS."""
    large = fleets[-1].size
    failures = []
    for figure in FIGURES:
        reference = like_for_like(fleets, figure).size
        if reference == large:
            failures.append(
                f"{figure.name}: no smaller fleet fills its page like N={large:,}; "
                "add a size to --sizes"
            )
            continue
        reference_median = statistics.median(samples[(figure.name, reference)])
        large_median = statistics.median(samples[(figure.name, large)])
        ratio = large_median / reference_median
        if ratio > RATIO_LIMIT:
            failures.append(
                f"{figure.name}: N={large:,} / N={reference:,} = {ratio:.2f} > {RATIO_LIMIT:g}"
            )
        if large_median > BOUND_MS:
            failures.append(f"{figure.name}: median {large_median:.1f} ms > {BOUND_MS:g} ms")
    return not failures, failures


def report(
    fleets: list[Fleet],
    samples: dict[tuple[str, int], list[float]],
    repeats: int,
    guard: ClusterGuard,
    load_before: tuple[float, ...],
) -> bool:
    small, large = fleets[0].size, fleets[-1].size
    when = time.strftime("%Y-%m-%d %H:%M")
    sizes = ", ".join(f"{f.size:,}" for f in fleets)
    print(
        f"=== console benchmark {when}: N = {sizes} PodProtectors, {repeats} requests per "
        f"figure and size, interleaved, page_size {PAGE_SIZE} ==="
    )
    load_after = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"Linux {platform.release()}; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after"
    )
    print(
        "path: django.test.Client in process (middleware, auth, view, cache query, "
        "serializer or template); no gunicorn, no network"
    )
    for fleet in fleets:
        print(
            f"fleet N={fleet.size:,}: {len(NAMESPACES)} namespaces, {len(CELLS)} cells, "
            f"{fleet.at_risk:,} at risk, {fleet.filtered:,} match the filter, "
            f"middle page {fleet.middle_page}; rows built in {fleet.fill_seconds * 1000:.1f} ms "
            f"({fleet.fill_seconds / fleet.size * 1e6:.1f} us per protector)"
        )
    head_small, head_large = f"N={small:,} median / p95", f"N={large:,} median / p95"
    print(
        f"{'figure, ms':<18} {'rows':>9} {head_small:>21} {head_large:>25} {'ratio':>6}"
        f" {'like-for-like':>20} {'ratio':>6}"
    )
    for figure in FIGURES:
        a = samples[(figure.name, small)]
        b = samples[(figure.name, large)]
        reference = like_for_like(fleets, figure)
        r = samples[(figure.name, reference.size)]
        rows = f"{figure.expect_rows(fleets[0])}/{figure.expect_rows(fleets[-1])}"
        cols = [
            f"{statistics.median(a):.2f} / {percentile(a, 0.95):.2f}",
            f"{statistics.median(b):.2f} / {percentile(b, 0.95):.2f}",
            f"N={reference.size:,} {statistics.median(r):.2f}",
        ]
        ratio = statistics.median(b) / statistics.median(a)
        ratio_ref = statistics.median(b) / statistics.median(r)
        print(
            f"{figure.name:<18} {rows:>9} {cols[0]:>21} {cols[1]:>25} {ratio:>6.2f}"
            f" {cols[2]:>20} {ratio_ref:>6.2f}"
        )
    for fleet in fleets[1:-1]:
        figures = ", ".join(
            f"{figure.name} {statistics.median(samples[(figure.name, fleet.size)]):.2f}"
            for figure in FIGURES
        )
        print(f"also N={fleet.size:,}, medians in ms: {figures}")
    print(f"cluster clients asked for during the run: {len(guard.requests)} (must be 0)")
    passed, failures = verdict(fleets, samples)
    if guard.requests:
        passed = False
        failures.append(f"{len(guard.requests)} cluster client requests")
    criterion = (
        f"every figure's N={large:,} median <= {RATIO_LIMIT:g} x the like-for-like median "
        f"and <= {BOUND_MS:g} ms, no cluster call"
    )
    print(f"page as fast as {small:,}: {'PASS' if passed else 'FAIL'} ({criterion})")
    for failure in failures:
        print(f"  failed: {failure}")
    return passed


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text!r}"
        ) from None
    if len(sizes) < 2 or any(size < 1 for size in sizes) or sizes != sorted(set(sizes)):
        raise argparse.ArgumentTypeError(
            f"need at least two increasing positive sizes, got {text!r}"
        )
    return sizes


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=[10, 1_000, 10_000],
        help="PodProtector counts, increasing (default 10,1000,10000): the last is compared with "
        "the first, and with the smallest whose pages hold as many rows (the verdict)",
    )
    parser.add_argument(
        "--repeats", type=positive, default=200, help="timed requests per figure and size"
    )
    parser.add_argument(
        "--warmup", type=int, default=10, help="untimed rounds first (templates, connections)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="then cProfile 50 requests of every figure at the largest size and print the top",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 on FAIL")
    args = parser.parse_args()
    exit_on_sigterm()

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="console-bench-") as tmp:
        state_dir = Path(tmp)
        try:
            configure_django(state_dir)
            guard = ClusterGuard()
            configure_podseidon(state_dir, guard)
            fleets = [build_fleet(size) for size in args.sizes]
            clients = make_clients()
            samples = measure(fleets, clients, args.repeats, args.warmup)
        except HarnessError as error:
            print(f"console benchmark: {error}", file=sys.stderr)
            return 2
        passed = report(fleets, samples, args.repeats, guard, load_before)
        if args.profile:
            print(profile(fleets[-1], clients, requests=50, top=25))
        from django.db import connections

        connections.close_all()
    return 1 if args.check and not passed else 0


if __name__ == "__main__":
    sys.exit(main())
