"""The comparison as one self-contained HTML page: a table and hand-drawn SVG charts.

Nothing is fetched from anywhere: no scripts, fonts or stylesheets from a
CDN, so the report opens offline and can be mailed as it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Final

from momently.simulate.compare import RunResult
from momently.simulate.stats import Lift

_COLOURS: Final = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#9c755f")
_STYLE: Final = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border-bottom:1px solid #ddd;padding:.35rem .6rem;text-align:right}
td{white-space:nowrap}
th:first-child,td:first-child{text-align:left;white-space:nowrap}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem}
.note{color:#555;font-size:.85rem;max-width:60rem}
"""


def _fmt(value: float, digits: int = 0) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def bar_chart(
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    fmt: Callable[[float], str] = _fmt,
    width: int = 360,
) -> str:
    """A horizontal bar chart as inline SVG."""
    row, left, top = 26, 130, 28
    height = top + row * len(labels) + 10
    peak = max([abs(v) for v in values if not math.isnan(v)] + [1e-12])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="16" font-size="13" font-weight="600">{escape(title)}</text>',
    ]
    span = width - left - 70
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = top + i * row
        w = 0.0 if math.isnan(value) else span * abs(value) / peak
        parts.append(
            f'<text x="{left - 6}" y="{y + 15}" font-size="12" '
            f'text-anchor="end">{escape(label)}</text>'
        )
        parts.append(
            f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" '
            f'fill="{_COLOURS[i % len(_COLOURS)]}"/>'
        )
        parts.append(
            f'<text x="{left + w + 4:.1f}" y="{y + 15}" font-size="11">{escape(fmt(value))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def interval_chart(
    title: str,
    labels: Sequence[str],
    lifts: Sequence[Lift],
    scale: float = 1.0,
    unit: str = "",
    width: int = 360,
    truths: Sequence[float] | None = None,
) -> str:
    """Differences with their intervals as points and whiskers around a zero line.

    ``truths``, where known, are drawn as black ticks: an interval should hold its tick.
    """
    row, left, top = 26, 130, 28
    height = top + row * len(labels) + 24
    bounds = [
        abs(x) * scale for e in lifts for x in (e.low, e.high, e.difference) if not math.isnan(x)
    ] + [abs(t) * scale for t in truths or () if not math.isnan(t)]
    reach = max(bounds + [1e-12]) * 1.1
    span = width - left - 20
    mid = left + span / 2

    def x(value: float) -> float:
        return mid + (span / 2) * (value * scale) / reach

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="16" font-size="13" font-weight="600">{escape(title)}</text>',
        f'<line x1="{mid:.1f}" y1="{top}" x2="{mid:.1f}" y2="{height - 20}" '
        'stroke="#999" stroke-dasharray="3,3"/>',
        f'<text x="{mid:.1f}" y="{height - 6}" font-size="10" text-anchor="middle">0</text>',
        f'<text x="{left}" y="{height - 6}" font-size="10">{escape(f"{-reach:+.3g}{unit}")}</text>',
        f'<text x="{left + span}" y="{height - 6}" font-size="10" text-anchor="end">'
        f"{escape(f'{reach:+.3g}{unit}')}</text>",
    ]
    for i, (label, est) in enumerate(zip(labels, lifts, strict=True)):
        y = top + i * row + row / 2
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="12" '
            f'text-anchor="end">{escape(label)}</text>'
        )
        if math.isnan(est.low):
            continue
        colour = _COLOURS[i % len(_COLOURS)]
        parts.append(
            f'<line x1="{x(est.low):.1f}" y1="{y:.1f}" x2="{x(est.high):.1f}" '
            f'y2="{y:.1f}" stroke="{colour}" stroke-width="2"/>'
        )
        parts.append(f'<circle cx="{x(est.difference):.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>')
        truth = math.nan if truths is None else truths[i]
        if not math.isnan(truth):
            parts.append(
                f'<line x1="{x(truth):.1f}" y1="{y - 7:.1f}" x2="{x(truth):.1f}" '
                f'y2="{y + 7:.1f}" stroke="#000" stroke-width="2"><title>true effect</title></line>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _interval(est: Lift, scale: float, digits: int) -> str:
    return (
        f"{est.difference * scale:+.{digits}f} "
        f"[{est.low * scale:+.{digits}f}, {est.high * scale:+.{digits}f}]"
    )


def render(
    results: Sequence[RunResult],
    *,
    title: str = "momently policy comparison",
    notes: Sequence[str] = (),
    truth: Mapping[str, tuple[float, float]] | None = None,
    generated: datetime | None = None,
) -> str:
    """The report as an HTML string; ``truth`` maps a policy to its true effects."""
    labels = [r.policy for r in results]
    head = (
        "<tr><th>policy</th><th>messages</th><th>opt-outs</th><th>conversions</th>"
        "<th>revenue</th><th>after a click</th><th>conv. rate treated / holdout</th>"
        "<th>conv. lift, pp [95% CI]</th><th>revenue / customer lift [95% CI]</th>"
        "<th>n treated / holdout</th>"
        + ("<th>true lift (pp; revenue)</th>" if truth else "")
        + "</tr>"
    )
    rows = []
    for r in results:
        cells = [
            escape(r.policy),
            _fmt(r.delivered),
            _fmt(r.opt_outs),
            _fmt(r.conversions),
            _fmt(r.revenue),
            _fmt(r.attributed),
            f"{r.conversion.treated_mean:.2%} / {r.conversion.holdout_mean:.2%}",
            _interval(r.conversion, 100, 2),
            _interval(r.revenue_lift, 1, 2),
            f"{r.conversion.treated_n:,} / {r.conversion.holdout_n:,}",
        ]
        if truth:
            rate, money = truth.get(r.policy, (math.nan, math.nan))
            cells.append(f"{rate * 100:+.2f}; {money:+.2f}")
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    known = [truth.get(r.policy, (math.nan, math.nan)) for r in results] if truth else None
    charts = [
        bar_chart("Messages delivered", labels, [r.delivered for r in results]),
        bar_chart("Customers who opted out", labels, [r.opt_outs for r in results]),
        bar_chart("Conversions", labels, [r.conversions for r in results]),
        bar_chart("Revenue", labels, [r.revenue for r in results]),
        interval_chart(
            "Conversion-rate lift vs holdout (pp)",
            labels,
            [r.conversion for r in results],
            scale=100,
            unit=" pp",
            truths=None if known is None else [k[0] for k in known],
        ),
        interval_chart(
            "Revenue per customer lift vs holdout",
            labels,
            [r.revenue_lift for r in results],
            truths=None if known is None else [k[1] for k in known],
        ),
    ]
    stamp = f" &middot; {generated:%Y-%m-%d %H:%M %Z}" if generated is not None else ""
    first = results[0] if results else None
    setup = (
        f"{first.customers:,} customers, {first.days} days, "
        f"{first.holdout_share:.0%} global holdout"
        if first
        else "no runs"
    )
    body = "".join(f'<p class="note">{escape(n)}</p>' for n in notes)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1><p>{escape(setup)}{stamp}</p>{body}"
        f"<table>{head}{''.join(rows)}</table>"
        f'<div class="charts">{"".join(f"<div>{c}</div>" for c in charts)}</div>'
        '<p class="note">Lift is the treated mean minus the holdout mean per customer, with a '
        "95% interval (normal approximation, Welch). Conversions and revenue count the whole "
        "population, holdout included; &ldquo;after a click&rdquo; counts orders that "
        "followed a clicked message. Where the true effect is known (the same population run "
        "without messages), it is drawn as a black tick.</p></body></html>"
    )


def write_report(
    path: str | Path,
    results: Sequence[RunResult],
    *,
    title: str = "momently policy comparison",
    notes: Sequence[str] = (),
    truth: Mapping[str, tuple[float, float]] | None = None,
    generated: datetime | None = None,
) -> Path:
    """Write :func:`render`'s page to ``path`` and return the path."""
    target = Path(path)
    page = render(results, title=title, notes=notes, truth=truth, generated=generated)
    target.write_text(page, encoding="utf-8")
    return target
