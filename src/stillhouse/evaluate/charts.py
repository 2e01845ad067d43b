"""Inline SVG charts for report.html, drawn from plain numbers (no plotting library, no scripts).

Every function returns one ``<svg>`` element as a string, sized by its ``viewBox`` so it scales
with the page; text is escaped; hovering a mark shows its exact values (``<title>``). Inline SVG
in HTML needs no namespace declaration, so the markup references no external resource.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
_AXIS = "#444"
_GRID = "#e3e3e3"
_FONT = 'font-size="11" fill="#333"'


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


@dataclass(frozen=True)
class Series:
    """A named line of points (x, y), drawn in ``color``."""

    name: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str


@dataclass(frozen=True)
class Point:
    """A labelled mark at (x, y) with an optional vertical interval."""

    name: str
    x: float
    y: float
    low: float | None = None
    high: float | None = None
    color: str = PALETTE[0]


@dataclass(frozen=True)
class Bar:
    """A horizontal bar with its interval, e.g. the accuracy of one slice."""

    label: str
    value: float
    low: float
    high: float
    note: str = ""
    color: str = PALETTE[0]


class _Frame:
    """Plot area and the maps from data to pixels (y grows upward in data, downward in SVG)."""

    def __init__(
        self,
        width: int,
        height: int,
        x_range: tuple[float, float],
        y_range: tuple[float, float],
        *,
        log_x: bool = False,
        left: int = 52,
        bottom: int = 40,
    ) -> None:
        self.width, self.height, self.log_x = width, height, log_x
        self.left, self.right, self.top, self.bottom = left, width - 14, 14, height - bottom
        self.x_range = tuple(math.log10(v) for v in x_range) if log_x else x_range
        self.y_range = y_range

    def x(self, value: float) -> float:
        value = math.log10(value) if self.log_x else value
        low, high = self.x_range
        share = (value - low) / (high - low) if high > low else 0.5
        return self.left + share * (self.right - self.left)

    def y(self, value: float) -> float:
        low, high = self.y_range
        share = (value - low) / (high - low) if high > low else 0.5
        return self.bottom - share * (self.bottom - self.top)

    def axes(
        self, x_label: str, y_label: str, x_ticks: Sequence[float], y_ticks: Sequence[float]
    ) -> str:
        parts = []
        for tick in y_ticks:
            y = self.y(tick)
            parts.append(
                f'<line x1="{self.left}" y1="{y:.1f}" x2="{self.right}" y2="{y:.1f}" stroke="{_GRID}"/>'
                f'<text x="{self.left - 6}" y="{y + 4:.1f}" text-anchor="end" {_FONT}>{_number(tick)}</text>'
            )
        for tick in x_ticks:
            x = self.x(tick)
            parts.append(
                f'<line x1="{x:.1f}" y1="{self.top}" x2="{x:.1f}" y2="{self.bottom}" stroke="{_GRID}"/>'
                f'<text x="{x:.1f}" y="{self.bottom + 15}" text-anchor="middle" {_FONT}>{_number(tick)}</text>'
            )
        parts.append(
            f'<rect x="{self.left}" y="{self.top}" width="{self.right - self.left}" '
            f'height="{self.bottom - self.top}" fill="none" stroke="{_AXIS}"/>'
            f'<text x="{(self.left + self.right) / 2:.1f}" y="{self.height - 6}" text-anchor="middle" '
            f"{_FONT}>{escape(x_label)}</text>"
            f'<text x="12" y="{(self.top + self.bottom) / 2:.1f}" text-anchor="middle" {_FONT} '
            f'transform="rotate(-90 12 {(self.top + self.bottom) / 2:.1f})">{escape(y_label)}</text>'
        )
        return "".join(parts)


def _svg(width: int, height: int, body: str, title: str) -> str:
    return (
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>{body}</svg>'
    )


def _number(value: float) -> str:
    if value == 0 or 0.01 <= abs(value) < 10_000:
        return f"{value:.3g}"
    return f"{value:.1e}"


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    return [low + (high - low) * i / (count - 1) for i in range(count)]


def _legend(frame: _Frame, names: Sequence[tuple[str, str]]) -> str:
    parts = []
    for i, (name, shade) in enumerate(names):
        y = frame.top + 8 + 14 * i
        parts.append(
            f'<rect x="{frame.right - 150}" y="{y - 8}" width="10" height="10" fill="{shade}"/>'
            f'<text x="{frame.right - 135}" y="{y + 1}" {_FONT}>{escape(name[:22])}</text>'
        )
    return "".join(parts)


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float] = (0.0, 1.0),
    y_range: tuple[float, float] = (0.0, 1.0),
    width: int = 460,
    height: int = 300,
) -> str:
    """Step-free polylines, one per series, with a legend (e.g. risk–coverage curves)."""
    frame = _Frame(width, height, x_range, y_range)
    body = [frame.axes(x_label, y_label, _ticks(*x_range), _ticks(*y_range))]
    for line in series:
        points = " ".join(
            f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in zip(line.xs, line.ys, strict=True)
        )
        body.append(
            f'<polyline points="{points}" fill="none" stroke="{line.color}" stroke-width="2">'
            f"<title>{escape(line.name)}</title></polyline>"
        )
    body.append(_legend(frame, [(line.name, line.color) for line in series]))
    return _svg(width, height, "".join(body), title)


def reliability_diagram(
    bins: Sequence[dict[str, float]], *, title: str, shade: str, width: int = 300, height: int = 280
) -> str:
    """Accuracy per confidence bin (bars over the bin's range) against the diagonal of perfect
    calibration; a dot marks each bin's mean confidence. ``bins``: results.json's
    ``reliability_bins`` (``low``, ``high``, ``mean_confidence``, ``accuracy``, ``count``)."""
    frame = _Frame(width, height, (0.0, 1.0), (0.0, 1.0))
    body = [frame.axes("confidence", "accuracy", _ticks(0, 1, 6), _ticks(0, 1, 6))]
    body.append(
        f'<line x1="{frame.x(0):.1f}" y1="{frame.y(0):.1f}" x2="{frame.x(1):.1f}" '
        f'y2="{frame.y(1):.1f}" stroke="#999" stroke-dasharray="4 3"/>'
    )
    for b in bins:
        x, right = frame.x(b["low"]), frame.x(b["high"])
        top = frame.y(b["accuracy"])
        tip = (
            f"confidence {b['low']:.1f}–{b['high']:.1f}: {b['count']} items, mean confidence "
            f"{b['mean_confidence']:.3f}, accuracy {b['accuracy']:.3f}"
        )
        body.append(
            f'<rect x="{x + 1:.1f}" y="{top:.1f}" width="{right - x - 2:.1f}" '
            f'height="{frame.bottom - top:.1f}" fill="{shade}" fill-opacity="0.55">'
            f"<title>{escape(tip)}</title></rect>"
            f'<circle cx="{frame.x(b["mean_confidence"]):.1f}" cy="{top:.1f}" r="3" fill="{_AXIS}"/>'
        )
    return _svg(width, height, "".join(body), title)


def scatter_chart(
    points: Sequence[Point],
    *,
    title: str,
    x_label: str,
    y_label: str,
    log_x: bool = True,
    frontier: bool = True,
    width: int = 520,
    height: int = 320,
) -> str:
    """Labelled points with vertical intervals; ``frontier`` joins the Pareto-optimal points
    (lowest x for their y: nothing else is both faster and more accurate)."""
    xs = [p.x for p in points]
    lows = [p.low if p.low is not None else p.y for p in points]
    highs = [p.high if p.high is not None else p.y for p in points]
    if log_x:
        x_range = (min(xs) / 2, max(xs) * 2)
        ticks = [
            10.0**k
            for k in range(
                math.floor(math.log10(x_range[0])), math.ceil(math.log10(x_range[1])) + 1
            )
        ]
        ticks = [t for t in ticks if x_range[0] <= t <= x_range[1]] or [xs[0]]
    else:
        x_range = (0.0, max(xs) * 1.2 or 1.0)
        ticks = _ticks(*x_range)
    y_range = (max(0.0, min(lows) - 0.05), min(1.0, max(highs) + 0.05))
    frame = _Frame(width, height, x_range, y_range, log_x=log_x)
    body = [frame.axes(x_label, y_label, ticks, _ticks(*y_range))]
    if frontier and len(points) > 1:
        optimal = pareto_front([(p.x, p.y) for p in points])
        line = " ".join(f"{frame.x(points[i].x):.1f},{frame.y(points[i].y):.1f}" for i in optimal)
        body.append(f'<polyline points="{line}" fill="none" stroke="#888" stroke-dasharray="5 4"/>')
    for p in points:
        x, y = frame.x(p.x), frame.y(p.y)
        if p.low is not None and p.high is not None:
            body.append(
                f'<line x1="{x:.1f}" y1="{frame.y(p.low):.1f}" x2="{x:.1f}" '
                f'y2="{frame.y(p.high):.1f}" stroke="{p.color}" stroke-width="2"/>'
            )
        tip = f"{p.name}: {x_label} {p.x:.3g}, {y_label} {p.y:.3f}"
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{p.color}"><title>{escape(tip)}</title></circle>'
            f'<text x="{x + 8:.1f}" y="{y - 6:.1f}" {_FONT}>{escape(p.name)}</text>'
        )
    return _svg(width, height, "".join(body), title)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both (lower x, higher y), by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def interval_bars(
    bars: Sequence[Bar], *, title: str, x_label: str, width: int = 520, row: int = 22
) -> str:
    """Horizontal bars in [0, 1] with interval whiskers, one row per bar, labels on the left."""
    left = 160
    height = 40 + row * len(bars)
    frame = _Frame(width, height, (0.0, 1.0), (0.0, 1.0), left=left, bottom=34)
    body = [
        f'<rect x="{left}" y="8" width="{frame.right - left}" height="{height - 42}" fill="none" stroke="{_AXIS}"/>'
    ]
    for tick in _ticks(0, 1, 6):
        x = frame.x(tick)
        body.append(
            f'<line x1="{x:.1f}" y1="8" x2="{x:.1f}" y2="{height - 34}" stroke="{_GRID}"/>'
            f'<text x="{x:.1f}" y="{height - 20}" text-anchor="middle" {_FONT}>{_number(tick)}</text>'
        )
    body.append(
        f'<text x="{(left + frame.right) / 2:.1f}" y="{height - 5}" text-anchor="middle" {_FONT}>{escape(x_label)}</text>'
    )
    for i, bar in enumerate(bars):
        y = 12 + row * i
        tip = f"{bar.label}: {bar.value:.3f} (95% CI {bar.low:.3f}–{bar.high:.3f}) {bar.note}"
        body.append(
            f'<text x="{left - 6}" y="{y + row / 2 + 2:.1f}" text-anchor="end" {_FONT}>{escape(bar.label[:26])}</text>'
            f'<rect x="{left}" y="{y + 3}" width="{frame.x(bar.value) - left:.1f}" height="{row - 8}" '
            f'fill="{bar.color}" fill-opacity="0.7"><title>{escape(tip.strip())}</title></rect>'
            f'<line x1="{frame.x(bar.low):.1f}" y1="{y + row / 2 - 1:.1f}" x2="{frame.x(bar.high):.1f}" '
            f'y2="{y + row / 2 - 1:.1f}" stroke="{_AXIS}" stroke-width="1.5"/>'
        )
    return _svg(width, height, "".join(body), title)


def heat_map(matrix: Sequence[Sequence[int]], labels: Sequence[str], *, title: str) -> str:
    """A confusion matrix (rows gold, columns predicted): each cell shaded by its share of the
    gold row; only non-empty cells are drawn. Label names are shown up to 25 labels, numbers
    beyond (hover any cell for the names and the count)."""
    n = len(labels)
    named = n <= 25
    cell = max(6, min(28, 560 // max(n, 1)))
    margin = 150 if named else 34
    size = margin + cell * n + 10
    body = []
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        for j, count in enumerate(row):
            if not count:
                continue
            share = count / total
            shade = "#2c7a3f" if i == j else "#c0392b"
            tip = f"gold {labels[i]} → predicted {labels[j]}: {count} ({share:.0%} of the gold row)"
            body.append(
                f'<rect x="{margin + j * cell}" y="{margin + i * cell}" width="{cell}" height="{cell}" '
                f'fill="{shade}" fill-opacity="{0.15 + 0.85 * share:.2f}"><title>{escape(tip)}</title></rect>'
            )
    for k, label in enumerate(labels):
        name = escape(label[:22] if named else str(k + 1))
        middle = margin + k * cell + cell / 2
        body.append(
            f'<text x="{margin - 4}" y="{middle + 3:.1f}" text-anchor="end" font-size="9" fill="#333">{name}</text>'
            f'<text x="{middle:.1f}" y="{margin - 4}" font-size="9" fill="#333" '
            f'transform="rotate(-60 {middle:.1f} {margin - 4})">{name}</text>'
        )
    body.append(
        f'<rect x="{margin}" y="{margin}" width="{cell * n}" height="{cell * n}" fill="none" stroke="{_AXIS}"/>'
    )
    return _svg(size, size, "".join(body), title)
