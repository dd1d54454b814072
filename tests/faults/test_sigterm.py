"""SIGTERM to the real process (`python -m proxy serve`): it stops accepting at once, lets what is in
flight finish within `shutdown_grace_seconds`, cuts what is still running after that, and exits 0 —
so that a pod's terminationGracePeriodSeconds above the grace period never ends in a SIGKILL."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from devkit.config import write_hardening_config
from devkit.ports import free_port
from devkit.ray_double import ASSERTION, PASS, RayDouble

ROOT = Path(__file__).resolve().parents[2]
STREAM = "/api/v0/logs/stream?node_id=n&filename=f"


class Proc:
    """The proxy as a process; always stopped by its pid."""

    def __init__(self, tmp: Path, jwks_url: str, upstream: str, grace: float) -> None:
        self.port = free_port()
        cfg = write_hardening_config(tmp, jwks_url, upstream, extra=f"shutdown_grace_seconds: {grace}\n")
        cfg.write_text(cfg.read_text().replace("listen: 127.0.0.1:18999", f"listen: 127.0.0.1:{self.port}"))
        self.stderr_path = tmp / "proxy.stderr"
        with (tmp / "proxy.stdout").open("wb") as out, self.stderr_path.open("wb") as err:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "proxy", "serve", "--config", str(cfg)],
                cwd=ROOT,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    async def ready(self, session: aiohttp.ClientSession) -> None:
        async with asyncio.timeout(30):  # start-up guard
            while True:
                assert self.popen.poll() is None, self.stderr
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}/readyz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)

    async def refusing(self) -> None:
        """Until a new connection is refused (the listener is closed)."""
        async with asyncio.timeout(10):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                except ConnectionRefusedError:
                    return
                writer.close()
                await asyncio.sleep(0.02)

    async def exit_code(self, guard: float = 30) -> int:
        waiting = asyncio.get_running_loop().run_in_executor(None, self.popen.wait)
        return int(await asyncio.wait_for(waiting, guard))

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()


@pytest.fixture
async def live(tmp_path: Path, key_server: Any, ray: RayDouble) -> AsyncIterator[Any]:
    procs: list[Proc] = []

    def start(grace: float) -> Proc:
        proc = Proc(tmp_path, key_server[1], ray.url, grace)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


def streaming(ray: RayDouble, release: asyncio.Event) -> asyncio.Event:
    """/api/v0/logs/stream writes one line, then the rest once `release` is set. Returns `started`."""
    started = asyncio.Event()

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b"line 0\n")
        started.set()
        await release.wait()
        for i in range(1, 5):
            await resp.write(f"line {i}\n".encode())
        return resp

    ray.overrides["/api/v0/logs/stream"] = stream
    return started


async def test_sigterm_lets_the_stream_in_flight_finish_then_exits_0(
    live: Any, ray: RayDouble, mint: Any
) -> None:
    release = asyncio.Event()
    started = streaming(ray, release)
    proc = live(grace=30)
    async with aiohttp.ClientSession() as session:
        await proc.ready(session)
        async with session.get(
            f"http://127.0.0.1:{proc.port}{STREAM}", headers={ASSERTION: mint(), **PASS}
        ) as r:
            assert r.status == 200
            assert await r.content.readline() == b"line 0\n"
            await asyncio.wait_for(started.wait(), 10)
            proc.popen.send_signal(signal.SIGTERM)
            await proc.refusing()
            assert proc.popen.poll() is None  # still serving the stream in flight
            release.set()
            rest = await asyncio.wait_for(r.content.read(), 10)
        assert rest == b"line 1\nline 2\nline 3\nline 4\n"
    assert await proc.exit_code() == 0
    assert "draining 1 request(s) in flight" in proc.stderr and "cutting" not in proc.stderr


async def test_sigterm_cuts_what_outlasts_the_grace_period_and_exits_0(
    live: Any, ray: RayDouble, mint: Any
) -> None:
    started = streaming(ray, asyncio.Event())  # never released
    proc = live(grace=1)
    async with aiohttp.ClientSession() as session:
        await proc.ready(session)
        ws = await session.ws_connect(
            f"http://127.0.0.1:{proc.port}/api/jobs/j/logs/tail", headers={ASSERTION: mint(), **PASS}
        )
        assert await ws.receive_str() == "log line 1"
        async with session.get(
            f"http://127.0.0.1:{proc.port}{STREAM}", headers={ASSERTION: mint(), **PASS}
        ) as r:
            assert await r.content.readline() == b"line 0\n"
            await asyncio.wait_for(started.wait(), 10)
            proc.popen.send_signal(signal.SIGTERM)
            with pytest.raises(aiohttp.ClientPayloadError):  # cut, visibly
                await asyncio.wait_for(r.content.read(), 30)
        msg = await asyncio.wait_for(ws.receive(), 30)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1001  # "going away", not a bare cut
        await ws.close()
    assert await proc.exit_code() == 0
    assert "grace period over: cutting 2 request(s)" in proc.stderr


async def test_drain_waits_for_the_quick_cuts_the_slow_and_is_bounded() -> None:
    """`drain` itself: requests that finish within the grace period are left alone; the rest are
    cancelled; one that refuses to unwind does not hold the shutdown beyond CUT_WAIT_SECONDS."""
    from proxy.app import drain

    async def quick() -> str:
        await asyncio.sleep(0.05)
        return "done"

    async def stubborn() -> None:
        for _ in range(100):
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # ignores cancellation, as a buggy handler might

    fast = asyncio.ensure_future(quick())
    slow = asyncio.ensure_future(asyncio.sleep(3600))
    bad = asyncio.ensure_future(stubborn())
    await asyncio.wait_for(drain({fast, slow, bad}, grace=0.5), 10)  # a guard, not a timing assertion
    assert fast.result() == "done" and slow.cancelled() and not bad.done()
    for _ in range(101):
        bad.cancel()
        await asyncio.sleep(0)
    assert bad.done()
