"""The performance targets of issue 13, checked against one run's results (never in tests: these are
measurements on a shared VM, not assertions). Each row: what is measured, the figure, the target, the
figure as a fraction of what the target allows (`score`, ≥ 1 meets it), and why a row cannot be
judged when a point it needs is missing or unsound (failed requests, a saturated load core)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Check:
    name: str
    measured: float | None
    unit: str
    target: str
    score: float | None  # ≥ 1.0: met (higher is better after normalising "at most" targets)
    note: str = ""

    @property
    def met(self) -> bool | None:
        return None if self.score is None else self.score >= 1.0


def _at_least(value: float | None, bound: float) -> float | None:
    return None if value is None else value / bound


def _at_most(value: float | None, bound: float) -> float | None:
    if value is None:
        return None
    return float("inf") if value <= 0 else bound / value


def evaluate(result: dict[str, Any]) -> list[dict[str, Any]]:
    pts = {(p["target"], p["mode"], p["concurrency"]): p for p in result.get("points", [])}

    def point(target: str, c: int) -> dict[str, Any] | None:
        return pts.get((target, "cached", c))

    def soundness(*ps: dict[str, Any] | None) -> str:
        notes = []
        for p in ps:
            if p is None:
                continue
            if p.get("failed"):
                notes.append(f"{p['target']}: {p['failed']} failed requests (not counted in its rate)")
            if p.get("load_saturated"):
                notes.append(f"{p['target']}: load core saturated")
        return "; ".join(notes)

    checks: list[Check] = []
    x64, a64, x1, d1 = point("proxy", 64), point("apache", 64), point("proxy", 1), point("direct", 1)

    def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> float | None:
        return a[key] / b[key] if a and b and b[key] else None

    rps = ratio(x64, a64, "rps")
    checks.append(
        Check("c=64 req/s, proxy ÷ Apache", rps, "×", "≥ 0.75", _at_least(rps, 0.75), soundness(x64, a64))
    )
    p99 = ratio(x64, a64, "p99_ms")
    checks.append(
        Check("c=64 p99, proxy ÷ Apache", p99, "×", "≤ 1.00", _at_most(p99, 1.0), soundness(x64, a64))
    )
    added = x1["p50_ms"] - d1["p50_ms"] if x1 and d1 else None
    checks.append(Check("c=1 median added over direct", added, "ms", "≤ 0.25", _at_most(added, 0.25)))
    cpu = x64["cpu_us_per_req"] if x64 else None
    checks.append(Check("proxy CPU per request (c=64)", cpu, "µs", "≤ 100", _at_most(cpu, 100.0)))

    streams = result.get("streams", {}).get("proxy") or {}

    def stream(kind: str, key: str) -> float | None:
        return streams.get(kind, {}).get(key) if isinstance(streams.get(kind), dict) else None

    for kind, bound in (("put", 1.0), ("get", 1.3)):
        v = stream(kind, "gib_per_s")
        checks.append(
            Check(f"1 GiB {kind.upper()} through one core", v, "GiB/s", f"≥ {bound}", _at_least(v, bound))
        )
        v = stream(kind, "rss_growth_mib")
        checks.append(Check(f"1 GiB {kind.upper()}: peak RSS growth", v, "MiB", "≤ 8", _at_most(v, 8.0)))
    ws = result.get("websockets") or {}
    v = ws.get("rss_growth_mib")
    checks.append(
        Check(f"{ws.get('websockets', 1000)} idle WebSockets: RSS", v, "MiB", "≤ 40", _at_most(v, 40.0))
    )
    v = ws.get("idle_cpu_pct")
    checks.append(Check("idle WebSockets: CPU", v, "% of a core", "≤ 1 (none)", _at_most(v, 1.0)))
    ex = (result.get("expect") or {}).get("proxy") or {}
    v = ex.get("continue_max_ms")
    checks.append(
        Check("Expect: 100-continue, slowest invitation", v, "ms", "≤ 100 (no stall)", _at_most(v, 100.0))
    )
    ray = result.get("ray") or {}
    v = ray.get("ratio")
    checks.append(
        Check(
            "real Ray /api/version, proxy ÷ direct", v, "×", "≥ 0.90", _at_least(v, 0.90), ray.get("note", "")
        )
    )
    workers = result.get("workers") or {}
    v = workers.get("ratio")
    checks.append(
        Check(
            "--workers 2 ÷ --workers 1 (two cores)",
            v,
            "×",
            "≥ 1.7",
            _at_least(v, 1.7),
            workers.get("note", ""),
        )
    )
    return [{**asdict(c), "met": c.met} for c in checks]


def fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"


def markdown_rows(checks: list[dict[str, Any]], verdict: Callable[[bool | None], str]) -> list[str]:
    lines = ["| target | measured | goal | met | notes |", "|---|---:|---|:---:|---|"]
    for c in checks:
        lines.append(
            f"| {c['name']} | {fmt(c['measured'])} {c['unit']} | {c['target']} {c['unit']} | "
            f"{verdict(c['met'])} | {c['note']} |"
        )
    return lines
