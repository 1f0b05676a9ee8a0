"""The console's pictures: small inline SVGs drawn on the server (no script, no CDN).

Every picture is ``role="img"`` with an ``aria-label`` that says in words what it shows, and the
numbers it draws are also printed beside it, so a screen reader or a colour-blind operator
loses nothing. Colours meet WCAG AA contrast on white for text and 3:1 for shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

ADMITTED = "#1d4ed8"  # blue
REFUSED = "#b91c1c"  # red
REQUIRED = "#111827"  # near black: the line not to cross
ESTIMATED = "#15803d"  # green
AGGREGATED = "#93c5fd"  # light blue
BUCKET = "#b45309"  # amber
AXIS = "#57606a"


def _svg(width: int, height: int, label: str, body: str, css_class: str) -> SafeString:
    return format_html(
        '<svg class="{}" role="img" aria-label="{}" width="{}" height="{}" viewBox="0 0 {} {}" '
        'xmlns="http://www.w3.org/2000/svg"><title>{}</title>{}</svg>',
        css_class,
        label,
        width,
        height,
        width,
        height,
        label,
        mark_safe(body),
    )


def admissions_chart(
    cell_id: str, admitted: Sequence[int], refused: Sequence[int], *, width: int = 360
) -> SafeString:
    """Admitted (blue, below) and refused (red, on top) deletions per minute, oldest left."""
    height, top, bottom = 96, 6, 16
    plot = height - top - bottom
    n = max(1, len(admitted))
    step = width / n
    peak = max([a + r for a, r in zip(admitted, refused, strict=False)] or [0]) or 1
    parts = [
        f'<line x1="0" y1="{top + plot}" x2="{width}" y2="{top + plot}" stroke="{AXIS}"/>',
    ]
    for i, (a, r) in enumerate(zip(admitted, refused, strict=False)):
        x = i * step + 0.5
        w = max(1.0, step - 1)
        ha = plot * a / peak
        hr = plot * r / peak
        if a:
            parts.append(
                f'<rect class="admitted" x="{x:.1f}" y="{top + plot - ha:.1f}" width="{w:.1f}" '
                f'height="{ha:.1f}" fill="{ADMITTED}"><title>{a} admitted</title></rect>'
            )
        if r:
            parts.append(
                f'<rect class="refused" x="{x:.1f}" y="{top + plot - ha - hr:.1f}" '
                f'width="{w:.1f}" height="{hr:.1f}" fill="{REFUSED}"><title>{r} refused</title>'
                "</rect>"
            )
    parts.append(
        f'<text x="0" y="{height - 3}" font-size="10" fill="{AXIS}">-{len(admitted)} min</text>'
        f'<text x="{width}" y="{height - 3}" font-size="10" fill="{AXIS}" '
        'text-anchor="end">now</text>'
        f'<text x="2" y="{top + 8}" font-size="10" fill="{AXIS}">peak {peak}/min</text>'
    )
    label = (
        f"Cell {cell_id}: {sum(admitted)} deletions admitted and {sum(refused)} refused "
        f"in the last {len(admitted)} minutes"
    )
    return _svg(width, height, label, "".join(parts), "chart admissions")


def availability_bar(
    required: int, estimated: int, aggregated: int, total: int, *, width: int = 160
) -> SafeString:
    """Aggregated available (light bar), estimated (dark thin bar) and required (black tick)."""
    height = 18
    scale = max(required, estimated, aggregated, total, 1)

    def x(value: int) -> float:
        return width * max(0, value) / scale

    colour = REFUSED if estimated <= required else ESTIMATED
    body = (
        f'<rect x="0" y="2" width="{width}" height="14" fill="#f3f4f6"/>'
        f'<rect class="aggregated" x="0" y="2" width="{x(aggregated):.1f}" height="14" '
        f'fill="{AGGREGATED}"/>'
        f'<rect class="estimated" x="0" y="6" width="{x(estimated):.1f}" height="6" '
        f'fill="{colour}"/>'
        f'<rect class="required" x="{max(0.0, x(required) - 1):.1f}" y="0" width="2" '
        f'height="{height}" fill="{REQUIRED}"/>'
    )
    label = (
        f"required {required}, estimated available {estimated}, aggregated available "
        f"{aggregated} of {total}"
    )
    return _svg(width, height, label, body, "chart availability")


def cell_bars(cells: Sequence[dict], *, width: int = 320) -> SafeString:
    """Per cell, available over total replicas, and ready / running / scheduled as ticks."""
    row_h = 22
    label_w = 90
    height = max(1, len(cells)) * row_h + 4
    scale = max([int(c.get("total") or 0) for c in cells] or [1]) or 1
    plot = width - label_w - 50
    parts = []
    for i, cell in enumerate(cells):
        y = i * row_h + 4
        total = int(cell.get("total") or 0)
        available = int(cell.get("available") or 0)
        parts.append(
            f'<text x="0" y="{y + 13}" font-size="12" fill="#1b1f24">{escape(cell["id"])}</text>'
            f'<rect x="{label_w}" y="{y}" width="{plot * total / scale:.1f}" height="16" '
            f'fill="#e5e7eb"/>'
            f'<rect class="available" x="{label_w}" y="{y}" '
            f'width="{plot * available / scale:.1f}" height="16" fill="{ESTIMATED}"/>'
            f'<text x="{width}" y="{y + 13}" font-size="12" fill="#1b1f24" '
            f'text-anchor="end">{available}/{total}</text>'
        )
    label = "; ".join(
        f"cell {c['id']}: {c.get('available') or 0} of {c.get('total') or 0} available"
        for c in cells
    )
    return _svg(width, height, label or "no cells", "".join(parts), "chart cells")


def bucket_timeline(
    buckets: Sequence[dict], now: datetime, *, span_seconds: int = 600, width: int = 360
) -> SafeString:
    """Open admission buckets (admitted deletions the aggregator has not confirmed yet) as
    marks on the last ``span_seconds``; older ones are piled at the left edge."""
    height, axis_y = 40, 26
    start = now.timestamp() - span_seconds
    parts = [f'<line x1="0" y1="{axis_y}" x2="{width}" y2="{axis_y}" stroke="{AXIS}"/>']
    for bucket in buckets:
        at = _timestamp(bucket.get("startTime"))
        if at is None:
            continue
        x = width * min(1.0, max(0.0, (at - start) / span_seconds))
        weight = int(bucket.get("counter") or 1)
        size = min(12, 4 + 2 * (weight - 1))
        title = escape(f"{bucket.get('pod') or 'compacted'} x {weight} at {bucket['startTime']}")
        parts.append(
            f'<rect class="bucket-mark" x="{max(0.0, x - size / 2):.1f}" y="{axis_y - size - 2}" '
            f'width="{size}" height="{size}" fill="{BUCKET}"><title>{title}</title></rect>'
        )
    parts.append(
        f'<text x="0" y="{height - 2}" font-size="10" fill="{AXIS}">-{span_seconds // 60} min'
        f'</text><text x="{width}" y="{height - 2}" font-size="10" fill="{AXIS}" '
        'text-anchor="end">now</text>'
    )
    label = f"{len(buckets)} open admission buckets in the last {span_seconds // 60} minutes"
    return _svg(width, height, label, "".join(parts), "chart buckets")


def _timestamp(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def health_dot(state: str) -> SafeString:
    """A small coloured disc, its state in words beside it in the page."""
    colour = {"ok": ESTIMATED, "warn": BUCKET, "bad": REFUSED}.get(state, AXIS)
    return _svg(
        12,
        12,
        f"health: {state}",
        f'<circle cx="6" cy="6" r="5" fill="{colour}"/>',
        f"dot {escape(state)}",
    )
