"""The results as text: bench/results/latest.md and the table printed at the end of a run."""

from __future__ import annotations

from typing import Any

from bench.settings import LOAD_CORE
from bench.targets import fmt, markdown_rows


def fmt_ms(v: float) -> str:
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "–"


def _get(point: dict[str, Any] | None, key: str) -> float | None:
    return point[key] if point else None


def verdict(met: bool | None) -> str:
    return "–" if met is None else ("yes" if met else "**no**")


def markdown(result: dict[str, Any]) -> str:
    pts = {(p["target"], p["mode"], p["concurrency"]): p for p in result["points"]}
    m = result.get("machine", {})
    lines = [
        f"Run {result.get('when', '')}, {result.get('duration_s', '?')} s; load average "
        f"{' '.join(m.get('loadavg_at_start', []))} at the start, {' '.join(m.get('loadavg_at_end', []))} "
        f"at the end; {m.get('event_loop', '')}.",
        "",
    ]
    if result.get("targets"):
        lines += markdown_rows(result["targets"], verdict) + [""]
    lines += [
        "| target | token | c | req/s | p50 ms | p90 ms | p99 ms | SUT CPU % | CPU µs/req | load core % "
        "| notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in result["points"]:
        load = p.get("core_busy_pct", {}).get(str(LOAD_CORE), p.get("core_busy_pct", {}).get(LOAD_CORE, 0))
        lines.append(
            f"| {p['target']} | {p['mode']} | {p['concurrency']} | {p['rps']:,.0f} | {fmt_ms(p['p50_ms'])} | "
            f"{fmt_ms(p['p90_ms'])} | {fmt_ms(p['p99_ms'])} | {p['sut_cpu_pct']:.0f} | "
            f"{p.get('cpu_us_per_req', 0):,.0f} | {load:.0f} | {'; '.join(p['notes'])} |"
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
    lines += extras(result)
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


def extras(result: dict[str, Any]) -> list[str]:
    """The streams, Expect, idle WebSockets, --workers, real Ray and the profile split."""
    lines: list[str] = []
    if result.get("streams"):
        lines += ["", "| target | 1 GiB GET GiB/s | peak RSS +MiB | 1 GiB PUT GiB/s | peak RSS +MiB |"]
        lines.append("|---|---:|---:|---:|---:|")
        for name, s in result["streams"].items():
            g, p = s.get("get", {}), s.get("put", {})
            lines.append(
                f"| {name} | {fmt(g.get('gib_per_s'))} | {fmt(g.get('rss_growth_mib'))} | "
                f"{fmt(p.get('gib_per_s'))} | {fmt(p.get('rss_growth_mib'))} |"
            )
    if result.get("expect"):
        lines += [
            "",
            "| target | Expect: 100-continue: invited after, median ms | slowest ms | whole PUT ms |",
        ]
        lines.append("|---|---:|---:|---:|")
        for name, e in result["expect"].items():
            lines.append(
                f"| {name} | {fmt(e.get('continue_median_ms'))} | {fmt(e.get('continue_max_ms'))} | "
                f"{fmt(e.get('total_median_ms'))} |" + (f" {e['error']}" if "error" in e else "")
            )
    ws = result.get("websockets")
    if ws:
        lines += [
            "",
            f"{ws['websockets']} idle WebSockets through the proxy ({ws['open_after_idle']} still open after "
            f"{ws['idle_seconds']} s idle): resident memory +{ws['rss_growth_mib']} MiB (from "
            f"{ws['rss_before_mib']} MiB), CPU while idle {ws['idle_cpu_pct']} % of a core.",
        ]
    w = result.get("workers")
    if w and "one" in w:
        lines += [
            "",
            f"`--workers` on both cores, wrk -t2 -c64 against the stub's canned listener: one worker "
            f"{w['one']['rps']:,.0f} req/s (CPU {w['one']['sut_cpu_pct']:.0f} %), two "
            f"{w['two']['rps']:,.0f} req/s (CPU {w['two']['sut_cpu_pct']:.0f} %): {w['ratio']:.2f}×.",
        ]
    r = result.get("ray")
    if r and "direct" in r:
        lines += [
            "",
            f"A real Ray head (`GET /api/version`, c={r['concurrency']}, Ray on core 0): direct "
            f"{r['direct']['rps']:,.0f} req/s (p50 {fmt_ms(r['direct']['p50_ms'])} ms), through the proxy "
            f"{r['proxy']['rps']:,.0f} req/s (p50 {fmt_ms(r['proxy']['p50_ms'])} ms): {r['ratio']:.2f}×.",
        ]
    elif r:
        lines += ["", f"The real Ray point failed: {r.get('error')}"]
    prof = result.get("profile") or {}
    if prof.get("split_pct"):
        lines += [
            "",
            f"Profile of the proxy at c=32 ({prof['samples']} py-spy samples; the first frame "
            "from the top of each stack that names a part):",
            "",
            "| part | share |",
            "|---|---:|",
        ]
        lines += [f"| {part} | {pct} % |" for part, pct in prof["split_pct"]]
    return lines
