"""The console's read side of the admission history: the last hour per cell, and a PodProtector's
recent refusals.

The webhook writes both to Redis off its request path (webhook/history.py), so they survive a
restart of any web or webhook process. With ``console.prometheus_url`` set, the per-cell series
come from Prometheus range queries over the webhook's ``webhook_request_count`` instead (the
refusal log is Redis only: Prometheus labels carry no pod names). Either source being down is
reported as an error beside the chart, never drawn as zeros.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from typing import Any

from podseidon_site.config import ConsoleConfig
from webhook.history import (
    REFUSALS_TTL_SECONDS,
    bucket_key,
    cells_key,
    refusals_key,
    site_prefix,
)

MINUTES = 60
PROMETHEUS_QUERY = "sum by (cell, allowed) (increase(webhook_request_count[1m]))"
MAX_PROMETHEUS_BYTES = 4 * 1024 * 1024

_client_lock = threading.Lock()
_client: Any = None


def _redis() -> Any:
    global _client
    with _client_lock:
        if _client is None:
            import redis
            from django.conf import settings

            _client = redis.Redis.from_url(
                settings.REDIS_URL, socket_connect_timeout=1.0, socket_timeout=1.0
            )
        return _client


def reset_client() -> None:
    global _client
    with _client_lock:
        _client = None


def minute_starts(now: float, minutes: int = MINUTES) -> list[int]:
    """The starts of the last ``minutes`` UTC minutes, oldest first, the current one last."""
    current = int(now // 60) * 60
    return [current - 60 * i for i in range(minutes - 1, -1, -1)]


def _cell_rows(
    cell_ids: Iterable[str], minutes: Sequence[int], counts: dict[str, dict[int, tuple[int, int]]]
) -> list[dict[str, Any]]:
    rows = []
    for cell_id in cell_ids:
        per_minute = counts.get(cell_id, {})
        admitted = [per_minute.get(m, (0, 0))[0] for m in minutes]
        refused = [per_minute.get(m, (0, 0))[1] for m in minutes]
        rows.append(
            {
                "id": cell_id,
                "admitted": admitted,
                "refused": refused,
                "admitted_total": sum(admitted),
                "refused_total": sum(refused),
                "refused_last_5": sum(refused[-5:]),
            }
        )
    return rows


def _from_redis(cell_ids: list[str], minutes: list[int]) -> tuple[list[str], dict]:
    client = _redis()
    prefix = site_prefix()
    seen = {c.decode() if isinstance(c, bytes) else c for c in client.smembers(cells_key(prefix))}
    cells = [*cell_ids, *sorted(seen - set(cell_ids))]
    pipe = client.pipeline(transaction=False)
    for cell_id in cells:
        for minute in minutes:
            pipe.hgetall(bucket_key(prefix, cell_id, minute))
    answers = iter(pipe.execute())
    counts: dict[str, dict[int, tuple[int, int]]] = {}
    for cell_id in cells:
        for minute in minutes:
            bucket = {
                (k.decode() if isinstance(k, bytes) else k): int(v)
                for k, v in (next(answers) or {}).items()
            }
            if bucket:
                counts.setdefault(cell_id, {})[minute] = (
                    bucket.get("admitted", 0),
                    bucket.get("refused", 0),
                )
    return cells, counts


def query_prometheus(
    base_url: str, minutes: list[int], timeout: float, ca_file: str | None = None
) -> dict[str, dict[int, tuple[int, int]]]:
    """Admitted and refused requests per cell and minute from one range query.

    A point at ``t`` is the increase over ``[t - 1m, t]``: it is counted in the minute that
    starts at ``t - 60``."""
    params = urllib.parse.urlencode(
        {
            "query": PROMETHEUS_QUERY,
            "start": minutes[0] + 60,
            "end": minutes[-1] + 60,
            "step": "60",
        }
    )
    url = f"{base_url.rstrip('/')}/api/v1/query_range?{params}"
    context = ssl.create_default_context(cafile=ca_file) if url.startswith("https:") else None
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        body = response.read(MAX_PROMETHEUS_BYTES + 1)
    if len(body) > MAX_PROMETHEUS_BYTES:
        raise ValueError(f"answer larger than {MAX_PROMETHEUS_BYTES} bytes")
    answer = json.loads(body)
    if answer.get("status") != "success":
        raise ValueError(f"Prometheus: {answer.get('error') or answer.get('status')}")
    wanted = set(minutes)
    counts: dict[str, dict[int, tuple[int, int]]] = {}
    for series in answer.get("data", {}).get("result", []):
        labels = series.get("metric", {})
        cell_id = labels.get("cell", "")
        allowed = labels.get("allowed") == "true"
        for t, value in series.get("values", []):
            minute = int(float(t) // 60) * 60 - 60
            if minute not in wanted:
                continue
            n = round(float(value))
            admitted, refused = counts.setdefault(cell_id, {}).get(minute, (0, 0))
            if allowed:
                admitted += n
            else:
                refused += n
            counts[cell_id][minute] = (admitted, refused)
    return counts


def admissions(
    config: ConsoleConfig, cell_ids: Iterable[str], *, now: float | None = None
) -> dict[str, Any]:
    """Per cell, admitted and refused deletions per minute over the last hour, from Prometheus
    when configured, else from Redis; ``error`` says why there is nothing."""
    at = time.time() if now is None else now
    minutes = minute_starts(at)
    configured = list(cell_ids)
    source = "prometheus" if config.prometheus_url else "redis"
    error = None
    cells: list[str] = configured
    counts: dict[str, dict[int, tuple[int, int]]] = {}
    try:
        if config.prometheus_url:
            counts = query_prometheus(
                config.prometheus_url,
                minutes,
                float(config.metrics_timeout_seconds),
                config.metrics_ca_file,
            )
            cells = [*configured, *sorted(set(counts) - set(configured))]
        else:
            cells, counts = _from_redis(configured, minutes)
    except Exception as error_:  # Redis or Prometheus down, or an answer we cannot read
        error = f"{source} unavailable: {error_}"
    return {
        "source": source,
        "error": error,
        "as_of": at,
        "minutes": minutes,
        "cells": [] if error else _cell_rows(cells, minutes, counts),
    }


def refusals(namespace: str, name: str, *, limit: int = 50, now: float | None = None) -> dict:
    """The newest refusals by one PodProtector (newest first), or why they are unknown."""
    at = time.time() if now is None else now
    try:
        raw = _redis().lrange(refusals_key(site_prefix(), namespace, name), 0, limit - 1)
    except Exception as error:  # Redis down: unknown, not none
        return {"error": f"redis unavailable: {error}", "refusals": [], "as_of": at}
    entries = []
    for item in raw:
        try:
            entry = json.loads(item)
        except ValueError:
            continue
        if at - float(entry.get("at", 0)) <= REFUSALS_TTL_SECONDS:
            entries.append(entry)
    return {"error": None, "refusals": entries, "as_of": at}
