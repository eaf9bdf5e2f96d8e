"""Small static SVG plots (histogram, scatter with lines, grouped bars) for the bench report.

Each function returns one ``<svg>`` element as text: no scripts, no external resources, so a
page that inlines it is self-contained. Only what the report needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 700, 360
LEFT, RIGHT, TOP, BOTTOM = 64, 200, 40, 52  # RIGHT leaves room for the legend
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
FONT = 'font-family="sans-serif"'


@dataclass(frozen=True)
class Axis:
    lo: float
    hi: float
    ticks: list[float]

    def scale(self, v: float, a: float, b: float) -> float:
        """Map ``v`` from [lo, hi] onto the pixel range [a, b]."""
        return a + (v - self.lo) / (self.hi - self.lo) * (b - a)


def nice_axis(lo: float, hi: float, count: int = 5) -> Axis:
    """An axis covering [lo, hi] whose ticks are round numbers (1, 2 or 5 times a power of 10)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("axis bounds must be finite")
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    start, end = math.floor(lo / step) * step, math.ceil(hi / step) * step
    ticks = [start + i * step for i in range(int(round((end - start) / step)) + 1)]
    return Axis(start, end, ticks)


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.3g}"


def _frame(plot_id: str, title: str, x: Axis | None, y: Axis, xlabel: str, ylabel: str,
           legend: list[str], body: list[str], x_labels: list[tuple[float, str]] | None = None) -> str:
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP
    out = [f'<svg id="{escape(plot_id)}" class="plot" xmlns="http://www.w3.org/2000/svg" '
           f'width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
           f'aria-label="{escape(title)}">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
           f'<text x="{WIDTH / 2:.0f}" y="22" text-anchor="middle" font-size="15" {FONT}>'
           f'{escape(title)}</text>']
    for t in y.ticks:
        py = y.scale(t, y0, y1)
        out.append(f'<line x1="{x0}" x2="{x1}" y1="{py:.1f}" y2="{py:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{x0 - 6}" y="{py + 4:.1f}" text-anchor="end" font-size="11" {FONT}>'
                   f'{_fmt(t)}</text>')
    if x is not None:
        for t in x.ticks:
            px = x.scale(t, x0, x1)
            out.append(f'<text x="{px:.1f}" y="{y0 + 16}" text-anchor="middle" font-size="11" '
                       f'{FONT}>{_fmt(t)}</text>')
    for px, label in x_labels or []:
        out.append(f'<text x="{px:.1f}" y="{y0 + 16}" text-anchor="middle" font-size="11" {FONT}>'
                   f'{escape(label)}</text>')
    out += body
    out.append(f'<line x1="{x0}" x2="{x1}" y1="{y0}" y2="{y0}" stroke="#333"/>')
    out.append(f'<line x1="{x0}" x2="{x0}" y1="{y0}" y2="{y1}" stroke="#333"/>')
    out.append(f'<text x="{(x0 + x1) / 2:.0f}" y="{HEIGHT - 12}" text-anchor="middle" '
               f'font-size="12" {FONT}>{escape(xlabel)}</text>')
    out.append(f'<text transform="translate(16 {(y0 + y1) / 2:.0f}) rotate(-90)" '
               f'text-anchor="middle" font-size="12" {FONT}>{escape(ylabel)}</text>')
    for i, name in enumerate(legend):
        ly = TOP + 10 + 18 * i
        out.append(f'<rect x="{x1 + 14}" y="{ly - 9}" width="12" height="12" '
                   f'fill="{COLOURS[i % len(COLOURS)]}"/>')
        out.append(f'<text x="{x1 + 32}" y="{ly + 1}" font-size="11" {FONT}>{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def histogram(plot_id: str, title: str, series: dict[str, list[float]], xlabel: str,
              bins: int = 24) -> str:
    """Overlaid histograms over shared bins, one colour per series."""
    values = [v for vs in series.values() for v in vs]
    if not values:
        raise ValueError("a histogram needs values")
    x = nice_axis(min(0.0, min(values)), max(values))
    width = (x.hi - x.lo) / bins
    counts = {name: [0] * bins for name in series}
    for name, vs in series.items():
        for v in vs:
            counts[name][min(bins - 1, int((v - x.lo) / width))] += 1
    y = nice_axis(0, max(max(c) for c in counts.values()))
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP
    body = []
    for i, (name, cs) in enumerate(counts.items()):
        colour = COLOURS[i % len(COLOURS)]
        for b, c in enumerate(cs):
            if not c:
                continue
            left, right = x.scale(x.lo + b * width, x0, x1), x.scale(x.lo + (b + 1) * width, x0, x1)
            top = y.scale(c, y0, y1)
            body.append(f'<rect class="bar" x="{left:.1f}" y="{top:.1f}" width="{right - left:.1f}" '
                        f'height="{y0 - top:.1f}" fill="{colour}" fill-opacity="0.6" stroke="{colour}">'
                        f'<title>{escape(name)}: {c} in [{_fmt(x.lo + b * width)}, '
                        f'{_fmt(x.lo + (b + 1) * width)})</title></rect>')
    return _frame(plot_id, title, x, y, xlabel, "cases", list(series), body)


def scatter(plot_id: str, title: str, series: dict[str, list[tuple[float, float, str]]],
            xlabel: str, ylabel: str, y_lo: float | None = 0.0) -> str:
    """Points joined in x order per series, each point labelled by its note."""
    pts = [p for ps in series.values() for p in ps]
    if not pts:
        raise ValueError("a scatter plot needs points")
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x = nice_axis(min(0.0, min(xs)), max(xs) * 1.1 or 1.0)
    y = nice_axis(min(ys) if y_lo is None else min(y_lo, min(ys)), max(ys) * 1.1 or 1.0)
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP
    body = []
    for i, (name, ps) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        ps = sorted(ps)
        coords = [(x.scale(px, x0, x1), y.scale(py, y0, y1), note) for px, py, note in ps]
        if len(coords) > 1:
            path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy, _ in coords)
            body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        for k, ((cx, cy, note), (px, py, _)) in enumerate(zip(coords, ps)):
            ty = cy - 7 if k % 2 == 0 else cy + 15  # alternate above and below: close points
            body.append(f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="4.5" fill="{colour}">'
                        f'<title>{escape(name)} {escape(note)}: {xlabel} {px:.3g}, {ylabel} '
                        f'{py:.3g}</title></circle>')
            body.append(f'<text x="{cx + 7:.1f}" y="{ty:.1f}" font-size="10" fill="#444" {FONT}>'
                        f'{escape(note)}</text>')
    return _frame(plot_id, title, x, y, xlabel, ylabel, list(series), body)


def bars(plot_id: str, title: str, groups: list[str], series: dict[str, list[float | None]],
         ylabel: str, y_hi: float | None = None) -> str:
    """Grouped bars: one group per label, one bar per series; None draws no bar."""
    values = [v for vs in series.values() for v in vs if v is not None]
    if not values:
        raise ValueError("a bar chart needs values")
    y = nice_axis(0, max(max(values), y_hi or 0))
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP
    slot = (x1 - x0) / len(groups)
    bar = slot * 0.7 / len(series)
    body, labels = [], []
    for g, group in enumerate(groups):
        labels.append((x0 + slot * (g + 0.5), group))
        for i, (name, vs) in enumerate(series.items()):
            v = vs[g]
            if v is None:
                continue
            left = x0 + slot * g + slot * 0.15 + bar * i
            top = y.scale(v, y0, y1)
            colour = COLOURS[i % len(COLOURS)]
            body.append(f'<rect class="bar" x="{left:.1f}" y="{top:.1f}" width="{bar:.1f}" '
                        f'height="{y0 - top:.1f}" fill="{colour}"><title>{escape(group)}, '
                        f'{escape(name)}: {v:.3g}</title></rect>')
            body.append(f'<text x="{left + bar / 2:.1f}" y="{top - 4:.1f}" text-anchor="middle" '
                        f'font-size="10" {FONT}>{v:.3g}</text>')
    return _frame(plot_id, title, None, y, "", ylabel, list(series), body, labels)
