"""Hand-written SVG charts: a line chart with min-max whiskers and a grouped bar chart.

No plotting dependency: the report must render wherever Markdown does, from the standard
library alone. Charts are pure functions from values to SVG text.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 760, 440
LEFT, RIGHT, TOP, BOTTOM = 90, 200, 50, 60
BAR_LABELS_BOTTOM = 130
"""Room under a bar chart for its group labels, which are written at a slant."""
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    median: float
    minimum: float
    maximum: float


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    points: tuple[Point, ...]


def _tick_text(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1_000:
        return f"{value / 1_000:g}k"
    return f"{value:g}"


def _nice_step(span: float, count: int = 5) -> float:
    raw = span / count
    power = 10.0 ** math.floor(math.log10(raw))
    return next(step * power for step in (1.0, 2.0, 2.5, 5.0, 10.0) if step * power >= raw)


class _Canvas:
    def __init__(self, title: str) -> None:
        self.parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
            f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
            f'<text x="{WIDTH / 2}" y="24" text-anchor="middle" font-size="15" '
            f'font-weight="bold">{escape(title)}</text>',
        ]

    def line(
        self,
        x1: float,
        y1: float,
        x2: float,
        y2: float,
        color: str = "#999",
        width: float = 1,
        dash: str = "",
    ) -> None:
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
            f'stroke="{color}" stroke-width="{width}"{extra}/>'
        )

    def text(
        self,
        x: float,
        y: float,
        content: str,
        anchor: str = "middle",
        rotate: float = 0,
        color: str = "black",
    ) -> None:
        """Text at (x, y), turned ``rotate`` degrees counter-clockwise around that point."""
        transform = f' transform="rotate({-rotate:g} {x:.1f} {y:.1f})"' if rotate else ""
        self.parts.append(
            f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{color}"'
            f"{transform}>{escape(content)}</text>"
        )

    def rect(self, x: float, y: float, width: float, height: float, color: str) -> None:
        self.parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" '
            f'fill="{color}"/>'
        )

    def legend(self, entries: Sequence[tuple[str, str]]) -> None:
        x = WIDTH - RIGHT + 15
        for index, (name, color) in enumerate(entries):
            y = TOP + 10 + index * 20
            self.rect(x, y - 9, 12, 12, color)
            self.text(x + 18, y + 1, name, anchor="start")

    def render(self) -> str:
        return "\n".join([*self.parts, "</svg>"]) + "\n"


def _plot_box(bottom: int = BOTTOM) -> tuple[float, float, float, float]:
    return LEFT, TOP, WIDTH - RIGHT, HEIGHT - bottom


def _reference(canvas: _Canvas, x0: float, x1: float, y: float, text: str) -> None:
    """A dashed horizontal line across the plot, named in the margin on its right."""
    canvas.line(x0, y, x1, y, "#555", 1, "6 4")
    canvas.text(x1 + 6, y + 4, text, anchor="start", color="#555")


def line_chart(
    title: str,
    x_label: str,
    y_label: str,
    series: Sequence[Series],
    references: Sequence[tuple[str, float]] = (),
) -> str:
    """Medians joined by lines, min-max whiskers; x on a log scale, y linear from 0."""
    canvas = _Canvas(title)
    x0, y0, x1, y1 = _plot_box()
    xs = sorted({p.x for s in series for p in s.points}) or [1.0]
    top = max([p.maximum for s in series for p in s.points] + [v for _, v in references] + [1])
    step = _nice_step(top)
    y_max = math.ceil(top / step) * step
    low, high = math.log10(xs[0]), math.log10(xs[-1])
    span = (high - low) or 1.0

    def px(x: float) -> float:
        inner = (math.log10(x) - low) / span if len(xs) > 1 else 0.5
        return x0 + 20 + inner * (x1 - x0 - 40)

    def py(y: float) -> float:
        return y1 - y / y_max * (y1 - y0)

    tick = 0.0
    while tick <= y_max + step / 2:
        canvas.line(x0, py(tick), x1, py(tick), "#eee")
        canvas.text(x0 - 6, py(tick) + 4, _tick_text(tick), anchor="end")
        tick += step
    for x in xs:
        canvas.text(px(x), y1 + 18, _tick_text(x))
    canvas.line(x0, y1, x1, y1, "#333")
    canvas.line(x0, y0, x0, y1, "#333")
    canvas.text((x0 + x1) / 2, HEIGHT - 15, x_label)
    canvas.text(22, (y0 + y1) / 2, y_label, rotate=90)
    entries = []
    for index, one in enumerate(series):
        color = COLORS[index % len(COLORS)]
        entries.append((one.name, color))
        points = sorted(one.points, key=lambda p: p.x)
        for before, after in itertools.pairwise(points):
            canvas.line(px(before.x), py(before.median), px(after.x), py(after.median), color, 2)
        for p in points:
            canvas.line(px(p.x), py(p.minimum), px(p.x), py(p.maximum), color, 1)
            canvas.parts.append(
                f'<circle cx="{px(p.x):.1f}" cy="{py(p.median):.1f}" r="3.5" fill="{color}"/>'
            )
    for name, value in references:
        _reference(canvas, x0, x1, py(value), f"{name}: {value:,.0f}/s")
    canvas.legend(entries)
    return canvas.render()


def bar_chart(
    title: str,
    y_label: str,
    groups: Sequence[str],
    bars: Sequence[tuple[str, Sequence[float]]],
    references: Sequence[tuple[str, float]] = (),
) -> str:
    """Grouped bars (one group per x value, one bar per named series) on a log y scale."""
    canvas = _Canvas(title)
    x0, y0, x1, y1 = _plot_box(BAR_LABELS_BOTTOM)
    values = [v for _, series in bars for v in series if v > 0] + [v for _, v in references]
    low = math.floor(math.log10(min(values, default=0.01)))
    high = math.ceil(math.log10(max(values, default=1.0)))
    high = max(high, low + 1)

    def py(y: float) -> float:
        return y1 - (math.log10(y) - low) / (high - low) * (y1 - y0)

    for power in range(low, high + 1):
        canvas.line(x0, py(10.0**power), x1, py(10.0**power), "#eee")
        canvas.text(x0 - 6, py(10.0**power) + 4, f"{10.0**power:g}", anchor="end")
    canvas.line(x0, y1, x1, y1, "#333")
    canvas.line(x0, y0, x0, y1, "#333")
    canvas.text(22, (y0 + y1) / 2, y_label, rotate=90)
    group_width = (x1 - x0) / max(len(groups), 1)
    bar_width = group_width * 0.8 / max(len(bars), 1)
    for g, group in enumerate(groups):
        left = x0 + g * group_width + group_width * 0.1
        canvas.text(x0 + (g + 0.5) * group_width + 4, y1 + 14, group, anchor="end", rotate=35)
        for b, (_, series) in enumerate(bars):
            value = series[g]
            if value > 0:
                top = py(value)
                canvas.rect(left + b * bar_width, top, bar_width - 2, y1 - top, COLORS[b])
    for name, value in references:
        _reference(canvas, x0, x1, py(value), f"{name}: {value:.3g} ms")
    canvas.legend([(name, COLORS[b % len(COLORS)]) for b, (name, _) in enumerate(bars)])
    return canvas.render()
