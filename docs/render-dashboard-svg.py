#!/usr/bin/env python3
"""Draw a CloudWatch dashboard body (JSON) as an SVG picture of its layout.

    # from AWS (or the emulator):
    aws cloudwatch get-dashboard --dashboard-name NAME --query DashboardBody --output text > body.json
    python3 docs/render-dashboard-svg.py body.json > dashboard.svg

Each widget is drawn where CloudWatch puts it (a 24-column grid; x, y, width and height in grid
units), with its title, its region when it differs from the dashboard's main region, and one
legend line per metric: the metric name, its statistic and dimensions, or the label and the
metric-math expression. The curves are decoration: the picture shows what each graph plots, not
data. Standard library only.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from xml.sax.saxutils import escape

COL = 50  # px per grid column (24 columns = 1200 px)
ROW = 40  # px per grid row
PAD = 8
MARGIN = 16
FONT = "Helvetica, Arial, sans-serif"
MONO = "DejaVu Sans Mono, Menlo, Consolas, monospace"
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]


def fit(text: str, px: float, char_px: float) -> str:
    n = max(4, int(px / char_px))
    return text if len(text) <= n else text[: n - 1] + "…"


def legend(metric: list) -> str:
    """One legend line for an entry of properties.metrics."""
    opts = metric[-1] if metric and isinstance(metric[-1], dict) else {}
    if "expression" in opts and len(metric) == 1:
        label = opts.get("label") or opts.get("id", "expression")
        return f"{label} = {opts['expression']}"
    parts = [p for p in metric if not isinstance(p, dict)]
    if len(parts) < 2:
        return json.dumps(metric)
    _namespace, name, dims = parts[0], parts[1], parts[2:]
    label = opts.get("label", name)
    stat = opts.get("stat", "")
    dim_text = ", ".join(f"{dims[i]}={dims[i + 1]}" for i in range(0, len(dims) - 1, 2)) or "no dimensions"
    return f"{label} ({stat}) · {dim_text}" if label == name else f"{label}: {name} ({stat}) · {dim_text}"


def curve(x: float, y: float, w: float, h: float, seed: int, color: str) -> str:
    """A smooth decorative line inside the plot area (no data: the picture shows the layout)."""
    pts = []
    steps = 48
    a, b, phase = 1 + seed % 3, 2 + seed % 4, seed * 0.9
    level = 0.3 + 0.4 * ((seed * 0.37) % 1)
    for i in range(steps + 1):
        t = i / steps
        v = level + 0.12 * math.sin(2 * math.pi * a * t + phase) + 0.06 * math.sin(2 * math.pi * b * t + 2 * phase)
        pts.append(f"{x + w * t:.1f},{y + h * (1 - v):.1f}")
    return f'<polyline points="{" ".join(pts)}" fill="none" stroke="{color}" stroke-width="1.8" opacity="0.9"/>'


def render(body: dict) -> str:
    widgets = body.get("widgets", [])
    regions = Counter(w.get("properties", {}).get("region") for w in widgets if w.get("type") == "metric")
    main_region = regions.most_common(1)[0][0] if regions else None
    rows = max((w.get("y", 0) + w.get("height", 6) for w in widgets), default=1)
    width = 24 * COL + 2 * MARGIN
    height = rows * ROW + 2 * MARGIN + 24
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="{FONT}">',
        f'<rect width="{width}" height="{height}" fill="#f2f3f3"/>',
        f'<text x="{MARGIN}" y="{height - 10}" font-size="11" fill="#687078">CloudWatch dashboard layout: 24-column grid, {len(widgets)} widgets'
        + (f", metrics in {escape(main_region)} unless marked" if main_region else "")
        + ". Curves are illustrative.</text>",
    ]
    for n, wdg in enumerate(widgets):
        x = MARGIN + wdg.get("x", 0) * COL
        y = MARGIN + wdg.get("y", 0) * ROW
        w = wdg.get("width", 6) * COL - 6
        h = wdg.get("height", 6) * ROW - 6
        props = wdg.get("properties", {})
        if wdg.get("type") == "text":
            text = props.get("markdown", "").lstrip("#").strip().replace("`", "")
            out.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="3" fill="#ffffff" stroke="#d5dbdb"/>')
            out.append(f'<text x="{x + PAD}" y="{y + h / 2 + 5}" font-size="14" font-weight="bold" fill="#16191f">{escape(fit(text, w - 2 * PAD, 8.6))}</text>')
            continue
        out.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="3" fill="#ffffff" stroke="#d5dbdb"/>')
        title = props.get("title", "(untitled)")
        region = props.get("region")
        if region and region != main_region:
            title += f"  [{region}]"
        out.append(f'<text x="{x + PAD}" y="{y + 20}" font-size="13" font-weight="bold" fill="#16191f">{escape(fit(title, w - 2 * PAD, 7.4))}</text>')
        metrics = props.get("metrics", [])
        legend_h = 15 * len(metrics) + 6
        plot_top = y + 30
        plot_h = max(20, h - 30 - legend_h - PAD)
        # axes
        out.append(f'<line x1="{x + PAD}" y1="{plot_top + plot_h}" x2="{x + w - PAD}" y2="{plot_top + plot_h}" stroke="#aab7b8"/>')
        for k in range(1, 3):
            gy = plot_top + plot_h * k / 3
            out.append(f'<line x1="{x + PAD}" y1="{gy:.1f}" x2="{x + w - PAD}" y2="{gy:.1f}" stroke="#eaeded"/>')
        for i, _metric in enumerate(metrics):
            out.append(curve(x + PAD, plot_top, w - 2 * PAD, plot_h, n * 7 + i, COLORS[i % len(COLORS)]))
        ly = plot_top + plot_h + 16
        for i, metric in enumerate(metrics):
            color = COLORS[i % len(COLORS)]
            out.append(f'<rect x="{x + PAD}" y="{ly - 8}" width="10" height="3" fill="{color}"/>')
            out.append(f'<text x="{x + PAD + 14}" y="{ly}" font-size="10.5" font-family="{MONO}" fill="#414d5c">{escape(fit(legend(metric), w - 2 * PAD - 14, 6.4))}</text>')
            ly += 15
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    src = sys.stdin if sys.argv[1] == "-" else open(sys.argv[1], encoding="utf-8")
    body = json.load(src)
    if "DashboardBody" in body:  # raw GetDashboard output
        body = json.loads(body["DashboardBody"])
    sys.stdout.write(render(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
