"""Ray misbehaving: refusing connections, resetting before or during an answer, answering slowly or
not at all, talking garbage, restarting. Each ends in a clean 502/504 (or, once an answer has started,
a visibly truncated one), never a hung client, and leaves no task or socket behind."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from devkit.ports import free_port
from devkit.ray_double import ASSERTION, PASS, RayDouble
from devkit.util import wait_until
from proxy.http.pipeline import PROXY

LOGS = "/api/v0/logs/file?node_id=n&filename=f"
LOGS_ROUTE = "/api/v0/logs/file"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def leaves_nothing(proxy: TestClient, fds: int, tasks: int) -> None:
    """Nothing in flight; once the proxy is closed, no more sockets or tasks than before it started."""
    await wait_until(lambda: not proxy.server.app[PROXY].inflight)
    await proxy.close()
    await wait_until(lambda: open_fds() <= fds and len(asyncio.all_tasks()) <= tasks)


async def _abort_at_once(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.abort()
    return web.Response()


async def _abort_mid_answer(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    for i in range(3):
        await resp.write(f"line {i}\n".encode())  # each write waits for the transport to take it
    assert request.transport is not None
    request.transport.abort()
    return resp


async def _never_answers(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(3600)  # cancelled when the proxy hangs up
    raise AssertionError("unreachable")


async def _stalls_mid_answer(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    await resp.write(b"line 0\n")
    await asyncio.sleep(3600)
    return resp


def _truncated(length: int) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(length)})
        await resp.prepare(request)
        await resp.write(b"x" * 10)
        assert request.transport is not None
        request.transport.close()
        return resp

    return handler


BEFORE_ANSWER: dict[str, tuple[Callable[[web.Request], Awaitable[web.StreamResponse]], int, str]] = {
    "reset-before-answer": (_abort_at_once, 502, "Ray failed mid-response"),
    "never-answers": (_never_answers, 504, "Ray did not answer in time"),
    # a small answer is read whole before it is sent: a short one is a clean 502, not a cut
    "short-small-body": (_truncated(1000), 502, "Ray failed mid-response"),
}
DURING_ANSWER = {
    "reset-mid-answer": _abort_mid_answer,
    "stalls-mid-answer": _stalls_mid_answer,
    "short-large-body": _truncated(1_000_000),
}


@pytest.mark.parametrize("handler, status, reason", BEFORE_ANSWER.values(), ids=BEFORE_ANSWER.keys())
async def test_failure_before_the_answer_is_a_clean_5xx(
    make_proxy: Any, ray: RayDouble, mint: Any, handler: Any, status: int, reason: str
) -> None:
    fds, tasks = open_fds(), len(asyncio.all_tasks())
    ray.overrides[LOGS_ROUTE] = handler
    proxy = await make_proxy(extra="limits:\n  upstream_read_timeout_seconds: 1\n")
    async with asyncio.timeout(20):  # a hang guard only
        r = await proxy.get(LOGS, headers={ASSERTION: mint(), **PASS})
        body = await r.json()
    assert (
        r.status == status
        and body["reason"] == reason
        and body["error"] in ("bad_gateway", "gateway_timeout")
    )
    await leaves_nothing(proxy, fds, tasks)


@pytest.mark.parametrize("handler", DURING_ANSWER.values(), ids=DURING_ANSWER.keys())
async def test_failure_during_the_answer_is_a_visible_cut(
    make_proxy: Any, ray: RayDouble, mint: Any, handler: Any
) -> None:
    fds, tasks = open_fds(), len(asyncio.all_tasks())
    ray.overrides[LOGS_ROUTE] = handler
    proxy = await make_proxy(extra="limits:\n  upstream_read_timeout_seconds: 1\n")
    async with asyncio.timeout(20):
        r = await proxy.get(LOGS, headers={ASSERTION: mint(), **PASS})
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):  # never mistaken for a complete answer
            await r.read()
    await leaves_nothing(proxy, fds, tasks)


async def test_ray_refusing_connections_is_502(make_proxy: Any, mint: Any) -> None:
    fds, tasks = open_fds(), len(asyncio.all_tasks())
    proxy = await make_proxy(upstream=f"http://127.0.0.1:{free_port()}")
    for _ in range(3):
        r = await proxy.get("/api/jobs/", headers={ASSERTION: mint()})
        assert r.status == 502 and (await r.json())["reason"] == "Ray is not reachable"
    assert (await proxy.get("/readyz")).status == 503
    await leaves_nothing(proxy, fds, tasks)


async def test_ray_talking_garbage_is_502(make_proxy: Any, mint: Any) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        fds, tasks = open_fds(), len(asyncio.all_tasks())
        proxy = await make_proxy(upstream=f"http://127.0.0.1:{port}")
        r = await proxy.get("/api/jobs/", headers={ASSERTION: mint()})
        assert r.status == 502 and (await r.json())["error"] == "bad_gateway"
        await leaves_nothing(proxy, fds, tasks)
    finally:
        server.close()
        await server.wait_closed()


async def test_ray_restarting_is_502_while_down_and_fine_after(make_proxy: Any, mint: Any) -> None:
    port = free_port()
    fds, tasks = open_fds(), len(asyncio.all_tasks())
    proxy = await make_proxy(upstream=f"http://127.0.0.1:{port}")

    async def ray_up() -> RayDouble:
        double = RayDouble()
        double.server = TestServer(double.app(), host="127.0.0.1", port=port)
        await double.server.start_server()
        return double

    first = await ray_up()
    for _ in range(3):  # leaves pooled keep-alive connections to the first Ray
        assert (await proxy.get("/api/jobs/", headers={ASSERTION: mint(), **PASS})).status == 200
    await first.close()
    r = await proxy.get("/api/jobs/", headers={ASSERTION: mint(), **PASS})
    assert r.status == 502
    second = await ray_up()
    try:
        for _ in range(3):  # stale pooled connections must not turn into errors
            assert (await proxy.get("/api/jobs/", headers={ASSERTION: mint(), **PASS})).status == 200
        assert len(second.hits) == 3 and not second.violations
    finally:
        await leaves_nothing(proxy, fds + 1, tasks)  # + the second Ray's listening socket
        await second.close()
