"""`serve --workers N`: real processes on one port. Every worker serves; the supervisor's /metrics has
each worker's samples; a worker that dies is restarted (and too many deaths stop the supervisor); the
supervisor dying takes its workers with it; SIGTERM drains every worker's requests in flight; the Ray
Client listener runs once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from devkit.config import ROOT, write_hardening_config
from devkit.ports import free_ports
from devkit.ray_double import ASSERTION, PASS, RayDouble
from devkit.util import wait_until
from proxy.workers import WORKER_ENV

SLOW = "/api/v0/logs/file"


class Supervised:
    """`python -m proxy serve --workers N` as a process, stopped by pid."""

    def __init__(self, tmp: Path, jwks_url: str, upstream: str, workers: int, extra: str = "") -> None:
        self.port, self.metrics_port, self.grpc_port = free_ports(3)
        cfg = write_hardening_config(tmp, jwks_url, upstream, extra)
        text = cfg.read_text().replace("listen: 127.0.0.1:18999", f"listen: 127.0.0.1:{self.port}")
        cfg.write_text(text + f"metrics_listen: 127.0.0.1:{self.metrics_port}\nshutdown_grace_seconds: 5\n")
        self.log = tmp / "supervisor.log"
        argv = [sys.executable, "-m", "proxy", "serve", "--config", str(cfg), "--workers", str(workers)]
        env = {k: v for k, v in os.environ.items() if k != WORKER_ENV}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=out, env=env)
        self.url = f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[int]:
        """The supervisor's children."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{self.metrics_port}/metrics") as r:
            return await r.text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
async def supervised(
    tmp_path: Path, key_server: tuple[Any, str], stub_ray: tuple[RayDouble, str]
) -> AsyncIterator[Any]:
    made: list[Supervised] = []

    async def make(workers: int = 2, extra: str = "") -> Supervised:
        sup = Supervised(tmp_path, key_server[1], stub_ray[1], workers, extra)
        made.append(sup)
        await wait_until(lambda: sup.text().count("ray-iap-proxy listening") >= workers, guard=60)
        return sup

    yield make
    for sup in made:
        pids = sup.workers()
        sup.stop()
        await wait_until(lambda p=pids: not alive(p), guard=30)


def alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


async def get(url: str, mint: Any, path: str = "/api/version") -> int:
    # a new connection each time: SO_REUSEPORT spreads connections, not requests
    async with aiohttp.ClientSession() as s, s.get(url + path, headers={ASSERTION: mint(ROOT), **PASS}) as r:
        await r.read()
        return r.status


async def test_every_worker_serves_on_the_one_port(supervised: Any, mint: Any) -> None:
    sup = await supervised(workers=2)
    assert len(sup.workers()) == 2
    statuses = [await get(sup.url, mint) for _ in range(40)]
    assert statuses == [200] * 40
    metrics = await sup.metrics()
    assert "ray_iap_proxy_workers_scraped 2.0" in metrics
    for worker in ("0", "1"):  # both took connections (the chance that 40 all hash to one is 2^-39)
        assert f'transport="http",verb="view",worker="{worker}"}}' in metrics


async def test_a_crashed_worker_is_restarted(supervised: Any, mint: Any) -> None:
    sup = await supervised(workers=2)
    victim, survivor = sup.workers()
    os.kill(victim, signal.SIGKILL)
    await wait_until(lambda: len(sup.workers()) == 2 and victim not in sup.workers(), guard=30)
    await wait_until(lambda: sup.text().count("ray-iap-proxy listening") >= 3, guard=30)
    assert survivor in sup.workers()
    assert f"(pid {victim}) exited with -9" in sup.text() and "restarting worker" in sup.text()
    assert [await get(sup.url, mint) for _ in range(10)] == [200] * 10


async def test_too_many_crashes_stop_the_supervisor(supervised: Any) -> None:
    sup = await supervised(workers=2)
    for _ in range(12):  # more than MAX_RESTARTS within the window; bounded
        if sup.proc.poll() is not None:
            break
        for pid in sup.workers():
            os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.5)
    await wait_until(lambda: sup.proc.poll() is not None, guard=30)
    assert sup.proc.returncode == 1 and "worker restarts in" in sup.text()


async def test_workers_die_with_their_supervisor(supervised: Any) -> None:
    sup = await supervised(workers=2)
    pids = sup.workers()
    sup.proc.kill()  # SIGKILL: the supervisor cannot pass anything on
    sup.proc.wait(10)
    await wait_until(lambda: not alive(pids), guard=30)


async def test_sigterm_drains_every_worker(
    supervised: Any, mint: Any, stub_ray: tuple[RayDouble, str]
) -> None:
    double, _ = stub_ray
    started = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        started.set()
        await asyncio.sleep(1.0)
        return web.Response(text="finished")

    double.overrides[SLOW] = slow
    sup = await supervised(workers=2)
    pids = sup.workers()
    async with aiohttp.ClientSession() as s:
        pending = asyncio.ensure_future(
            s.get(sup.url + SLOW + "?node_id=n&filename=f", headers={ASSERTION: mint(ROOT), **PASS})
        )
        await asyncio.wait_for(started.wait(), 20)
        sup.proc.send_signal(signal.SIGTERM)
        response = await asyncio.wait_for(pending, 20)
        assert response.status == 200 and await response.text() == "finished"
    await wait_until(lambda: sup.proc.poll() is not None, guard=30)
    assert sup.proc.returncode == 0 and "all workers stopped" in sup.text()
    assert not alive(pids)


async def test_the_ray_client_listener_runs_in_one_worker(supervised: Any, mint: Any) -> None:
    port, ray_client = free_ports(2)
    extra = f"client_listen: 127.0.0.1:{port}\nclient_upstream: 127.0.0.1:{ray_client}\n"
    sup = await supervised(workers=2, extra=extra)
    assert sup.text().count("Ray Client (gRPC) listening") == 1
    assert len(sup.workers()) == 2 and "exited with" not in sup.text()
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
