"""One wrk point against one target (its Lua scripts, what it measured) and the sweep over concurrencies.

The Lua `done` hook prints one `BENCH_JSON {...}` line: wrk's own summary and latency percentiles, so
nothing is parsed out of its human-readable report.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import core_busy, core_times, pin, proc_cpu_seconds
from bench.settings import (
    CONCURRENCY,
    LOAD_CORE,
    MISS_CONCURRENCY,
    RESULTS,
    SECONDS,
    SMALL_PATH,
    SUT_CORE,
    TOKEN_HEADER,
    WARMUP,
    log,
)
from bench.tokens import TokenPool

LOAD_SATURATED_PCT = 95.0  # the load core this busy: the point may measure wrk and the stub, not the target

LUA_DONE = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  local reused = 0
  for _, t in ipairs(threads) do reused = reused + (t:get("reused") or 0) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f,"reused":%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean, reused))
end
"""


def lua_hot(token: str) -> str:
    return f'wrk.headers["{TOKEN_HEADER}"] = "{token}"\nreused = 0\n' + LUA_DONE


def lua_fresh(token_file: Path) -> str:
    return (
        textwrap.dedent(f"""\
        local tokens = {{}}
        for line in io.lines("{token_file}") do tokens[#tokens + 1] = line end
        local i, wrapped = 0, false
        reused = 0
        function request()
          i = i + 1
          if i > #tokens then i, wrapped = 1, true end
          if wrapped then reused = reused + 1 end
          return wrk.format(nil, nil, {{["{TOKEN_HEADER}"] = tokens[i]}})
        end
        """)
        + LUA_DONE
    )


@dataclass
class Target:
    name: str
    url: str
    pids: Callable[[], list[int]]  # the processes of the system under test, asked before each point


@dataclass
class Point:
    target: str
    mode: str  # "cached" (one hot token) or "fresh" (a new token per request)
    concurrency: int
    seconds: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    sut_cpu_pct: float
    core_busy_pct: dict[int, float]
    req_per_cpu_s: float
    cpu_us_per_req: float = 0.0
    failed: int = 0  # answers that were errors (4xx/5xx) and sockets that failed: not in `rps`
    load_saturated: bool = False
    reused_tokens: int = 0
    notes: list[str] = field(default_factory=list)


def run_wrk(
    target: Target,
    lua: str,
    concurrency: int,
    seconds: int,
    run_dir: Path,
    raw_name: str | None,
    mode: str,
    threads: int = 1,
    cores: int | None = LOAD_CORE,
) -> Point:
    """One wrk run (`cores`: the core wrk is pinned to, None for any)."""
    script = run_dir / f"wrk-{target.name}-{mode}-{concurrency}.lua"
    script.write_text(lua)
    argv = ["taskset", "-c", str(cores)] if cores is not None else []
    argv += ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s"]
    argv += ["--timeout", "5s", "-s", str(script), target.url + SMALL_PATH]
    pids = target.pids()
    cpu0, cores0, t0 = proc_cpu_seconds(pids), core_times(), time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    cpu1, cores1, lifetime = proc_cpu_seconds(pids), core_times(), time.monotonic() - t0
    if raw_name is not None:
        (RESULTS / f"{raw_name}.raw").write_text(" ".join(argv) + "\n" + done.stdout + done.stderr)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
    r = json.loads(line.removeprefix("BENCH_JSON "))
    wall = r["duration_us"] / 1e6
    errors = {k: r[k] for k in ("connect", "read", "write", "status", "timeout") if r[k]}
    # wrk counts error answers (4xx/5xx: "status") as requests; failed sockets it does not count.
    # Only successful answers make the rate; every failure is reported beside it.
    ok = r["requests"] - r["status"]
    cpu = cpu1 - cpu0  # over wrk's whole lifetime (start-up, connecting, the run, exit)
    point = Point(
        target=target.name,
        mode=mode,
        concurrency=concurrency,
        seconds=round(wall, 2),
        requests=ok,
        rps=round(ok / wall, 1),
        p50_ms=r["p50"] / 1000,
        p90_ms=r["p90"] / 1000,
        p99_ms=r["p99"] / 1000,
        max_ms=r["max"] / 1000,
        errors=errors,
        sut_cpu_pct=round(100 * cpu / lifetime, 1),
        core_busy_pct=core_busy(cores0, cores1),
        req_per_cpu_s=round(ok / cpu) if cpu > 0 else 0,
        cpu_us_per_req=round(1e6 * cpu / ok, 1) if ok else 0.0,
        failed=sum(errors.values()),
        reused_tokens=r["reused"],
    )
    if errors:
        point.notes.append(f"failed {errors}")
    others = point.core_busy_pct.get(SUT_CORE, 0.0) - point.sut_cpu_pct
    if others > 15:
        point.notes.append(f"core {SUT_CORE} shared: ~{others:.0f}% used by other processes")
    if point.core_busy_pct.get(LOAD_CORE, 0.0) >= LOAD_SATURATED_PCT:
        point.load_saturated = True
        point.notes.append(f"load core {LOAD_CORE} saturated ({point.core_busy_pct[LOAD_CORE]:.0f}%)")
    if r["reused"]:
        point.notes.append(f"{r['reused']} tokens reused (cache hits mixed in)")
    return point


def log_point(p: Point) -> None:
    log(
        f"{p.target:<6} {p.mode:<6} c={p.concurrency:<3} {p.rps:>8,.0f} req/s  p50 {p.p50_ms:.2f} ms  "
        f"p99 {p.p99_ms:.2f} ms  SUT CPU {p.sut_cpu_pct:.0f}%  {'; '.join(p.notes)}"
    )


def measure(
    targets: dict[str, Target], stub_pid: int, hot: str, pool: TokenPool, run_dir: Path
) -> list[dict[str, Any]]:
    points: list[Point] = []
    warmed: set[str] = set()
    for c in CONCURRENCY:
        for name, t in targets.items():  # interleaved, so drift on a shared machine hits all alike
            pin(stub_pid, SUT_CORE if name == "direct" else LOAD_CORE)
            if name not in warmed and WARMUP > 0:
                run_wrk(t, lua_hot(hot), 32, WARMUP, run_dir, None, "warmup")
                warmed.add(name)
            p = run_wrk(t, lua_hot(hot), c, SECONDS, run_dir, f"{name}-cached-c{c}", "cached")
            points.append(p)
            log_point(p)
    pin(stub_pid, LOAD_CORE)
    cached = {(p.target, p.concurrency): p.rps for p in points}
    for c in MISS_CONCURRENCY:
        for name, t in targets.items():
            if name == "direct":
                continue
            # a fresh request can't be faster than a cached one: size the tokens from the cached point
            need = int(cached.get((name, c), max(cached.values())) * SECONDS * 1.25) + 500
            tokens = pool.take(name, need)
            tfile = run_dir / f"tokens-{name}-{c}.txt"
            tfile.write_text("\n".join(tokens) + "\n")
            p = run_wrk(t, lua_fresh(tfile), c, SECONDS, run_dir, f"{name}-fresh-c{c}", "fresh")
            tfile.unlink()
            points.append(p)
            log_point(p)
    return [p.__dict__ for p in points]
