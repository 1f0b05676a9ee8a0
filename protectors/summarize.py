"""Bucket compaction and the status summary (design.md §4 "Summarize" and "Compaction").

Every writer of PodProtector status runs `summarize` just before writing, so the summary always
describes the cells it is written with.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from operator import attrgetter

from protectors.history_config import DEFAULT_HISTORY_CONFIG, EffectiveHistoryConfig
from protectors.model import Bucket, Status, Summary

__all__ = ["compact_buckets", "latency_millis", "summarize"]


_START = attrgetter("start_time")


def compact_buckets(
    buckets: Iterable[Bucket], threshold: int, *, in_order: bool = False
) -> tuple[Bucket, ...]:
    """Sort buckets by startTime and fold the oldest so that at most `threshold` remain.

    When there are more than `threshold`, the oldest `len - threshold + 1` become one bucket
    (so `threshold` remain in all): it starts at the oldest start, ends at the latest end among
    them, and counts all their deletions. No pod is named in it any more. A threshold below 1
    is treated as 1. `in_order`: the caller knows they are sorted already.
    """
    ordered = list(buckets) if in_order else sorted(buckets, key=_START)
    threshold = max(threshold, 1)
    if len(ordered) <= threshold:
        return tuple(ordered)
    fold = len(ordered) - threshold + 1
    absorbed = ordered[:fold]
    merged = Bucket(
        start_time=absorbed[0].start_time,
        end_time=max(b.end for b in absorbed),
        counter=sum(b.weight for b in absorbed),
    )
    return (merged, *ordered[fold:])


def latency_millis(delta: timedelta) -> int:
    """Whole milliseconds in `delta`, truncated toward zero (as Go's Duration.Milliseconds)."""
    micros = delta // timedelta(microseconds=1)
    return micros // 1000 if micros >= 0 else -(-micros // 1000)


def summarize(status: Status, config: EffectiveHistoryConfig = DEFAULT_HISTORY_CONFIG) -> Status:
    """`status` with every cell's buckets sorted and compacted and a freshly computed summary.

    Cells whose buckets need no change are kept as they are (same object), and a status that
    needs no change at all is returned as it is.
    """
    if status.__dict__.get("_summarized_for") == config:
        return status  # built by this function for this config: nothing would change
    cells = []
    compacted = False
    total = available = ready = scheduled = running = pending = 0
    max_latency: int | None = None
    for cell in status.cells:
        history = cell.admission_history
        buckets = history.buckets
        if not history.in_order or len(buckets) > max(config.compact_threshold, 1):
            buckets = compact_buckets(buckets, config.compact_threshold, in_order=history.in_order)
            if buckets != cell.buckets:
                # Compaction sorts and keeps the total weight.
                cell = cell.with_buckets(buckets, pending=history.pending, in_order=True)
                history = cell.admission_history
                compacted = True
        cells.append(cell)

        aggregation = cell.aggregation
        total += aggregation.total_replicas
        available += aggregation.available_replicas
        ready += aggregation.ready_replicas
        scheduled += aggregation.scheduled_replicas
        running += aggregation.running_replicas
        pending += history.pending
        # How far the newest admitted deletion is ahead of what the cell's stream has seen.
        if buckets and aggregation.last_event_time is not None:
            lag = latency_millis(buckets[-1].start_time - aggregation.last_event_time)
            max_latency = lag if max_latency is None else max(max_latency, lag)

    summary = Summary(
        total_replicas=total,
        aggregated_available_replicas=available,
        estimated_available_replicas=available - pending,
        max_latency_millis=max_latency,
        aggregated_ready=ready,
        aggregated_scheduled=scheduled,
        aggregated_running=running,
    )
    if (
        not compacted
        and summary == status.summary
        # As parsed, a status writes back the keys it came with: only ours is already in shape.
        and status._shape is None
        and status.summary._shape is None
    ):
        done = status  # already summarized (the usual case for a status we wrote ourselves)
    else:
        done = status.evolve(cells=tuple(cells), summary=summary)
    # Immutable, so it stays summarized: the quota summarizes what the last write sent again.
    done.__dict__["_summarized_for"] = config
    return done
