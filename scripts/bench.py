"""`make bench`: what ray-iap-proxy costs, measured in one run against the same loopback stub of Ray.

Targets, each in front of the same aiohttp stub (scripts/bench_upstream.py, its own process):

    direct   wrk -> stub                      the ceiling: one core of aiohttp answering
    proxy    wrk -> ray-iap-proxy -> stub     `python -m proxy serve --config ...`, a real process
    apache   wrk -> Apache+mod_oauth2 -> stub the peer (shared/peers/apache/start.sh, PROCESSES=1)

Layout on a 2-core machine (peers.md section 4): the system under test (the proxy, Apache, or for
`direct` the stub itself) is pinned to core 0; wrk, this script and the stub (when it is upstream of
a proxy) to core 1. The stub is moved between cores with sched_setaffinity, so every target talks to
the same stub process.

Measured: requests/s and p50/p90/p99 latency (wrk + a Lua script) for `GET /api/version` (a ~128 B
JSON answer) with one hot token at each concurrency; the same with a fresh token per request (every
request a cache miss: full ES256 verification) at the miss concurrencies; bulk MiB/s for a 1 MiB
download and a 16 MiB upload (aiohttp client); and in-process micro-timings of token verification.
CPU seconds used by the system under test are read from /proc, so a busy machine shows as less CPU
for the target instead of silently lower numbers.

Environment (all optional):
    BENCH_SECONDS=10        seconds per wrk point
    BENCH_CONCURRENCY=1,32,64
    BENCH_MISS_CONCURRENCY=1,32   fresh-token points ("" to skip)
    BENCH_WARMUP=1          seconds of warm-up per target before its first point
    BENCH_BULK_SECONDS=3    time budget for each bulk transfer measurement
    BENCH_TARGETS=direct,proxy,apache
    BENCH_APACHE_PEER=DIR   where start.sh/stop.sh live (default ../shared/peers/apache)
    BENCH_NICE=-10          scheduling priority of this run's processes (root only; 0 leaves it). Linux
                            shares CPU between sessions ("autogroups") first, so this sets the nice
                            value of the autogroup of this script (restored at the end) and of
                            Apache's (it daemonizes into its own session)
    BENCH_KEEP=1            keep the run directory under /tmp (logs, configs)
    BENCH_PROFILE=1         also sample the proxy with py-spy during an extra cached c=32 point and
                            list its hot spots (bench/results/proxy-profile.raw, latest.json "profile")

Writes bench/results/latest.json, bench/results/latest.md, bench/results/*.raw (wrk output, ignored
by git), docs/img/bench.svg and, where rsvg-convert exists, docs/img/bench.png.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import multiprocessing
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
IMG = ROOT / "docs" / "img"
PY = sys.executable

SUT_CORE, LOAD_CORE = 0, 1
EMAIL = "bench@example.com"
AUDIENCE = "/projects/111/global/backendServices/222"
TENANT = "bench"
RAY_TOKEN = "bench-ray-token"
SMALL_PATH = "/api/version"
DOWNLOAD_PATH = "/static/js/bench-1mib.js"
UPLOAD_PATH = "/api/packages/gcs/_ray_pkg_bench.zip"
DOWNLOAD_BYTES = 1 << 20
UPLOAD_BYTES = 16 << 20
TOKEN_HEADER = "x-goog-iap-jwt-assertion"
MAX_BULK_TRANSFERS = 200  # per measurement, whatever the time budget


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


def env_list(name: str, default: str) -> list[str]:
    return [x.strip() for x in os.environ.get(name, default).split(",") if x.strip()]


SECONDS = env_int("BENCH_SECONDS", 10)
CONCURRENCY = [int(c) for c in env_list("BENCH_CONCURRENCY", "1,32,64")]
MISS_CONCURRENCY = [int(c) for c in env_list("BENCH_MISS_CONCURRENCY", "1,32")]
WARMUP = env_int("BENCH_WARMUP", 1)
BULK_SECONDS = env_int("BENCH_BULK_SECONDS", 3)
TARGETS = env_list("BENCH_TARGETS", "direct,proxy,apache")
PROFILE = os.environ.get("BENCH_PROFILE") == "1"
NICE = env_int("BENCH_NICE", -10 if os.geteuid() == 0 else 0)


def autogroup_nice(pid: int | str, value: int | None = None) -> int | None:
    """Read (and with `value`, set) the nice value of `pid`'s autogroup; None where there is none."""
    path = Path(f"/proc/{pid}/autogroup")
    try:
        if value is not None:
            path.write_text(str(value))
        return int(path.read_text().split("nice")[1])
    except (OSError, IndexError, ValueError):
        return None


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------------
# processes: every one started here is recorded and stopped by its pid


@dataclass
class Started:
    name: str
    proc: subprocess.Popen[bytes]


class Processes:
    def __init__(self) -> None:
        self.started: list[Started] = []

    def start(self, name: str, argv: list[str], log_path: Path, **kw: Any) -> subprocess.Popen[bytes]:
        out = open(log_path, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, **kw)
        out.close()
        self.started.append(Started(name, proc))
        return proc

    def stop_all(self) -> None:
        for s in reversed(self.started):
            if s.proc.poll() is None:
                os.kill(s.proc.pid, signal.SIGTERM)
                try:
                    s.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    log(f"{s.name} (pid {s.proc.pid}) ignored SIGTERM for 15 s: SIGKILL")
                    os.kill(s.proc.pid, signal.SIGKILL)
                    s.proc.wait(timeout=5)
        self.started.clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 3.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until_ok(url: str, what: str, proc: subprocess.Popen[bytes] | None, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        try:
            status, body = http_get(url, timeout=1)
            if status == 200:
                return
            last = f"{status} {body[:200]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {seconds:g} s ({last})")


def pin(pid: int, core: int) -> None:
    """Move every thread of `pid` to `core`."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), {core})


# ---------------------------------------------------------------------------------------------------
# CPU accounting from /proc

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the comm field: state(0) ... utime(11) stime(12) cutime(13) cstime(14)
        total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / CLK_TCK


def children_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.append(int(entry))
    return out


def core_times() -> dict[int, tuple[int, int]]:
    """core -> (busy jiffies, total jiffies)"""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *vals = line.split()
            nums = [int(v) for v in vals[:8]]
            idle = nums[3] + nums[4]
            out[int(name[3:])] = (sum(nums) - idle, sum(nums))
    return out


def core_busy(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> dict[int, float]:
    busy = {}
    for core in before:
        db, dt = after[core][0] - before[core][0], after[core][1] - before[core][1]
        busy[core] = round(100.0 * db / dt, 1) if dt else 0.0
    return busy


# ---------------------------------------------------------------------------------------------------
# tokens

_MINT: dict[str, Any] = {}


def _mint_init(pem: bytes, header_payload: str) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    os.sched_setaffinity(0, {SUT_CORE, LOAD_CORE})
    _MINT["key"] = load_pem_private_key(pem, password=None)
    _MINT["input"] = header_payload


def _mint_batch(n: int) -> list[str]:
    """Re-sign dev.mint's header and claims: ECDSA signatures are randomised, so each token is a
    different string with the same claims (a cache miss and a full verification every time)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key, signing_input = _MINT["key"], _MINT["input"]
    data, alg, out = signing_input.encode(), ec.ECDSA(hashes.SHA256()), []
    for _ in range(n):
        r, s = decode_dss_signature(key.sign(data, alg))
        sig = base64.urlsafe_b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big")).rstrip(b"=")
        out.append(f"{signing_input}.{sig.decode()}")
    return out


class TokenPool:
    """Fresh tokens, each used once per target. Grown in parallel on both cores between points."""

    def __init__(self, pem: bytes, template: str) -> None:
        self.pem = pem
        self.header_payload = template.rsplit(".", 1)[0]
        self.tokens: list[str] = []
        self.cursor: dict[str, int] = {}

    def take(self, target: str, n: int) -> list[str]:
        start = self.cursor.get(target, 0)
        missing = start + n - len(self.tokens)
        if missing > 0:
            t0 = time.monotonic()
            batches = [missing // 8 + 1] * 8
            ctx = multiprocessing.get_context("fork")
            with ctx.Pool(2, initializer=_mint_init, initargs=(self.pem, self.header_payload)) as pool:
                for batch in pool.map(_mint_batch, batches):
                    self.tokens.extend(batch)
            log(f"minted {sum(batches)} fresh tokens in {time.monotonic() - t0:.1f} s")
        self.cursor[target] = start + n
        return self.tokens[start : start + n]


# ---------------------------------------------------------------------------------------------------
# wrk

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
    pids: Any  # () -> list[int]: the processes of the system under test


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
    reused_tokens: int = 0
    notes: list[str] = field(default_factory=list)


def run_wrk(target: Target, lua: str, concurrency: int, seconds: int, run_dir: Path, raw_name: str | None,
            mode: str) -> Point:
    script = run_dir / f"wrk-{target.name}-{mode}-{concurrency}.lua"
    script.write_text(lua)
    argv = ["taskset", "-c", str(LOAD_CORE), "wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s",
            "--timeout", "5s", "-s", str(script), target.url + SMALL_PATH]
    pids = target.pids()
    cpu0, cores0 = proc_cpu_seconds(pids), core_times()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    cpu1, cores1 = proc_cpu_seconds(pids), core_times()
    if raw_name is not None:
        (RESULTS / f"{raw_name}.raw").write_text(" ".join(argv) + "\n" + done.stdout + done.stderr)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
    r = json.loads(line.removeprefix("BENCH_JSON "))
    wall = r["duration_us"] / 1e6
    errors = {k: r[k] for k in ("connect", "read", "write", "status", "timeout") if r[k]}
    cpu = cpu1 - cpu0
    point = Point(
        target=target.name,
        mode=mode,
        concurrency=concurrency,
        seconds=round(wall, 2),
        requests=r["requests"],
        rps=round(r["requests"] / wall, 1),
        p50_ms=r["p50"] / 1000,
        p90_ms=r["p90"] / 1000,
        p99_ms=r["p99"] / 1000,
        max_ms=r["max"] / 1000,
        errors=errors,
        sut_cpu_pct=round(100 * cpu / wall, 1),
        core_busy_pct=core_busy(cores0, cores1),
        req_per_cpu_s=round(r["requests"] / cpu) if cpu > 0 else 0,
        reused_tokens=r["reused"],
    )
    if errors:
        point.notes.append(f"errors {errors}")
    others = point.core_busy_pct.get(SUT_CORE, 0.0) - point.sut_cpu_pct
    if others > 15:
        point.notes.append(f"core {SUT_CORE} shared: ~{others:.0f}% used by other processes")
    if r["reused"]:
        point.notes.append(f"{r['reused']} tokens reused (cache hits mixed in)")
    return point


# ---------------------------------------------------------------------------------------------------
# bulk transfers


async def bulk(url: str, token: str) -> dict[str, Any]:
    import aiohttp

    headers = {TOKEN_HEADER: token}
    payload = b"\xa5" * UPLOAD_BYTES
    out: dict[str, Any] = {}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        for kind in ("download", "upload"):
            times: list[float] = []
            start = time.monotonic()
            while len(times) < MAX_BULK_TRANSFERS and (
                len(times) < 3 or time.monotonic() - start < BULK_SECONDS
            ):
                t0 = time.perf_counter()
                if kind == "download":
                    n = 0
                    async with session.get(url + DOWNLOAD_PATH, headers=headers) as r:
                        if r.status != 200:
                            raise RuntimeError(f"download via {url}: {r.status}")
                        async for chunk in r.content.iter_chunked(1 << 16):
                            n += len(chunk)
                    if n != DOWNLOAD_BYTES:
                        raise RuntimeError(f"download via {url}: {n} bytes")
                else:
                    async with session.put(url + UPLOAD_PATH, headers=headers, data=payload) as r:
                        body = await r.json(content_type=None)
                        if r.status != 200 or body.get("bytes") != UPLOAD_BYTES:
                            raise RuntimeError(f"upload via {url}: {r.status} {body}")
                times.append(time.perf_counter() - t0)
            size = DOWNLOAD_BYTES if kind == "download" else UPLOAD_BYTES
            out[kind] = {
                "transfers": len(times),
                "mib_each": size / (1 << 20),
                "mib_per_s": round(len(times) * size / (1 << 20) / sum(times), 1),
                "median_ms": round(statistics.median(times) * 1000, 2),
            }
    return out


# ---------------------------------------------------------------------------------------------------
# micro-timings of the verification path, in this process, pinned to the SUT core


def micro(jwks: bytes, pool: TokenPool) -> dict[str, float]:
    """The proxy's own `Verifier.identify` (cache + PyJWT ES256 + claim checks), on the SUT core:
    CPU µs per call for fresh tokens (misses) and for the same tokens again (hits)."""
    from proxy.auth.keys import KeyStore
    from proxy.auth.verifier import Verifier
    from proxy.config import IapConfig

    async def fetch(_url: str) -> bytes:
        return jwks

    async def run() -> tuple[float, float]:
        store = KeyStore("http://127.0.0.1/jwks.json", fetch, 30)
        await store.refresh()
        verifier = Verifier(IapConfig(audiences=(AUDIENCE,)), store)
        tokens = pool.take("micro", 2000)
        t0 = time.thread_time()
        for tok in tokens:
            await verifier.identify(tok)
        miss = (time.thread_time() - t0) / len(tokens)
        t0 = time.thread_time()
        for _ in range(10):
            for tok in tokens:
                await verifier.identify(tok)
        hit = (time.thread_time() - t0) / (10 * len(tokens))
        assert verifier.misses == len(tokens) and verifier.hits == 10 * len(tokens)
        return miss, hit

    os.sched_setaffinity(0, {SUT_CORE})
    try:
        miss, hit = asyncio.run(run())
    finally:
        os.sched_setaffinity(0, {LOAD_CORE})
    return {"verify_us": round(miss * 1e6, 1), "cache_hit_us": round(hit * 1e6, 2),
            "verify_per_s": round(1 / miss)}


def profile_proxy(target: Target, hot: str, run_dir: Path) -> dict[str, Any]:
    """py-spy, on the load core, samples the proxy during an extra cached c=32 wrk point (it pauses the
    proxy briefly per sample: that point's rate is not a result)."""
    spy = Path(PY).with_name("py-spy")
    if not spy.exists():
        return {"skipped": "py-spy not installed in the venv"}
    pid = target.pids()[0]
    out = RESULTS / "proxy-profile.raw"
    seconds = max(3, min(SECONDS, 10))
    argv = ["taskset", "-c", str(LOAD_CORE), str(spy), "record", "--pid", str(pid), "--duration",
            str(seconds), "--rate", "200", "--format", "raw", "--output", str(out)]
    spy_proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        point = run_wrk(target, lua_hot(hot), 32, seconds, run_dir, None, "profiled")
    finally:
        try:
            spy_proc.wait(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            os.kill(spy_proc.pid, signal.SIGKILL)
            spy_proc.wait(timeout=5)
    if not out.exists():
        return {"skipped": "py-spy wrote nothing"}
    return {"rps_while_sampled": point.rps, **summarize_profile(out)}


def summarize_profile(raw: Path) -> dict[str, Any]:
    """Per function (line numbers folded): share of samples on top of the stack (self) and anywhere on
    it (inclusive), from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for f in set(frames):
            incl[f] = incl.get(f, 0) + count

    def top(d: dict[str, int], n: int) -> list[tuple[str, float]]:
        return [(f, round(100 * c / total, 1)) for f, c in sorted(d.items(), key=lambda kv: -kv[1])[:n]]

    return {"samples": total, "self_pct": top(own, 25), "inclusive_pct": top(incl, 60)}


# ---------------------------------------------------------------------------------------------------
# report


def fmt_ms(v: float) -> str:
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def fmt_k(v: float) -> str:
    return f"{v / 1000:.2f} k" if v < 10_000 else f"{v / 1000:.1f} k"


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
    lines += ["", "| c | proxy/direct req/s | proxy/apache req/s | proxy/direct p99 | proxy/apache p99 "
              "| proxy/apache req per CPU-s |", "|---:|---:|---:|---:|---:|---:|"]
    for c in result["config"]["concurrency"]:
        d, x, a = (pts.get((t, "cached", c)) for t in ("direct", "proxy", "apache"))
        lines.append(
            f"| {c} | {ratio(_get(x, 'rps'), _get(d, 'rps'))} | {ratio(_get(x, 'rps'), _get(a, 'rps'))} | "
            f"{ratio(_get(x, 'p99_ms'), _get(d, 'p99_ms'))} | "
            f"{ratio(_get(x, 'p99_ms'), _get(a, 'p99_ms'))} | "
            f"{ratio(_get(x, 'req_per_cpu_s'), _get(a, 'req_per_cpu_s'))} |"
        )
    if result["config"]["miss_concurrency"]:
        lines += ["", "| c | fresh/cached req/s, proxy | fresh/cached req/s, apache | "
                  "proxy p50 fresh − cached (ms) |", "|---:|---:|---:|---:|"]
        for c in result["config"]["miss_concurrency"]:
            xc, xf = pts.get(("proxy", "cached", c)), pts.get(("proxy", "fresh", c))
            ac, af = pts.get(("apache", "cached", c)), pts.get(("apache", "fresh", c))
            delta = f"{xf['p50_ms'] - xc['p50_ms']:.2f}" if xc and xf else "–"
            lines.append(f"| {c} | {ratio(xf and xf['rps'], xc and xc['rps'])} | "
                         f"{ratio(af and af['rps'], ac and ac['rps'])} | {delta} |")
    if result.get("bulk"):
        lines += ["", "| target | download 1 MiB: MiB/s | median ms | upload 16 MiB: MiB/s | median ms |",
                  "|---|---:|---:|---:|---:|"]
        for name, b in result["bulk"].items():
            lines.append(f"| {name} | {b['download']['mib_per_s']:,.0f} | {b['download']['median_ms']} | "
                         f"{b['upload']['mib_per_s']:,.0f} | {b['upload']['median_ms']} |")
    if result.get("micro"):
        m = result["micro"]
        lines += ["", f"In-process, one core, CPU time: `Verifier.identify` with a fresh token (cache miss: "
                  f"PyJWT ES256 + claim checks) {m['verify_us']} µs (≈{m['verify_per_s']:,}/s); "
                  f"with a cached token {m['cache_hit_us']} µs."]
    return "\n".join(lines) + "\n"


COLORS = {"direct": "#9e9e9e", "proxy": "#1f77b4", "apache": "#d62728"}


def svg_chart(result: dict[str, Any]) -> str:
    """Two panels, bars per target at each concurrency: requests/s and p99 latency. Fresh-token
    (cache-miss) points are drawn hatched beside the cached ones."""
    pts = result["points"]
    conc = sorted({p["concurrency"] for p in pts})
    series = [(t, m) for t in ("direct", "proxy", "apache") for m in ("cached", "fresh")
              if any(p["target"] == t and p["mode"] == m for p in pts)]
    lookup = {(p["target"], p["mode"], p["concurrency"]): p for p in pts}
    W, H, top, bottom, left = 980, 400, 56, 70, 64
    panel_w = (W - 2 * left - 60) / 2
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        'font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="white"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="black" stroke-width="2" opacity="0.35"/></pattern></defs>',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">'
        f'ray-iap-proxy vs direct and Apache+mod_oauth2 — GET /api/version (~128 B), 1 core each</text>',
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
        out.append(f'<text x="{x0 + panel_w / 2}" y="{y0 - 12}" text-anchor="middle" '
                   f'font-size="13">{title}</text>')
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
            out.append(f'<text x="{x0 + gi * group_w + group_w / 2}" y="{y0 + ph + 18}" '
                       f'text-anchor="middle">c={c}</text>')
            for si, (t, m) in enumerate(series):
                p = lookup.get((t, m, c))
                if p is None:
                    continue
                h = ph * scale(p[key])
                bx, by = gx + si * bar_w, y0 + ph - h
                fill = COLORS[t]
                out.append(f'<rect x="{bx:.1f}" y="{by:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
                           f'fill="{fill}"/>')
                if m == "fresh":
                    out.append(f'<rect x="{bx:.1f}" y="{by:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
                               f'fill="url(#hatch)" stroke="{fill}" stroke-width="1.5"/>')
                v = p[key]
                text = (f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}") if key == "rps" else fmt_ms(v)
                out.append(f'<text x="{bx + (bar_w - 2) / 2:.1f}" y="{by - 3:.1f}" text-anchor="middle" '
                           f'font-size="9">{text}</text>')
    lx = left
    for t, m in series:
        out.append(f'<rect x="{lx}" y="{H - 30}" width="14" height="14" fill="{COLORS[t]}"/>')
        if m == "fresh":
            out.append(f'<rect x="{lx}" y="{H - 30}" width="14" height="14" fill="url(#hatch)" '
                       f'stroke="{COLORS[t]}" stroke-width="1.5"/>')
        suffix = " (fresh token per request)" if m == "fresh" else "" if t == "direct" else " (cached token)"
        label = t + suffix
        out.append(f'<text x="{lx + 19}" y="{H - 19}">{label}</text>')
        lx += 30 + 7 * len(label)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def print_table(result: dict[str, Any]) -> None:
    print()
    print(f"{'target':<8} {'token':<7} {'c':>3} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
          f"{'SUT CPU%':>8} {'req/CPU-s':>10}  notes")
    for p in result["points"]:
        print(f"{p['target']:<8} {p['mode']:<7} {p['concurrency']:>3} {p['rps']:>9,.0f} "
              f"{fmt_ms(p['p50_ms']):>8} {fmt_ms(p['p90_ms']):>8} {fmt_ms(p['p99_ms']):>8} "
              f"{p['sut_cpu_pct']:>8.0f} {p['req_per_cpu_s']:>10,}  {'; '.join(p['notes'])}")
    print()
    print(markdown(result).split("\n\n", 1)[1] if "\n\n" in markdown(result) else "")


# ---------------------------------------------------------------------------------------------------
# the run


def preflight() -> list[str]:
    problems = []
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        problems.append("needs Linux and at least 2 usable cores")
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            problems.append(f"{tool} not found (apt-get install -y --no-install-recommends wrk util-linux)")
    return problems


def apache_dir() -> Path | None:
    for cand in (os.environ.get("BENCH_APACHE_PEER"), ROOT.parent / "shared/peers/apache",
                 Path("/work/shared/peers/apache")):
        if cand and (Path(cand) / "start.sh").exists():
            return Path(cand)
    return None


@contextlib.contextmanager
def apache_peer(run_dir: Path, listen_port: int, upstream: str, jwks_url: str) -> Iterator[Target | None]:
    peer = apache_dir()
    if peer is None or shutil.which("apache2") is None:
        log("Apache peer skipped: needs shared/peers/apache and apache2 + libapache2-mod-oauth2 "
            "(apt-get install -y --no-install-recommends apache2 libapache2-mod-oauth2)")
        yield None
        return
    adir = run_dir / "apache"
    argv = ["taskset", "-c", str(SUT_CORE), str(peer / "start.sh"), str(adir), f"127.0.0.1:{listen_port}",
            upstream, jwks_url, AUDIENCE]
    master: int | None = None
    pids: list[int] = []
    try:
        subprocess.run(argv, check=True, timeout=30, capture_output=True)
        master = int((adir / "httpd.pid").read_text().strip())
        if NICE:
            autogroup_nice(master, NICE)  # it left our session when it daemonized

        def sut_pids() -> list[int]:
            assert master is not None
            kids = children_of(master)
            pids.extend(k for k in kids if k not in pids)
            return [master, *kids]

        url = f"http://127.0.0.1:{listen_port}"
        sut_pids()
        yield Target("apache", url, sut_pids)
    finally:
        if (adir / "httpd.conf").exists():
            subprocess.run([str(peer / "stop.sh"), str(adir)], timeout=30, capture_output=True, check=False)
        if master is not None:
            everyone = [master, *pids]
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in everyone):
                time.sleep(0.1)
            left = [p for p in everyone if Path(f"/proc/{p}").exists()]
            if left:
                log(f"Apache processes {left} still alive after stop.sh: SIGKILL by pid")
                for p in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p, signal.SIGKILL)


def write_proxy_config(run_dir: Path, port: int, upstream: str, jwks_url: str) -> Path:
    (run_dir / "policy.yaml").write_text(textwrap.dedent(f"""\
        roles:
          bench: [view, submit]
        bindings:
          - tenant: {TENANT}
            role: bench
            members: ["user:{EMAIL}"]
        """))
    (run_dir / "ray_token").write_text(RAY_TOKEN + "\n")
    cfg = run_dir / "proxy.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        listen: 127.0.0.1:{port}
        upstream: {upstream}
        tenant: {TENANT}
        iap:
          audiences: ["{AUDIENCE}"]
          jwks_url: {jwks_url}
        policy_file: policy.yaml
        ray_token_file: ray_token
        """))
    return cfg


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cores": os.cpu_count(),
                            "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3]}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            info["cpu"] = line.split(":", 1)[1].strip()
            break
    for argv, key in ((["apache2", "-v"], "apache"), (["wrk", "-v"], "wrk")):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            text = subprocess.run(argv, capture_output=True, text=True, timeout=5).stdout
            info[key] = text.splitlines()[0] if text else ""
    import aiohttp

    info["python"] = sys.version.split()[0]
    info["aiohttp"] = aiohttp.__version__
    info["event_loop"] = "asyncio (uvloop not used)"
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
        "config": {"seconds": SECONDS, "concurrency": CONCURRENCY, "miss_concurrency": MISS_CONCURRENCY,
                   "warmup_s": WARMUP, "bulk_seconds": BULK_SECONDS, "targets": TARGETS,
                   "autogroup_nice": autogroup_nice("self"),
                   "layout": f"system under test on core {SUT_CORE}; wrk, this script and the upstream stub "
                             f"on core {LOAD_CORE} (for 'direct' the stub is the system under test)"},
        "points": [],
    }
    log(f"run dir {run_dir}; {SECONDS} s per point; concurrency {CONCURRENCY}, "
        f"fresh-token {MISS_CONCURRENCY}; load average {result['machine']['loadavg_at_start']}")
    try:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        jwks = json.dumps(dev.jwks(key)).encode()
        (run_dir / "jwks.json").write_bytes(jwks)
        hot = dev.mint(key, EMAIL, AUDIENCE, lifetime=600)
        pool = TokenPool(pem, hot)

        stub_port, jwks_port, proxy_port, apache_port = (free_port() for _ in range(4))
        upstream, jwks_url = f"http://127.0.0.1:{stub_port}", f"http://127.0.0.1:{jwks_port}/jwks.json"
        stub = procs.start("stub", [PY, "-m", "scripts.bench_upstream", "--port", str(stub_port),
                                    "--jwks-port", str(jwks_port), "--jwks-file", str(run_dir / "jwks.json"),
                                    "--ray-token", RAY_TOKEN], run_dir / "stub.log")
        wait_until_ok(upstream + "/_bench/stats", "stub", stub)
        targets: dict[str, Target] = {}
        if "direct" in TARGETS:
            targets["direct"] = Target("direct", upstream, lambda: [stub.pid])
        if "proxy" in TARGETS:
            cfg = write_proxy_config(run_dir, proxy_port, upstream, jwks_url)
            proxy = procs.start("proxy", ["taskset", "-c", str(SUT_CORE), PY, "-m", "proxy", "serve",
                                          "--config", str(cfg)], run_dir / "proxy.log")
            wait_until_ok(f"http://127.0.0.1:{proxy_port}/readyz", "proxy", proxy)
            targets["proxy"] = Target("proxy", f"http://127.0.0.1:{proxy_port}", lambda: [proxy.pid])
        with apache_peer(run_dir, apache_port, upstream, jwks_url) if "apache" in TARGETS \
                else contextlib.nullcontext() as apache:
            if apache is not None:
                targets["apache"] = apache
            result["checks"] = sanity(targets, upstream, hot)
            result["points"] = measure(targets, upstream, stub.pid, hot, pool, run_dir)
            if PROFILE and "proxy" in targets:
                pin(stub.pid, LOAD_CORE)
                result["profile"] = profile_proxy(targets["proxy"], hot, run_dir)
                for f, pct in result["profile"].get("self_pct", [])[:15]:
                    log(f"profile self {pct:5.1f}%  {f}")
            result["bulk"] = {}
            for name, t in targets.items():
                pin(stub.pid, SUT_CORE if name == "direct" else LOAD_CORE)
                result["bulk"][name] = asyncio.run(bulk(t.url, hot))
                log(f"bulk {name}: {result['bulk'][name]}")
            pin(stub.pid, LOAD_CORE)
            result["micro"] = micro(jwks, pool)
            stats = json.loads(http_get(upstream + "/_bench/stats")[1])
            result["stub_stats"] = stats
        result["duration_s"] = round(time.monotonic() - started, 1)
        result["machine"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    finally:
        procs.stop_all()
        if NICE and own_nice is not None:
            autogroup_nice("self", own_nice)
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            log(f"kept {run_dir}")
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "latest.md").write_text(markdown(result))
    (IMG / "bench.svg").write_text(svg_chart(result))
    if shutil.which("rsvg-convert"):
        subprocess.run(["rsvg-convert", "-o", str(IMG / "bench.png"), str(IMG / "bench.svg")],
                       check=False, timeout=30)
    print_table(result)
    log(f"done in {result['duration_s']} s; wrote {RESULTS / 'latest.json'}, {RESULTS / 'latest.md'}, "
        f"{IMG / 'bench.svg'}" + (f", {IMG / 'bench.png'}" if shutil.which("rsvg-convert") else ""))
    return 0


def sanity(targets: dict[str, Target], upstream: str, hot: str) -> dict[str, Any]:
    """Every target answers the stub's bytes for the hot token; the authenticating ones refuse without
    one; the proxy hands Ray its token."""
    from scripts.bench_upstream import VERSION_BODY

    checks: dict[str, Any] = {"body_bytes": len(VERSION_BODY)}
    before = json.loads(http_get(upstream + "/_bench/stats")[1])
    for name, t in targets.items():
        status, body = http_get(t.url + SMALL_PATH, {TOKEN_HEADER: hot})
        if status != 200 or body != VERSION_BODY:
            raise RuntimeError(f"{name}: GET {SMALL_PATH} answered {status} {body[:200]!r}")
        if name != "direct":
            status, _ = http_get(t.url + SMALL_PATH)
            if status != 401:
                raise RuntimeError(f"{name}: a request without a token answered {status}, not 401")
        checks[name] = "200 with token" + ("" if name == "direct" else ", 401 without")
    after = json.loads(http_get(upstream + "/_bench/stats")[1])
    if "proxy" in targets and after["with_ray_token"] - before["with_ray_token"] != 1:
        raise RuntimeError("the proxy did not hand Ray its token")
    checks["ray_token_injected_by_proxy"] = True
    return checks


def log_point(p: Point) -> None:
    log(f"{p.target:<6} {p.mode:<6} c={p.concurrency:<3} {p.rps:>8,.0f} req/s  p50 {p.p50_ms:.2f} ms  "
        f"p99 {p.p99_ms:.2f} ms  SUT CPU {p.sut_cpu_pct:.0f}%  {'; '.join(p.notes)}")


def measure(targets: dict[str, Target], upstream: str, stub_pid: int, hot: str, pool: TokenPool,
            run_dir: Path) -> list[dict[str, Any]]:
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


if __name__ == "__main__":
    sys.exit(main())
