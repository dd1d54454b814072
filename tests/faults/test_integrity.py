"""Bytes arrive intact: concurrent uploads (with a length and chunked) and downloads through the proxy
are byte-identical by sha256, and binary WebSocket frames come back unchanged."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from devkit.ray_double import ASSERTION, PASS, RayDouble
from devkit.util import blob

PACKAGE_ROUTE = "/api/packages/{protocol}/{package_name}"


async def _download(request: web.Request) -> web.StreamResponse:
    _, seed, size = request.match_info["package_name"].removesuffix(".zip").split("-")
    data = blob(int(size), int(seed))
    resp = web.StreamResponse(headers={"Content-Type": "application/zip"})
    await resp.prepare(request)
    for i in range(0, len(data), 65_537):  # odd chunk sizes on purpose
        await resp.write(data[i : i + 65_537])
    return resp


async def test_concurrent_uploads_and_downloads_are_byte_identical(
    proxy: Any, ray: RayDouble, mint: Any
) -> None:
    ray.overrides[PACKAGE_ROUTE] = _override_get_only(ray)
    headers = {ASSERTION: mint(), **PASS}

    async def upload(i: int) -> None:
        data = blob((i + 1) * 700_001, seed=i)

        async def chunks() -> AsyncIterator[bytes]:
            for j in range(0, len(data), 250_000):
                yield data[j : j + 250_000]

        body: Any = data if i % 2 else chunks()
        r = await proxy.put(f"/api/packages/gcs/up-{i}.zip", headers=headers, data=body)
        answer = await r.json()
        assert r.status == 200 and answer["bytes"] == len(data)
        assert answer["sha256"] == hashlib.sha256(data).hexdigest()

    async def download(i: int) -> None:
        size = (i + 1) * 900_007
        r = await proxy.get(f"/api/packages/gcs/dl-{100 + i}-{size}.zip", headers=headers)
        digest, n = hashlib.sha256(), 0
        async for chunk in r.content.iter_any():
            digest.update(chunk)
            n += len(chunk)
        assert r.status == 200 and n == size
        assert digest.hexdigest() == hashlib.sha256(blob(size, 100 + i)).hexdigest()

    async with asyncio.timeout(60):  # a hang guard
        await asyncio.gather(*(upload(i) for i in range(6)), *(download(i) for i in range(6)))
    assert len(ray.hits) == 12


def _override_get_only(ray: RayDouble) -> Any:
    """Downloads come from `_download`; uploads get the double's echo (the sha256 of the body)."""

    async def route(request: web.Request) -> web.StreamResponse:
        return await (_download(request) if request.method == "GET" else ray.echo(request))

    return route


async def test_binary_websocket_frames_are_unchanged(proxy: Any, ray: RayDouble, mint: Any) -> None:
    ws = await proxy.ws_connect("/api/jobs/j/logs/tail", headers={ASSERTION: mint(), **PASS})
    assert await ws.receive_str() == "log line 1"
    for i in range(20):
        frame = blob(1 + i * 50_000, seed=i)
        await ws.send_bytes(frame)
        assert await ws.receive_bytes() == frame
    await ws.close()
