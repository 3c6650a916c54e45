"""The two charts of the CrowdTwist pages, as inline SVG strings: outcome bars and a run history.

Inline SVG because the pages are server-rendered with no front-end build: no script draws them, they
print, and they follow the page's colours (fills are CSS classes, so dark mode restyles them). Every
mark has a ``<title>`` (a tooltip) and the numbers are printed beside it, so nothing is colour-only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

#: Outcomes that are bad news get the warning colours; the rest share the calm ones.
BAD_OUTCOMES = frozenset({"rejected", "failed", "unknown"})


def _css_name(outcome: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in outcome.lower())


def outcome_bars(counts: Sequence[tuple[str, int]], *, width: int = 460) -> str:
    """A horizontal bar per outcome, scaled to the largest count (a zero count draws no bar)."""
    row, label_w, number_w = 22, 110, 90
    bar_w = max(width - label_w - number_w, 40)
    top = max((n for _, n in counts), default=0)
    height = row * max(len(counts), 1) + 4
    parts = [
        f'<svg class="chart bars" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="rows by outcome">'
    ]
    for i, (name, n) in enumerate(counts):
        y = i * row + 2
        length = 0 if top <= 0 or n <= 0 else max(round(bar_w * n / top), 2)
        kind = "bad" if name in BAD_OUTCOMES else "good"
        label = escape(name)
        parts.append(
            f'<text class="label" x="{label_w - 6}" y="{y + 15}" text-anchor="end">{label}</text>'
            f'<rect class="bar {kind} o-{_css_name(name)}" x="{label_w}" y="{y + 3}" width="{length}" '
            f'height="{row - 6}" rx="2"><title>{label}: {n:,}</title></rect>'
            f'<text class="value" x="{label_w + length + 6}" y="{y + 15}">{n:,}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class HistoryPoint:
    """One run of a sync on the history chart."""

    label: str
    rows: int
    rejects: int


def history_chart(points: Sequence[HistoryPoint], *, width: int = 560, height: int = 150) -> str:
    """Rows and rejects per run, oldest on the left: two lines with a dot per run."""
    if not points:
        return ""
    left, right, top_pad, bottom = 56, 12, 10, 22
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    top = max(max(p.rows for p in points), max(p.rejects for p in points), 1)
    step = plot_w / max(len(points) - 1, 1)

    def xy(i: int, value: int) -> tuple[float, float]:
        x = left + (i * step if len(points) > 1 else plot_w / 2)
        return round(x, 1), round(top_pad + plot_h - plot_h * value / top, 1)

    parts = [
        f'<svg class="chart history" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="rows and rejects per run">',
        f'<line class="axis" x1="{left}" y1="{top_pad + plot_h}" '
        f'x2="{width - right}" y2="{top_pad + plot_h}"/>',
        f'<text class="label" x="{left - 6}" y="{top_pad + 8}" text-anchor="end">{top:,}</text>',
        f'<text class="label" x="{left - 6}" y="{top_pad + plot_h}" text-anchor="end">0</text>',
    ]
    for series, attr in (("rows", "rows"), ("rejects", "rejects")):
        coords = [xy(i, getattr(p, attr)) for i, p in enumerate(points)]
        if len(coords) > 1:
            path = " ".join(f"{x},{y}" for x, y in coords)
            parts.append(f'<polyline class="line {series}" points="{path}"/>')
        for (x, y), p in zip(coords, points, strict=True):
            tip = escape(f"{p.label}: {getattr(p, attr):,} {series}")
            parts.append(
                f'<circle class="dot {series}" cx="{x}" cy="{y}" r="3"><title>{tip}</title></circle>'
            )
    legend_y = height - 6
    parts.append(
        f'<rect class="key rows" x="{left}" y="{legend_y - 8}" width="10" height="8"/>'
        f'<text class="label" x="{left + 14}" y="{legend_y}">rows</text>'
        f'<rect class="key rejects" x="{left + 60}" y="{legend_y - 8}" width="10" height="8"/>'
        f'<text class="label" x="{left + 74}" y="{legend_y}">rejected + failed</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
