"""Soak: mixed traffic through the real proxy process for a bounded time; zero errors other than the
expected denials, and flat memory.

    python -m scripts.soak [--seconds 120] [--workers 16] [--max-growth-mib 24]

The proxy runs as `python -m proxy serve` (its own process, so its memory is its own) in front of a
recording Ray double and a loopback key server, both in this process. Workers loop over a weighted
mix until the time is up: API reads and job submissions, uploads and downloads checked by sha256,
streamed log reads, WebSocket log tails, and five kinds of request that must be refused (wrong verb,
no credentials, internal route, non-canonical target, cross-site write). A refused request that
reaches Ray is an error (the double's tripwire), so is any unexpected status, exception or checksum.

Memory is the proxy's resident set (/proc/PID/status), sampled every second after a warm-up; "flat"
means the median of the last fifth exceeds the median of the first fifth by less than
--max-growth-mib. At the end the proxy gets SIGTERM and must exit 0. Exit status: 0 when all holds.
Only loopback; every process started here is stopped here by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec
from yarl import URL

from devkit.config import AUDIENCE, write_hardening_config
from devkit.keys import KeyServer
from devkit.ports import free_port
from devkit.ray_double import ASSERTION, PASS, RayDouble
from devkit.util import blob
from proxy import dev

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = "/api/packages/{protocol}/{package_name}"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def start_proxy(cfg: Path, err_path: Path) -> subprocess.Popen[bytes]:
    """`python -m proxy serve`; access records (stdout) are discarded, its log kept in `err_path`."""
    with err_path.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--config", str(cfg)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )


# -- the Ray double's answers for the soak's routes ------------------------------------------------


def install_routes(ray: RayDouble) -> None:
    async def packages(request: web.Request) -> web.StreamResponse:
        if request.method != "GET":
            return await ray.echo(request)
        _, seed, size = request.match_info["package_name"].removesuffix(".zip").split("-")
        data = blob(int(size), int(seed))
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(0, len(data), 65_536):
            await resp.write(data[i : i + 65_536])
        return resp

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(int(request.query.get("lines", "20"))):
            await resp.write(f"line {i}\n".encode())
            await asyncio.sleep(0.001)
        return resp

    ray.overrides[PACKAGES] = packages
    ray.overrides["/api/v0/logs/stream"] = stream


# -- the traffic -------------------------------------------------------------------------------------


class Traffic:
    def __init__(self, session: aiohttp.ClientSession, base: str, key: ec.EllipticCurvePrivateKey) -> None:
        self.session, self.base, self.key = session, base, key
        self.tokens: dict[str, tuple[float, str]] = {}
        self.rng = random.Random(7)
        self.n = 0

    def token(self, email: str) -> str:
        minted, token = self.tokens.get(email, (0.0, ""))
        if time.monotonic() - minted > 300:  # IAP's tokens live 10 minutes: renew as IAP would
            token = dev.mint(self.key, email, AUDIENCE)
            self.tokens[email] = (time.monotonic(), token)
        return token

    def h(
        self, email: str | None = "alice@example.com", allowed: bool = True, **extra: str
    ) -> dict[str, str]:
        headers = dict(extra)
        if email:
            headers[ASSERTION] = self.token(email)
        if allowed:
            headers.update(PASS)
        return headers

    async def status(self, method: str, path: str, expect: int, **kw: Any) -> None:
        async with self.session.request(method, URL(self.base + path, encoded=True), **kw) as r:
            await r.read()
            if r.status != expect:
                raise AssertionError(f"{method} {path[:60]}: {r.status}, expected {expect}")

    async def api(self) -> None:
        await self.status("GET", "/api/jobs/", 200, headers=self.h())

    async def submit(self) -> None:
        await self.status("POST", "/api/jobs/", 200, headers=self.h(), json={"entrypoint": "python x.py"})

    async def upload(self) -> None:
        self.n += 1
        data = blob(self.rng.randint(64 << 10, 1 << 20), self.n)
        async with self.session.put(
            f"{self.base}/api/packages/gcs/up-{self.n}.zip", headers=self.h(), data=data
        ) as r:
            answer = await r.json()
        if r.status != 200 or answer["sha256"] != hashlib.sha256(data).hexdigest():
            raise AssertionError(f"upload: {r.status}, checksum {answer.get('sha256')}")

    async def download(self) -> None:
        seed, size = self.rng.randint(0, 1 << 30), self.rng.randint(64 << 10, 1 << 20)
        digest = hashlib.sha256()
        async with self.session.get(
            f"{self.base}/api/packages/gcs/dl-{seed}-{size}.zip", headers=self.h()
        ) as r:
            async for chunk in r.content.iter_any():
                digest.update(chunk)
        if r.status != 200 or digest.hexdigest() != hashlib.sha256(blob(size, seed)).hexdigest():
            raise AssertionError(f"download: {r.status}, checksum mismatch")

    async def stream(self) -> None:
        async with self.session.get(
            f"{self.base}/api/v0/logs/stream?node_id=n&filename=f&lines=20", headers=self.h()
        ) as r:
            body = await r.read()
        lines = body.count(b"\n")
        if r.status != 200 or lines != 20:
            raise AssertionError(f"stream: {r.status}, {lines} lines")

    async def tail(self) -> None:
        async with self.session.ws_connect(
            f"{self.base}/api/jobs/raysubmit_1/logs/tail", headers=self.h()
        ) as ws:
            if await ws.receive_str() != "log line 1":
                raise AssertionError("tail: no first line")
            for i in range(5):
                await ws.send_str(f"m{i}")
                if await ws.receive_str() != f"echo:m{i}":
                    raise AssertionError("tail: echo mismatch")

    async def denied_verb(self) -> None:
        bob = self.h("bob@example.com", allowed=False)
        await self.status("POST", "/api/jobs/", 403, headers=bob, json={})

    async def denied_unauthenticated(self) -> None:
        await self.status("GET", "/api/jobs/", 401, headers=self.h(None, allowed=False))

    async def denied_internal(self) -> None:
        await self.status("GET", "/test/dump", 403, headers=self.h(allowed=False))

    async def denied_target(self) -> None:
        await self.status("GET", "/api/jobs/%2e%2e/x", 400, headers=self.h(allowed=False))

    async def denied_cross_site(self) -> None:
        await self.status(
            "POST",
            "/api/jobs/",
            403,
            json={},
            headers=self.h(allowed=False, Origin="https://evil.example.net"),
        )

    def mix(self) -> list[tuple[str, Callable[[], Awaitable[None]], int]]:
        return [
            ("api", self.api, 25),
            ("submit", self.submit, 5),
            ("upload", self.upload, 6),
            ("download", self.download, 6),
            ("stream", self.stream, 6),
            ("tail", self.tail, 4),
            ("denied-verb", self.denied_verb, 8),
            ("denied-unauthenticated", self.denied_unauthenticated, 8),
            ("denied-internal", self.denied_internal, 8),
            ("denied-target", self.denied_target, 8),
            ("denied-cross-site", self.denied_cross_site, 8),
        ]


async def worker(
    traffic: Traffic, until: float, done: Counter[str], errors: Counter[str], samples: list[str], seed: int
) -> None:
    rng = random.Random(seed)
    mix = traffic.mix()
    names, calls, weights = zip(*mix, strict=True)
    while time.monotonic() < until:
        i = rng.choices(range(len(mix)), weights)[0]
        try:
            async with asyncio.timeout(30):
                await calls[i]()
            done[names[i]] += 1
        except Exception as exc:  # every failure is counted and a few are shown
            errors[names[i]] += 1
            if len(samples) < 10:
                samples.append(f"{names[i]}: {type(exc).__name__}: {exc}"[:300])


async def soak(seconds: float, workers: int, max_growth: float) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="ray-iap-soak-"))
    key = ec.generate_private_key(ec.SECP256R1())
    keys = TestServer(KeyServer([key]).app(), host="127.0.0.1")
    await keys.start_server()
    ray = RayDouble()
    install_routes(ray)
    await ray.start()
    port, metrics_port = free_port(), free_port()
    extra = f"metrics_listen: 127.0.0.1:{metrics_port}\nshutdown_grace_seconds: 10\n"
    cfg = write_hardening_config(tmp, str(keys.make_url("/jwks.json")), ray.url, extra=extra)
    cfg.write_text(cfg.read_text().replace("listen: 127.0.0.1:18999", f"listen: 127.0.0.1:{port}"))
    err_path = tmp / "proxy.stderr"
    proc = start_proxy(cfg, err_path)
    done: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    samples: list[str] = []
    memory: list[float] = []
    exit_code: int | None = None
    metrics: dict[str, float] = {}
    try:
        base = f"http://127.0.0.1:{port}"
        connector = aiohttp.TCPConnector(limit=workers)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with asyncio.timeout(30):
                while True:
                    try:
                        async with session.get(base + "/readyz") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        pass
                    if proc.poll() is not None:
                        raise RuntimeError(err_path.read_text()[-2000:])
                    await asyncio.sleep(0.1)
            traffic = Traffic(session, base, key)
            start = time.monotonic()
            until = start + seconds
            warm = start + min(10.0, seconds / 5)

            async def sample() -> None:
                while time.monotonic() < until:
                    await asyncio.sleep(1)
                    if time.monotonic() >= warm:
                        memory.append(rss_mib(proc.pid))

            async with asyncio.TaskGroup() as tg:
                tg.create_task(sample())
                for w in range(workers):
                    tg.create_task(worker(traffic, until, done, errors, samples, seed=w))
            async with session.get(f"http://127.0.0.1:{metrics_port}/metrics") as r:
                for line in (await r.text()).splitlines():
                    if line and not line.startswith("#"):
                        name, value = line.rsplit(" ", 1)
                        metrics[name] = float(value)
        proc.send_signal(signal.SIGTERM)
        exit_code = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await ray.close()
        await keys.close()

    fifth = max(1, len(memory) // 5)
    first, last = statistics.median(memory[:fifth]), statistics.median(memory[-fifth:])
    violations = len(ray.violations)
    denials = sum(v for k, v in done.items() if k.startswith("denied"))
    report = {
        "seconds": seconds,
        "workers": workers,
        "requests": sum(done.values()) + sum(errors.values()),
        "ok": sum(done.values()) - denials,
        "expected_denials": denials,
        "errors": sum(errors.values()),
        "denials_reaching_ray": violations,
        "by_kind": dict(sorted(done.items())),
        "errors_by_kind": dict(errors),
        "error_samples": samples,
        "rss_mib": {
            "first_fifth_median": round(first, 1),
            "last_fifth_median": round(last, 1),
            "min": round(min(memory), 1),
            "max": round(max(memory), 1),
            "samples": len(memory),
        },
        "proxy_metrics_after": {
            k.removeprefix("ray_iap_proxy_"): v for k, v in metrics.items() if "requests_total" not in k
        },
        "sigterm_exit_code": exit_code,
    }
    print(json.dumps(report, indent=2))
    flat = last - first < max_growth
    ok = not errors and not violations and flat and exit_code == 0
    print(
        f"soak: {report['requests']} requests in {seconds:g} s, {report['errors']} errors, "
        f"{denials} expected denials, RSS {first:.1f} -> {last:.1f} MiB "
        f"({'flat' if flat else 'GROWING'}), exit {exit_code}: {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=120)
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--max-growth-mib", type=float, default=24)
    args = p.parse_args()
    return asyncio.run(soak(args.seconds, args.workers, args.max_growth_mib))


if __name__ == "__main__":
    sys.exit(main())
