"""docs/img/bench.svg, written as SVG text so the bench needs no plotting library."""

from __future__ import annotations

import math
from typing import Any

from bench.chart_targets import targets_height, targets_panel
from bench.report import fmt_ms

COLORS = {"direct": "#9e9e9e", "proxy": "#1f77b4", "apache": "#d62728"}


def svg_chart(result: dict[str, Any]) -> str:
    """Two panels, bars per target at each concurrency: requests/s and p99 latency. Fresh-token
    (cache-miss) points are drawn hatched beside the cached ones."""
    pts = result["points"]
    conc = sorted({p["concurrency"] for p in pts})
    series = [
        (t, m)
        for t in ("direct", "proxy", "apache")
        for m in ("cached", "fresh")
        if any(p["target"] == t and p["mode"] == m for p in pts)
    ]
    lookup = {(p["target"], p["mode"], p["concurrency"]): p for p in pts}
    W, H, top, bottom, left = 980, 400, 56, 70, 64
    panel_w = (W - 2 * left - 60) / 2
    total = H + targets_height(result)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{total}" viewBox="0 0 {W} {total}" '
        'font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="white"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="black" stroke-width="2" opacity="0.35"/></pattern></defs>',
        f'<rect width="{W}" height="{total}" fill="white"/>',
        f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">'
        f"ray-iap-proxy vs direct and Apache+mod_oauth2 — GET /api/version (~128 B), 1 core each</text>",
    ]
    for panel, (key, title) in enumerate(
        (("rps", "requests/s (higher is better)"), ("p99_ms", "p99 latency, ms, log scale (lower is better)"))
    ):
        x0 = left + panel * (panel_w + 40 + left)
        y0, ph = top, H - top - bottom
        values = [p[key] for p in pts if p[key] > 0] or [1.0]
        if key == "rps":  # linear, from 0
            step = 10 ** math.floor(math.log10(max(values)))
            for mult in (1, 2, 2.5, 5, 10):
                if max(values) / (step * mult) <= 5:
                    step *= mult
                    break
            ymax = step * math.ceil(max(values) / step)
            ticks = [i * step for i in range(int(round(ymax / step)) + 1)]
            lo, hi = 0.0, ymax
        else:  # latency spans decades: log scale
            lo = 10 ** math.floor(math.log10(min(values)))
            hi = 10 ** math.ceil(math.log10(max(values)))
            ticks = [lo * 10**i for i in range(round(math.log10(hi / lo)) + 1)]

        def scale(v: float, lo: float = lo, hi: float = hi, log_scale: bool = key != "rps") -> float:
            if log_scale:
                return math.log10(max(v, lo) / lo) / math.log10(hi / lo)
            return v / hi

        out.append(
            f'<text x="{x0 + panel_w / 2}" y="{y0 - 12}" text-anchor="middle" font-size="13">{title}</text>'
        )
        for k in ticks:
            y = y0 + ph - ph * scale(k)
            label = f"{k / 1000:g}k" if key == "rps" and k >= 1000 else f"{k:g}"
            out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + panel_w}" y2="{y:.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
        out.append(f'<line x1="{x0}" y1="{y0 + ph}" x2="{x0 + panel_w}" y2="{y0 + ph}" stroke="black"/>')
        group_w = panel_w / len(conc)
        bar_w = min(26, (group_w - 16) / max(1, len(series)))
        for gi, c in enumerate(conc):
            gx = x0 + gi * group_w + (group_w - bar_w * len(series)) / 2
            out.append(
                f'<text x="{x0 + gi * group_w + group_w / 2}" y="{y0 + ph + 18}" '
                f'text-anchor="middle">c={c}</text>'
            )
            for si, (t, m) in enumerate(series):
                p = lookup.get((t, m, c))
                if p is None:
                    continue
                h = ph * scale(p[key])
                bx, by = gx + si * bar_w, y0 + ph - h
                fill = COLORS[t]
                out.append(
                    f'<rect x="{bx:.1f}" y="{by:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
                    f'fill="{fill}"/>'
                )
                if m == "fresh":
                    out.append(
                        f'<rect x="{bx:.1f}" y="{by:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
                        f'fill="url(#hatch)" stroke="{fill}" stroke-width="1.5"/>'
                    )
                v = p[key]
                text = (f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}") if key == "rps" else fmt_ms(v)
                out.append(
                    f'<text x="{bx + (bar_w - 2) / 2:.1f}" y="{by - 3:.1f}" text-anchor="middle" '
                    f'font-size="9">{text}</text>'
                )
    lx = left
    for t, m in series:
        out.append(f'<rect x="{lx}" y="{H - 30}" width="14" height="14" fill="{COLORS[t]}"/>')
        if m == "fresh":
            out.append(
                f'<rect x="{lx}" y="{H - 30}" width="14" height="14" fill="url(#hatch)" '
                f'stroke="{COLORS[t]}" stroke-width="1.5"/>'
            )
        suffix = " (fresh token per request)" if m == "fresh" else "" if t == "direct" else " (cached token)"
        label = t + suffix
        out.append(f'<text x="{lx + 19}" y="{H - 19}">{label}</text>')
        lx += 30 + 7 * len(label)
    out += targets_panel(result, H, W)
    out.append("</svg>")
    return "\n".join(out) + "\n"
