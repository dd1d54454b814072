"""WebSocket: the upgrade is authorized before the 101 with the route's verb and the cross-site rule;
oversized messages close with 1009 from either side; nothing is left running afterwards."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from devkit.ray_double import ASSERTION, PASS, RayDouble
from devkit.util import wait_until
from proxy.http.pipeline import PROXY

TAIL = "/api/jobs/raysubmit_1/logs/tail"
TAIL_ROUTE = "/api/jobs/{job_or_submission_id}/logs/tail"


async def settled(client: Any, baseline: int) -> int:
    """Wait (bounded) until the proxy has no request in flight and no more tasks than `baseline`."""
    inflight = client.server.app[PROXY].inflight
    await wait_until(lambda: not inflight and len(asyncio.all_tasks()) <= baseline)
    return len(asyncio.all_tasks())


@pytest.mark.parametrize("who, status", [(None, 401), ("bob@example.com", 403), ("mallory@example.com", 403)])
async def test_upgrade_is_authorized_before_the_101(
    proxy: Any, ray: RayDouble, mint: Any, who: str | None, status: int
) -> None:
    headers = {ASSERTION: mint(who)} if who else {}
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await proxy.ws_connect(TAIL, headers=headers)
    assert err.value.status == status
    assert ray.hits == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example.net"},
        {"Origin": "null"},
        {"Origin": "https://ray-team-b.example.com"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
    ids=lambda h: f"{next(iter(h))}={next(iter(h.values()))}",
)
async def test_cross_site_upgrade_is_refused(
    proxy: Any, ray: RayDouble, mint: Any, headers: dict[str, str]
) -> None:
    """Cross-site WebSocket hijacking: a page elsewhere opening the log tail with the user's cookies."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await proxy.ws_connect(TAIL, headers={ASSERTION: mint(), **headers})
    assert err.value.status == 403
    assert ray.hits == []


async def test_same_origin_upgrade_passes_and_frames_flow(proxy: Any, ray: RayDouble, mint: Any) -> None:
    origin = f"http://127.0.0.1:{proxy.port}"
    ws = await proxy.ws_connect(
        TAIL, headers={ASSERTION: mint(), "Origin": origin, "Sec-Fetch-Site": "same-origin", **PASS}
    )
    assert await ws.receive_str() == "log line 1"
    await ws.send_str("hello")
    assert await ws.receive_str() == "echo:hello"
    await ws.send_bytes(b"\x00\xff" * 100)
    assert await ws.receive_bytes() == b"\x00\xff" * 100
    await ws.close()
    assert ray.only().route == TAIL_ROUTE


async def test_upgrade_headers_on_a_plain_route_are_not_an_upgrade(
    proxy: Any, ray: RayDouble, mint: Any
) -> None:
    r = await proxy.get(
        "/api/jobs/",
        headers={
            ASSERTION: mint(),
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "x" * 24,
            "Sec-WebSocket-Version": "13",
            **PASS,
        },
    )
    assert r.status == 200
    names = {k.lower() for k, _ in ray.only().headers}
    assert "upgrade" not in names and (await r.json())["route"] == "/api/jobs/"


async def test_client_message_over_the_limit_closes_1009_and_leaves_nothing(
    make_proxy: Any, ray: RayDouble, mint: Any
) -> None:
    proxy = await make_proxy(extra="limits:\n  max_websocket_message_bytes: 1024\n")
    baseline = len(asyncio.all_tasks())
    ws = await proxy.ws_connect(TAIL, headers={ASSERTION: mint(), **PASS})
    assert await ws.receive_str() == "log line 1"
    await ws.send_str("x" * 1018)
    assert await ws.receive_str() == "echo:" + "x" * 1018  # 1023 bytes back: under the limit, passes
    await ws.send_str("x" * 1024)  # aiohttp's limit is exclusive: 1024 is over it
    msg = await ws.receive()
    assert msg.type is WSMsgType.CLOSE and msg.data == 1009
    await ws.close()
    assert await settled(proxy, baseline) <= baseline


async def test_ray_message_over_the_limit_closes_1009(make_proxy: Any, ray: RayDouble, mint: Any) -> None:
    async def shouting(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("y" * 4096)
        async for _ in ws:
            pass
        return ws

    ray.overrides[TAIL_ROUTE] = shouting
    proxy = await make_proxy(extra="limits:\n  max_websocket_message_bytes: 2048\n")
    baseline = len(asyncio.all_tasks())
    ws = await proxy.ws_connect(TAIL, headers={ASSERTION: mint(), **PASS})
    msg = await ws.receive()
    assert msg.type is WSMsgType.CLOSE and msg.data == 1009
    await ws.close()
    assert await settled(proxy, baseline) <= baseline


async def test_stream_outlives_its_token_by_policy(make_proxy: Any, ray: RayDouble, mint: Any) -> None:
    """The documented policy (docs/threat-model.md): an upgrade is authorized once, as IAP does; the
    stream then lives until either side closes it or the load balancer's timeoutSec cuts it. A new
    upgrade with the expired token is refused."""
    now = [2_000_000_000.0]
    proxy = await make_proxy(clock=lambda: now[0])
    token = mint(now=now[0])
    ws = await proxy.ws_connect(TAIL, headers={ASSERTION: token, **PASS})
    assert await ws.receive_str() == "log line 1"
    now[0] += 3600
    await ws.send_str("still here")
    assert await ws.receive_str() == "echo:still here"
    await ws.close()
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await proxy.ws_connect(TAIL, headers={ASSERTION: token})
    assert err.value.status == 401
