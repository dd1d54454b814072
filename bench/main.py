"""The run: preflight, start the stub and the targets, check them, measure, stop everything by pid and
write bench/results/latest.{json,md} and docs/img/bench.svg (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.bulk import bulk
from bench.chart import svg_chart
from bench.idle_ws import idle_websockets
from bench.micro import micro
from bench.peers import apache_peer, write_proxy_config
from bench.procs import Processes, autogroup_nice, http_get, pin, wait_until_ok
from bench.profiling import profile_proxy
from bench.report import markdown, print_table
from bench.scaling import ray_point, workers_point
from bench.settings import (
    AUDIENCE,
    BULK_SECONDS,
    CONCURRENCY,
    EMAIL,
    GIB_BYTES,
    IMG,
    KEEP,
    LOAD_CORE,
    MISS_CONCURRENCY,
    NICE,
    PROFILE,
    PY,
    RAY,
    RAY_TOKEN,
    RESULTS,
    SECONDS,
    SMALL_PATH,
    SUT_CORE,
    TARGETS,
    TOKEN_HEADER,
    WARMUP,
    WEBSOCKETS,
    WORKERS,
    log,
)
from bench.streams import expect_continue, gib_stream
from bench.targets import evaluate
from bench.tokens import TokenPool
from bench.wrk import Target, measure
from devkit.ports import free_ports


def preflight() -> list[str]:
    problems = []
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        problems.append("needs Linux and at least 2 usable cores")
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            problems.append(f"{tool} not found (apt-get install -y --no-install-recommends wrk util-linux)")
    return problems


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            info["cpu"] = line.split(":", 1)[1].strip()
            break
    for argv, key in ((["apache2", "-v"], "apache"), (["wrk", "-v"], "wrk")):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            text = subprocess.run(argv, capture_output=True, text=True, timeout=5).stdout
            info[key] = text.splitlines()[0] if text else ""
    import aiohttp
    import httptools
    import uvloop

    info["python"] = sys.version.split()[0]
    info["aiohttp"] = aiohttp.__version__
    info["httptools"] = httptools.__version__
    # the proxy runs on uvloop (proxy/app.py `_loop_factory`), and so does the stub (bench/upstream.py)
    info["event_loop"] = f"uvloop {uvloop.__version__} (proxy and stub)"
    return info


def main() -> int:
    problems = preflight()
    if problems:
        for p in problems:
            print(f"bench: {p}", file=sys.stderr)
        return 2
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from proxy import dev

    os.sched_setaffinity(0, {LOAD_CORE})
    own_nice = autogroup_nice("self")
    if NICE and own_nice is not None:
        autogroup_nice("self", NICE)  # every process started below is in this autogroup (Apache aside)
    RESULTS.mkdir(parents=True, exist_ok=True)
    IMG.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="ray-iap-bench-", dir="/tmp"))
    run_dir.chmod(0o755)  # Apache's children (www-data) use a directory inside
    procs = Processes()
    started = time.monotonic()
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "config": {
            "seconds": SECONDS,
            "concurrency": CONCURRENCY,
            "miss_concurrency": MISS_CONCURRENCY,
            "warmup_s": WARMUP,
            "bulk_seconds": BULK_SECONDS,
            "targets": TARGETS,
            "autogroup_nice": autogroup_nice("self"),
            "layout": f"system under test on core {SUT_CORE}; wrk, this script and the upstream stub "
            f"on core {LOAD_CORE} (for 'direct' the stub is the system under test)",
        },
        "points": [],
    }
    log(
        f"run dir {run_dir}; {SECONDS} s per point; concurrency {CONCURRENCY}, "
        f"fresh-token {MISS_CONCURRENCY}; load average {result['machine']['loadavg_at_start']}"
    )
    try:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        jwks = json.dumps(dev.jwks(key)).encode()
        (run_dir / "jwks.json").write_bytes(jwks)
        hot = dev.mint(key, EMAIL, AUDIENCE, lifetime=600)
        pool = TokenPool(pem, hot)

        def fresh_hot() -> str:  # IAP's tokens live 10 minutes; the later stages get a new one
            return dev.mint(key, EMAIL, AUDIENCE, lifetime=600)

        stub_port, jwks_port, fast_port, proxy_port, apache_port = free_ports(5)
        upstream, jwks_url = f"http://127.0.0.1:{stub_port}", f"http://127.0.0.1:{jwks_port}/jwks.json"
        stub_argv = [PY, "-m", "bench.upstream", "--port", str(stub_port), "--jwks-port", str(jwks_port)]
        stub_argv += ["--jwks-file", str(run_dir / "jwks.json"), "--ray-token", RAY_TOKEN]
        stub_argv += ["--fast-port", str(fast_port)]
        stub = procs.start("stub", stub_argv, run_dir / "stub.log")
        wait_until_ok(upstream + "/_bench/stats", "stub", stub)
        targets: dict[str, Target] = {}
        if "direct" in TARGETS:
            targets["direct"] = Target("direct", upstream, lambda: [stub.pid])
        if "proxy" in TARGETS:
            cfg = write_proxy_config(run_dir, proxy_port, upstream, jwks_url)
            proxy = procs.start(
                "proxy",
                ["taskset", "-c", str(SUT_CORE), PY, "-m", "proxy", "serve", "--config", str(cfg)],
                run_dir / "proxy.log",
            )
            wait_until_ok(f"http://127.0.0.1:{proxy_port}/readyz", "proxy", proxy)
            targets["proxy"] = Target("proxy", f"http://127.0.0.1:{proxy_port}", lambda: [proxy.pid])
        with (
            apache_peer(run_dir, apache_port, upstream, jwks_url)
            if "apache" in TARGETS
            else contextlib.nullcontext() as apache
        ):
            if apache is not None:
                targets["apache"] = apache
            result["checks"] = sanity(targets, upstream, hot)
            result["points"] = measure(targets, stub.pid, hot, pool, run_dir)
            pin(stub.pid, LOAD_CORE)
            if PROFILE and "proxy" in targets:
                result["profile"] = profile_proxy(targets["proxy"], hot, run_dir)
                for f, pct in result["profile"].get("split_pct", []):
                    log(f"profile {pct:5.1f}%  {f}")
            hot = fresh_hot()
            others(result, targets, stub.pid, hot, run_dir)
            result["micro"] = micro(jwks, pool)
            result["stub_stats"] = json.loads(http_get(upstream + "/_bench/stats")[1])
        for name in ("proxy",):
            procs.stop_one(name)  # the machine to the last two points
        if WORKERS and "proxy" in TARGETS:
            result["workers"] = workers_point(
                run_dir, procs, f"http://127.0.0.1:{fast_port}", jwks_url, fresh_hot()
            )
        if RAY and "proxy" in TARGETS:
            result["ray"] = guarded("real Ray", lambda: ray_point(run_dir, procs, jwks_url, fresh_hot()))
        result["targets"] = evaluate(result)
        result["duration_s"] = round(time.monotonic() - started, 1)
        result["machine"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    finally:
        procs.stop_all()
        if NICE and own_nice is not None:
            autogroup_nice("self", own_nice)
        if not KEEP:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            log(f"kept {run_dir}")
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "latest.md").write_text(markdown(result))
    (IMG / "bench.svg").write_text(svg_chart(result))
    if shutil.which("rsvg-convert"):
        subprocess.run(
            ["rsvg-convert", "-o", str(IMG / "bench.png"), str(IMG / "bench.svg")], check=False, timeout=30
        )
    print_table(result)
    log(
        f"done in {result['duration_s']} s; wrote {RESULTS / 'latest.json'}, {RESULTS / 'latest.md'}, "
        f"{IMG / 'bench.svg'}" + (f", {IMG / 'bench.png'}" if shutil.which("rsvg-convert") else "")
    )
    return 0


def guarded(what: str, measure_it: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A point that needs more than this script controls (a real Ray head): its failure is reported,
    not fatal."""
    try:
        return measure_it()
    except Exception as exc:  # noqa: BLE001 - reported in the results
        log(f"{what} point failed: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}


def others(result: dict[str, Any], targets: dict[str, Target], stub: int, hot: str, run_dir: Path) -> None:
    """Everything but the wrk points: bulk transfers, 1 GiB streams, Expect, idle WebSockets."""
    result["bulk"], result["streams"], result["expect"] = {}, {}, {}
    for name, t in targets.items():
        pin(stub, SUT_CORE if name == "direct" else LOAD_CORE)
        result["bulk"][name] = asyncio.run(bulk(t.url, hot))
        log(f"bulk {name}: {result['bulk'][name]}")
        if name != "apache":  # Apache's LimitRequestBody is 1 GiB: the peer is not the point here
            pid = stub if name == "direct" else t.pids()[0]
            result["streams"][name] = gib_stream(t.url, hot, pid, GIB_BYTES)
            log(f"1 GiB streams {name}: {result['streams'][name]}")
        result["expect"][name] = guarded(f"Expect via {name}", lambda t=t: expect_continue(t.url, hot))
        log(f"Expect: 100-continue {name}: {result['expect'][name]}")
    pin(stub, LOAD_CORE)
    if "proxy" in targets and WEBSOCKETS:
        proxy = targets["proxy"]
        result["websockets"] = asyncio.run(idle_websockets(proxy.url, hot, proxy.pids()[0], WEBSOCKETS))
        log(f"idle WebSockets: {result['websockets']}")


def sanity(targets: dict[str, Target], upstream: str, hot: str) -> dict[str, Any]:
    """Every target answers the stub's bytes for the hot token; the authenticating ones refuse without
    one; the proxy (when measured) hands Ray its token."""
    from bench.upstream import VERSION_BODY

    checks: dict[str, Any] = {"body_bytes": len(VERSION_BODY)}
    for name, t in targets.items():
        before = json.loads(http_get(upstream + "/_bench/stats")[1])
        status, body = http_get(t.url + SMALL_PATH, {TOKEN_HEADER: hot})
        if status != 200 or body != VERSION_BODY:
            raise RuntimeError(f"{name}: GET {SMALL_PATH} answered {status} {body[:200]!r}")
        after = json.loads(http_get(upstream + "/_bench/stats")[1])
        if name != "direct":
            status, _ = http_get(t.url + SMALL_PATH)
            if status != 401:
                raise RuntimeError(f"{name}: a request without a token answered {status}, not 401")
        checks[name] = "200 with token" + ("" if name == "direct" else ", 401 without")
        if name == "proxy":
            if after["with_ray_token"] - before["with_ray_token"] != 1:
                raise RuntimeError("the proxy did not hand Ray its token")
            checks["ray_token_injected_by_proxy"] = True
    return checks
