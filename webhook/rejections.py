"""Recent rejections per cell, for the console: scraped from the webhook's own metrics.

The webhook counts every judgement in ``webhook_handle_pod_in_ppr`` (labels ``cell``,
``result``, ``rejected``); it serves the counter on :9090 and ``/metrics`` of every webhook
process. The web process scrapes the URLs of ``console.webhook_metrics_urls`` every
``console.metrics_interval_seconds`` in a background thread (started on first use) and keeps an
hour of samples in memory, so "recent" can mean the last 5 and 60 minutes without a Prometheus
server. Counts over a window add up each source's increases between consecutive samples, from
the last sample at or before the window's start (so a window may count up to one scrape
interval more than its length, never less); a counter that went down means the process
restarted, and its new value is the increase.

A source that does not answer is reported as down, with its error, and the counts say they are
incomplete; with every source down there is no count at all, never a zero.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prometheus_client.parser import text_string_to_metric_families

from podseidon_site.config import ConsoleConfig

logger = logging.getLogger("podseidon.console")

METRIC = "webhook_handle_pod_in_ppr"
WINDOWS_SECONDS = (5 * 60, 60 * 60)
MAX_BODY_BYTES = 16 * 1024 * 1024


def display_url(url: str) -> str:
    """The URL without credentials (``user:password@``), fit for a page."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))


@dataclass(frozen=True)
class Scrape:
    """One source at one moment: rejections per cell so far (a cumulative counter), or why not."""

    url: str
    rejected: Mapping[str, float] | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.rejected is not None


def parse_rejections(text: str) -> dict[str, float]:
    """Rejected judgements per cell from a Prometheus text exposition (summed over labels)."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != METRIC:
            continue
        for sample in family.samples:
            if sample.name != f"{METRIC}_total":
                continue
            # A cell the webhook has judged in is listed even with no rejection: a known zero.
            cell = sample.labels.get("cell", "")
            rejected = float(sample.value) if sample.labels.get("rejected") == "true" else 0.0
            totals[cell] = totals.get(cell, 0.0) + rejected
    return totals


def _fetch(url: str, timeout: float, context: ssl.SSLContext | None) -> Scrape:
    request = urllib.request.Request(url, headers={"Accept": "text/plain"})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            body = response.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            return Scrape(url, None, f"answer larger than {MAX_BODY_BYTES} bytes")
        return Scrape(url, parse_rejections(body.decode("utf-8", "replace")))
    except urllib.error.HTTPError as error:
        return Scrape(url, None, f"HTTP {error.code} {error.reason}")
    except urllib.error.URLError as error:
        return Scrape(url, None, f"unreachable: {error.reason}")
    except (TimeoutError, OSError) as error:
        return Scrape(url, None, f"unreachable: {error}")
    except ValueError as error:  # not a Prometheus exposition
        return Scrape(url, None, f"unreadable metrics: {error}")


def _increase(values: Iterable[float]) -> float:
    total, previous = 0.0, None
    for value in values:
        if previous is not None:
            total += value - previous if value >= previous else value
        previous = value
    return total


@dataclass
class RejectionHistory:
    """An hour of scrapes of every configured source; thread-safe."""

    urls: tuple[str, ...]
    timeout: float
    ca_file: str | None = None
    keep_seconds: float = max(WINDOWS_SECONDS) + 120
    _samples: deque[tuple[float, dict[str, Scrape]]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    first_scrape: threading.Event = field(default_factory=threading.Event)

    def _context(self) -> ssl.SSLContext | None:
        if not any(u.startswith("https:") for u in self.urls):
            return None
        return ssl.create_default_context(cafile=self.ca_file)

    def scrape(self, now: float | None = None) -> None:
        """Scrape every source at once (a dead one costs one timeout, not one per source)."""
        try:
            context = self._context()
        except (OSError, ssl.SSLError) as error:
            scrapes = [Scrape(u, None, f"cannot load metrics_ca_file: {error}") for u in self.urls]
        else:
            with ThreadPoolExecutor(max_workers=min(8, max(1, len(self.urls)))) as pool:
                scrapes = list(pool.map(lambda u: _fetch(u, self.timeout, context), self.urls))
        at = time.time() if now is None else now
        with self._lock:
            self._samples.append((at, {s.url: s for s in scrapes}))
            while self._samples and self._samples[0][0] < at - self.keep_seconds:
                self._samples.popleft()
        self.first_scrape.set()

    def summary(self, cell_ids: Iterable[str], now: float | None = None) -> dict[str, Any]:
        """Per cell and window: rejections, or None when no source answered or the history is
        too short to have seen any interval; per cell since each webhook process started; and the
        state of each source."""
        with self._lock:
            samples = list(self._samples)
        at = time.time() if now is None else now
        cells = list(cell_ids)
        latest = samples[-1][1] if samples else {}
        sources = []
        for url in self.urls:
            last_ok = next((t for t, s in reversed(samples) if url in s and s[url].ok), None)
            current = latest.get(url)
            sources.append(
                {
                    "url": display_url(url),
                    "up": bool(current and current.ok),
                    "error": None if current is None else current.error,
                    "last_success_age_seconds": None if last_ok is None else round(at - last_ok),
                }
            )
        up = [s for s in sources if s["up"]]
        windows = []
        for seconds in WINDOWS_SECONDS:
            covered = self._covered(samples, at, seconds)
            counts = {cell: self._count(samples, cell, at, seconds) for cell in cells}
            # Cells that only the webhook knows (not configured here) are still worth a look.
            for cell in self._seen_cells(samples) - set(cells):
                counts[cell] = self._count(samples, cell, at, seconds)
            windows.append(
                {
                    "minutes": seconds // 60,
                    "covered_minutes": None if covered is None else round(covered / 60, 1),
                    "rejected": {
                        c: None if not up or covered is None else round(n)
                        for c, n in counts.items()
                    },
                }
            )
        since_start: dict[str, int | None] = {}
        for cell in {*cells, *self._seen_cells(samples)}:
            values = [
                (scrape.rejected or {}).get(cell, 0.0) for scrape in latest.values() if scrape.ok
            ]
            since_start[cell] = round(sum(values)) if values else None
        return {
            "configured": bool(self.urls),
            "since_start": since_start,
            "scraped": bool(samples),
            "complete": bool(samples) and len(up) == len(sources),
            "sources": sources,
            "windows": windows,
        }

    @staticmethod
    def _seen_cells(samples: list[tuple[float, dict[str, Scrape]]]) -> set[str]:
        return {
            cell
            for _t, scrapes in samples
            for scrape in scrapes.values()
            if scrape.ok
            for cell in scrape.rejected or {}
        }

    @staticmethod
    def _covered(
        samples: list[tuple[float, dict[str, Scrape]]], at: float, seconds: float
    ) -> float | None:
        """How much of the window the history spans (None: not even two samples)."""
        if len(samples) < 2:
            return None
        return min(seconds, at - samples[0][0])

    def _count(
        self, samples: list[tuple[float, dict[str, Scrape]]], cell: str, at: float, seconds: float
    ) -> float:
        start = at - seconds
        total = 0.0
        for url in self.urls:
            points = [(t, s[url]) for t, s in samples if url in s and s[url].ok]
            # The last sample at or before the window's start is its baseline.
            before = [p for p in points if p[0] <= start]
            inside = [p for p in points if p[0] > start]
            chosen = before[-1:] + inside
            total += _increase((scrape.rejected or {}).get(cell, 0.0) for _t, scrape in chosen)
        return total


class _Scraper:
    """The background thread feeding one RejectionHistory."""

    def __init__(self, history: RejectionHistory, interval: float) -> None:
        self.history = history
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="console-rejection-scraper", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.history.scrape()
            except Exception:  # keep scraping: the next round may work
                logger.exception("scraping the webhook metrics failed")
            self._stop.wait(self.interval)


_lock = threading.Lock()
_scraper: _Scraper | None = None
_scraper_config: ConsoleConfig | None = None


def recent_rejections(
    config: ConsoleConfig, cell_ids: Iterable[str], *, first_wait: float | None = None
) -> dict[str, Any]:
    """The summary for the overview and the API; starts the scraper on first use and waits up
    to ``first_wait`` (default: one scrape timeout) for its first round."""
    global _scraper, _scraper_config
    if not config.webhook_metrics_urls:
        return RejectionHistory((), 0).summary(cell_ids)
    with _lock:
        if _scraper is None or _scraper_config != config:
            if _scraper is not None:
                _scraper.stop()
            history = RejectionHistory(
                tuple(config.webhook_metrics_urls),
                float(config.metrics_timeout_seconds),
                config.metrics_ca_file,
            )
            _scraper = _Scraper(history, float(config.metrics_interval_seconds))
            _scraper_config = config
            _scraper.start()
        history = _scraper.history
    wait = float(config.metrics_timeout_seconds) + 0.5 if first_wait is None else first_wait
    history.first_scrape.wait(wait)
    return history.summary(cell_ids)


def stop_scraper() -> None:
    """Stop the background scraper (tests, shutdown)."""
    global _scraper, _scraper_config
    with _lock:
        scraper, _scraper, _scraper_config = _scraper, None, None
    if scraper is not None:
        scraper.stop()
