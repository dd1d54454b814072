"""The targets row of docs/img/bench.svg: each target of issue 13 as a bar of measured ÷ allowed
(1.0, the dashed line, meets it; "at most" targets are inverted so that longer is better throughout)."""

from __future__ import annotations

from html import escape
from typing import Any

ROW, TOP = 22, 40


def targets_height(result: dict[str, Any]) -> int:
    checks = result.get("targets") or []
    return TOP + ROW * len(checks) + 20 if checks else 0


def targets_panel(result: dict[str, Any], y0: int, width: int) -> list[str]:
    checks = result.get("targets") or []
    if not checks:
        return []
    label_w, bar_x = 330, 350
    bar_w = width - bar_x - 170
    cap = 2.0  # scores above are drawn at the edge
    out = [
        f'<text x="{width / 2}" y="{y0 + 22}" text-anchor="middle" font-size="13">'
        "targets: measured ÷ allowed (1.0 meets the target; longer is better)</text>",
    ]
    one = bar_x + bar_w / cap
    for i, c in enumerate(checks):
        y = y0 + TOP + i * ROW
        score = c.get("score")
        out.append(f'<text x="{label_w}" y="{y + 14}" text-anchor="end">{escape(c["name"])}</text>')
        if score is None:
            out.append(f'<text x="{bar_x + 4}" y="{y + 14}" fill="#777">not measured</text>')
            continue
        length = bar_w * min(score, cap) / cap
        fill = "#2ca02c" if score >= 1.0 else "#d62728"
        out.append(f'<rect x="{bar_x}" y="{y + 3}" width="{length:.1f}" height="{ROW - 6}" fill="{fill}"/>')
        measured = c["measured"]
        text = f"{measured:,.2f}" if abs(measured) < 100 else f"{measured:,.0f}"
        out.append(
            f'<text x="{bar_x + bar_w + 8}" y="{y + 14}">{escape(text)} {escape(c["unit"])} '
            f"({escape(c['target'])})</text>"
        )
    out.append(
        f'<line x1="{one:.1f}" y1="{y0 + TOP - 4}" x2="{one:.1f}" y2="{y0 + TOP + ROW * len(checks)}" '
        'stroke="black" stroke-dasharray="4,3"/>'
    )
    return out
