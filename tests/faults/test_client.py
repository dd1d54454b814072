"""Clients vanishing: mid-upload, mid-download, mid-WebSocket. Ray's side of the request is let go
(its handler ends), nothing stays in flight, and the access record says what happened."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from devkit.ray_double import ASSERTION, MAY_PASS, PASS, RayDouble
from devkit.records import AccessRecords
from devkit.util import wait_until
from proxy.http.pipeline import PROXY

PACKAGE_ROUTE = "/api/packages/{protocol}/{package_name}"


def watched(ray: RayDouble, started: asyncio.Event, handler: Any) -> Any:
    """Wrap a handler: `started` once it runs; its end is recorded as finished or cancelled/failed."""

    async def run(request: web.Request) -> web.StreamResponse:
        started.set()
        try:
            response: web.StreamResponse = await handler(request)
        except BaseException:
            ray.cancelled.append(request.path)
            raise
        ray.finished.append(request.path)
        return response

    return run


async def _read_everything(request: web.Request) -> web.StreamResponse:
    total = 0
    async for chunk in request.content.iter_any():
        total += len(chunk)
    if request.content_length is not None and total < request.content_length:
        raise ConnectionResetError("upload cut short")
    return web.json_response({"bytes": total})


async def _endless(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    for _ in range(100_000):  # bounded: 100 GB if anyone read it
        await resp.write(b"z" * (1 << 20))
    return resp


@pytest.mark.parametrize("abort", [True, False], ids=["reset", "fin"])
async def test_client_vanishing_mid_upload_lets_ray_go(
    make_proxy: Any, ray: RayDouble, mint: Any, abort: bool, access_records: AccessRecords
) -> None:
    proxy = await make_proxy(access_log=access_records)
    started = asyncio.Event()
    ray.overrides[PACKAGE_ROUTE] = watched(ray, started, _read_everything)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(
        (
            f"PUT /api/packages/gcs/p.zip HTTP/1.1\r\nHost: x\r\n{ASSERTION}: {mint()}\r\n"
            f"{MAY_PASS}: yes\r\nContent-Length: {10 << 20}\r\n\r\n"
        ).encode()
        + b"a" * (1 << 20)
    )
    await writer.drain()
    await asyncio.wait_for(started.wait(), 10)
    if abort:
        writer.transport.abort()
    else:
        writer.close()
    await wait_until(lambda: bool(ray.cancelled))
    await wait_until(lambda: not proxy.server.app[PROXY].inflight)
    assert ray.finished == []
    records = access_records.records()
    assert len(records) == 1 and records[0]["aborted"] == "cancelled"
    assert int(records[0]["httpRequest"]["requestSize"]) < 10 << 20


async def test_client_vanishing_mid_download_lets_ray_go(proxy: Any, ray: RayDouble, mint: Any) -> None:
    started = asyncio.Event()
    ray.overrides["/api/v0/logs/file"] = watched(ray, started, _endless)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(
        (
            f"GET /api/v0/logs/file HTTP/1.1\r\nHost: x\r\n{ASSERTION}: {mint()}\r\n{MAY_PASS}: yes\r\n\r\n"
        ).encode()
    )
    assert (await asyncio.wait_for(reader.read(1 << 16), 10)).startswith(b"HTTP/1.1 200 ")
    writer.transport.abort()
    await wait_until(lambda: bool(ray.cancelled))
    await wait_until(lambda: not proxy.server.app[PROXY].inflight)
    assert ray.finished == []


async def test_client_vanishing_mid_websocket_closes_rays_side(proxy: Any, ray: RayDouble, mint: Any) -> None:
    started = asyncio.Event()

    async def tail(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("log line 1")
        async for _ in ws:
            pass
        return ws

    ray.overrides["/api/jobs/{job_or_submission_id}/logs/tail"] = watched(ray, started, tail)
    ws = await proxy.ws_connect("/api/jobs/j/logs/tail", headers={ASSERTION: mint(), **PASS})
    assert await ws.receive_str() == "log line 1"
    connection = ws._response.connection  # the raw TCP connection under the client's WebSocket
    assert connection is not None and connection.transport is not None
    connection.transport.abort()
    await wait_until(lambda: bool(ray.finished or ray.cancelled))
    await wait_until(lambda: not proxy.server.app[PROXY].inflight)
    await ws.close()
