"""Two points outside the one-core layout:

- `--workers`: the proxy with `--workers 1` and `--workers 2`, nothing pinned, wrk with two threads,
  in front of the stub's canned listener (a bare protocol: the upstream costs next to nothing, so the
  two cores go to the proxy and wrk). Rounds alternate between the two; each keeps its best round.
- a real Ray head (`ray start --head`, token auth): `GET /api/version` straight to its dashboard and
  through the proxy. Ray is pinned to the system-under-test core, the proxy and wrk to the load core,
  so Ray gets the same core either way and the ratio is what the proxy takes from Ray's throughput.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench.peers import write_proxy_config
from bench.procs import Processes, children_of, pin, wait_until_ok
from bench.settings import LOAD_CORE, PY, SECONDS, SUT_CORE, TOKEN_HEADER, log
from bench.wrk import LUA_DONE, Target, run_wrk
from devkit.ports import free_ports

ROUNDS = 2
RAY_CONCURRENCY = 16


def _proxy(procs: Processes, run_dir: Path, name: str, cfg: Path, port: int, argv: list[str]) -> Target:
    proc = procs.start(
        name, [PY, "-m", "proxy", "serve", "--config", str(cfg), *argv], run_dir / f"{name}.log"
    )
    wait_until_ok(f"http://127.0.0.1:{port}/readyz", name, proc, seconds=40)
    return Target(name, f"http://127.0.0.1:{port}", lambda: [proc.pid, *children_of(proc.pid)])


def workers_point(
    run_dir: Path, procs: Processes, fast_upstream: str, jwks_url: str, hot: str
) -> dict[str, Any]:
    both = set(range(os.cpu_count() or 2))
    os.sched_setaffinity(0, both)
    try:
        targets = {}
        for n in (1, 2):
            port = free_ports(1)[0]
            cfg = write_proxy_config(run_dir, port, fast_upstream, jwks_url, name=f"workers{n}")
            targets[n] = _proxy(procs, run_dir, f"workers{n}", cfg, port, ["--workers", str(n)])
        best: dict[int, Any] = {}
        lua = f'wrk.headers["{TOKEN_HEADER}"] = "{hot}"\nreused = 0\n' + LUA_DONE
        for _ in range(ROUNDS):
            for n, target in targets.items():
                p = run_wrk(target, lua, 64, SECONDS, run_dir, f"workers{n}", "cached", threads=2, cores=None)
                log(f"--workers {n}: {p.rps:,.0f} req/s, p99 {p.p99_ms:.1f} ms, CPU {p.sut_cpu_pct:.0f}%")
                if n not in best or p.rps > best[n].rps:
                    best[n] = p
    finally:
        os.sched_setaffinity(0, {LOAD_CORE})
    one, two = best[1], best[2]
    note = "; ".join(f"workers {n}: failed {best[n].errors}" for n in best if best[n].failed)
    return {
        "one": one.__dict__,
        "two": two.__dict__,
        "ratio": round(two.rps / one.rps, 3) if one.rps else None,
        "note": note,
    }


def ray_point(run_dir: Path, procs: Processes, jwks_url: str, hot: str) -> dict[str, Any]:
    from devkit.rayhead import RayHead

    with RayHead() as head:
        for pid in head.tree_pids():
            pin(pid, SUT_CORE)
        port = free_ports(1)[0]
        cfg = write_proxy_config(
            run_dir, port, head.dashboard_url, jwks_url, name="ray-proxy", ray_token=head.token
        )
        proxy = _proxy(procs, run_dir, "ray-proxy", cfg, port, [])
        for pid in proxy.pids():
            pin(pid, LOAD_CORE)
        direct = Target("ray", head.dashboard_url, head.tree_pids)
        lua_direct = f'wrk.headers["X-Ray-Authorization"] = "Bearer {head.token}"\nreused = 0\n' + LUA_DONE
        lua_proxy = f'wrk.headers["{TOKEN_HEADER}"] = "{hot}"\nreused = 0\n' + LUA_DONE
        points: dict[str, Any] = {}
        for _ in range(ROUNDS):
            for name, target, lua in (("direct", direct, lua_direct), ("proxy", proxy, lua_proxy)):
                p = run_wrk(target, lua, RAY_CONCURRENCY, SECONDS, run_dir, f"ray-{name}", "cached")
                log(f"real Ray {name}: {p.rps:,.0f} req/s, p50 {p.p50_ms:.2f} ms {'; '.join(p.notes)}")
                if name not in points or p.rps > points[name].rps:
                    points[name] = p
        procs.stop_one("ray-proxy")
    d, x = points["direct"], points["proxy"]
    note = "; ".join(f"{n}: failed {points[n].errors}" for n in points if points[n].failed)
    return {
        "concurrency": RAY_CONCURRENCY,
        "direct": d.__dict__,
        "proxy": x.__dict__,
        "ratio": round(x.rps / d.rps, 3) if d.rps else None,
        "note": note,
    }
