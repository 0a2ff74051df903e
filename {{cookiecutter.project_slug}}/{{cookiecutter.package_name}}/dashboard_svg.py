"""Time-series charts as inline SVG, written by hand: the dashboard needs no plotting library and no network.

One chart is series of points over time (ISO timestamps), each point optionally with an interval (a vertical
bar) and a mark (a larger ring: a champion), plus numbered vertical annotations (promotions, rollbacks) and
horizontal thresholds. Every point carries `data-series`, `data-key` and `data-value` attributes, so a test
(or a curious reader) can check what was drawn against where it came from. All text is escaped here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape

WIDTH, HEIGHT = 760, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 34, 46
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f")


@dataclass(frozen=True)
class Point:
    """One value at one time, optionally with an interval (`low`-`high`) and a ring (`marked`: a champion)."""

    at: str  # ISO timestamp
    value: float
    key: str = ""  # what the point is (a run id, a version): its tooltip and data-key
    low: float | None = None
    high: float | None = None
    marked: bool = False


@dataclass(frozen=True)
class Series:
    """A named line of points, in one colour."""

    name: str
    points: Sequence[Point]
    color: str = PALETTE[0]
    line: bool = True  # join the points (a trend) or not (separate runs)


@dataclass(frozen=True)
class Threshold:
    """A labelled horizontal line at `value` (a drift threshold)."""

    label: str
    value: float
    color: str = "#555"


@dataclass(frozen=True)
class Annotation:
    """A vertical line at a champion move (promotion, rollback), numbered as in the list of moves."""

    at: str
    number: int
    color: str = "#444"


@dataclass(frozen=True)
class Chart:
    """One chart's title, y-axis label, series, thresholds and annotations; drawn by `render`."""

    title: str
    y_label: str
    series: Sequence[Series]
    thresholds: Sequence[Threshold] = field(default_factory=tuple)
    annotations: Sequence[Annotation] = field(default_factory=tuple)


def seconds(at: str) -> float:
    """An ISO timestamp as Unix seconds (a naive one is read as UTC)."""
    moment = datetime.fromisoformat(at)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def render(chart: Chart) -> str:
    """The chart as an `<svg>` element (a note instead when it has nothing to draw)."""
    points = [p for s in chart.series for p in s.points]
    if not points:
        return f'<p class="empty">{escape(chart.title)}: nothing recorded yet.</p>'
    xs = [seconds(p.at) for p in points] + [seconds(a.at) for a in chart.annotations]
    ys = [v for p in points for v in (p.value, p.low, p.high) if v is not None]
    ys += [t.value for t in chart.thresholds]
    x_scale = _Scale(min(xs), max(xs), _LEFT, WIDTH - _RIGHT)
    y_scale = _Scale(*_padded(min(ys), max(ys)), HEIGHT - _BOTTOM, _TOP)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(chart.title)}">',
        f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" class="title">{escape(chart.title)}</text>',
        *_axes(chart.y_label, x_scale, y_scale),
    ]
    for threshold in chart.thresholds:
        y = y_scale(threshold.value)
        parts.append(
            f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{threshold.color}" '
            f'stroke-dasharray="6 4" data-threshold="{threshold.value!r}"><title>{escape(threshold.label)}: '
            f"{threshold.value:g}</title></line>"
        )
    for note in chart.annotations:
        x = x_scale(seconds(note.at))
        parts += [
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP}" y2="{HEIGHT - _BOTTOM}" stroke="{note.color}" '
            f'stroke-dasharray="2 3" data-annotation="{note.number}"/>',
            f'<text x="{x + 3:.1f}" y="{_TOP + 10}" class="note" fill="{note.color}">{note.number}</text>',
        ]
    for series in chart.series:
        parts += _series(series, x_scale, y_scale)
    parts.append("</svg>")
    legend = "".join(
        f'<span class="key"><span class="swatch" style="background:{s.color}"></span>{escape(s.name)}</span>'
        for s in chart.series
    )
    return "\n".join(parts) + f'\n<div class="legend">{legend}</div>'


def _series(series: Series, x_scale: _Scale, y_scale: _Scale) -> list[str]:
    ordered = sorted(series.points, key=lambda p: (seconds(p.at), p.key))
    coords = [(x_scale(seconds(p.at)), y_scale(p.value)) for p in ordered]
    parts = []
    if series.line and len(coords) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(f'<polyline fill="none" stroke="{series.color}" stroke-width="1.5" points="{path}"/>')
    name = escape(series.name)
    for p, (x, y) in zip(ordered, coords, strict=True):
        if p.low is not None and p.high is not None:
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y_scale(p.low):.1f}" y2="{y_scale(p.high):.1f}" '
                f'stroke="{series.color}" stroke-opacity="0.45" stroke-width="3"/>'
            )
        interval = f" [{p.low:.4g}, {p.high:.4g}]" if p.low is not None and p.high is not None else ""
        tip = escape(
            f"{series.name} {p.key} {p.at}: {p.value:.4g}{interval}{' (champion)' if p.marked else ''}"
        )
        ring = ' stroke="#000" stroke-width="2" r="6" data-marked="1"' if p.marked else ' r="3.5"'
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}"{ring} fill="{series.color}" data-series="{name}" '
            f'data-key="{escape(p.key)}" data-value="{p.value!r}"{_bounds(p)}><title>{tip}</title></circle>'
        )
    return parts


def _bounds(p: Point) -> str:
    if p.low is None or p.high is None:
        return ""
    return f' data-low="{p.low!r}" data-high="{p.high!r}"'


def _axes(y_label: str, x_scale: _Scale, y_scale: _Scale) -> list[str]:
    bottom, right = HEIGHT - _BOTTOM, WIDTH - _RIGHT
    middle = (_TOP + bottom) / 2
    parts = [
        f'<line x1="{_LEFT}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#888"/>',
        f'<line x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{bottom}" stroke="#888"/>',
        f'<text x="14" y="{middle}" class="axis" transform="rotate(-90 14 {middle})" '
        f'text-anchor="middle">{escape(y_label)}</text>',
    ]
    for value in _ticks(y_scale.low, y_scale.high):
        y = y_scale(value)
        parts.append(
            f'<line x1="{_LEFT - 4}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{value:.4g}</text>'
        )
    span = x_scale.high - x_scale.low
    for fraction, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
        if span == 0 and fraction:
            break
        moment = datetime.fromtimestamp(x_scale.low + span * fraction, UTC)
        x = x_scale(x_scale.low + span * fraction)
        parts.append(
            f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="{anchor}" class="tick">'
            f"{moment:%Y-%m-%d %H:%M} UTC</text>"
        )
    return parts


def _padded(low: float, high: float) -> tuple[float, float]:
    if low == high:
        return (low - 1, high + 1) if low == 0 else (low - abs(low) * 0.1, high + abs(high) * 0.1)
    margin = (high - low) * 0.08
    return low - margin, high + margin


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    step = (high - low) / (count - 1)
    return [low + step * i for i in range(count)]


class _Scale:
    """A linear map from data values [low, high] to pixels [start, end] (the middle when low == high)."""

    def __init__(self, low: float, high: float, start: float, end: float) -> None:
        self.low, self.high, self.start, self.end = low, high, start, end

    def __call__(self, value: float) -> float:
        if self.high == self.low:
            return (self.start + self.end) / 2
        return self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start)
