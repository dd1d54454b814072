"""The results as text: bench/results/latest.md and the table printed at the end of a run."""

from __future__ import annotations

from typing import Any


def fmt_ms(v: float) -> str:
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "–"


def _get(point: dict[str, Any] | None, key: str) -> float | None:
    return point[key] if point else None


def markdown(result: dict[str, Any]) -> str:
    pts = {(p["target"], p["mode"], p["concurrency"]): p for p in result["points"]}
    lines = [
        "| target | token | c | req/s | p50 ms | p90 ms | p99 ms | SUT CPU % | req per CPU-s | notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in result["points"]:
        lines.append(
            f"| {p['target']} | {p['mode']} | {p['concurrency']} | {p['rps']:,.0f} | {fmt_ms(p['p50_ms'])} | "
            f"{fmt_ms(p['p90_ms'])} | {fmt_ms(p['p99_ms'])} | {p['sut_cpu_pct']:.0f} | "
            f"{p['req_per_cpu_s']:,} | {'; '.join(p['notes'])} |"
        )
    lines += [
        "",
        "| c | proxy/direct req/s | proxy/apache req/s | proxy/direct p99 | proxy/apache p99 "
        "| proxy/apache req per CPU-s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for c in result["config"]["concurrency"]:
        d, x, a = (pts.get((t, "cached", c)) for t in ("direct", "proxy", "apache"))
        lines.append(
            f"| {c} | {ratio(_get(x, 'rps'), _get(d, 'rps'))} | {ratio(_get(x, 'rps'), _get(a, 'rps'))} | "
            f"{ratio(_get(x, 'p99_ms'), _get(d, 'p99_ms'))} | "
            f"{ratio(_get(x, 'p99_ms'), _get(a, 'p99_ms'))} | "
            f"{ratio(_get(x, 'req_per_cpu_s'), _get(a, 'req_per_cpu_s'))} |"
        )
    if result["config"]["miss_concurrency"]:
        lines += [
            "",
            "| c | fresh/cached req/s, proxy | fresh/cached req/s, apache | proxy p50 fresh − cached (ms) |",
            "|---:|---:|---:|---:|",
        ]
        for c in result["config"]["miss_concurrency"]:
            xc, xf = pts.get(("proxy", "cached", c)), pts.get(("proxy", "fresh", c))
            ac, af = pts.get(("apache", "cached", c)), pts.get(("apache", "fresh", c))
            delta = f"{xf['p50_ms'] - xc['p50_ms']:.2f}" if xc and xf else "–"
            lines.append(
                f"| {c} | {ratio(xf and xf['rps'], xc and xc['rps'])} | "
                f"{ratio(af and af['rps'], ac and ac['rps'])} | {delta} |"
            )
    if result.get("bulk"):
        lines += [
            "",
            "| target | download 1 MiB: MiB/s | median ms | upload 16 MiB: MiB/s | median ms |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, b in result["bulk"].items():
            lines.append(
                f"| {name} | {b['download']['mib_per_s']:,.0f} | {b['download']['median_ms']} | "
                f"{b['upload']['mib_per_s']:,.0f} | {b['upload']['median_ms']} |"
            )
    if result.get("micro"):
        m = result["micro"]
        lines += [
            "",
            f"In-process, one core, CPU time: `Verifier.identify` with a fresh token (cache miss: "
            f"PyJWT ES256 + claim checks) {m['verify_us']} µs (≈{m['verify_per_s']:,}/s); "
            f"with a cached token {m['cache_hit_us']} µs.",
        ]
    return "\n".join(lines) + "\n"


def print_table(result: dict[str, Any]) -> None:
    print()
    print(
        f"{'target':<8} {'token':<7} {'c':>3} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
        f"{'SUT CPU%':>8} {'req/CPU-s':>10}  notes"
    )
    for p in result["points"]:
        print(
            f"{p['target']:<8} {p['mode']:<7} {p['concurrency']:>3} {p['rps']:>9,.0f} "
            f"{fmt_ms(p['p50_ms']):>8} {fmt_ms(p['p90_ms']):>8} {fmt_ms(p['p99_ms']):>8} "
            f"{p['sut_cpu_pct']:>8.0f} {p['req_per_cpu_s']:>10,}  {'; '.join(p['notes'])}"
        )
    print()
    print(markdown(result).split("\n\n", 1)[1] if "\n\n" in markdown(result) else "")
