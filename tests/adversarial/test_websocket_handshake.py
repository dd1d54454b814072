"""WebSocket handshakes, checked before Ray is dialled: a request to the log-tail route that attempts
a handshake and gets it wrong has a precise 400 (426 when the version or the upgrade is not one we
speak, saying which), from an allowed caller too, and never reaches Ray; a side that vanishes
mid-stream is recorded as that side's abort, never as a proxy error."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

import pytest
from aiohttp import web

from devkit.http import raw_http
from devkit.ray_double import ASSERTION, MAY_PASS, PASS, RayDouble
from devkit.records import AccessRecords
from devkit.util import wait_until
from proxy.http.pipeline import PROXY

TAIL = "/api/jobs/raysubmit_1/logs/tail"
TAIL_ROUTE = "/api/jobs/{job_or_submission_id}/logs/tail"
KEY = base64.b64encode(b"0123456789abcdef").decode()
GOOD = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": KEY,
    "Sec-WebSocket-Version": "13",
}


def handshake(token: str, fields: dict[str, str | list[str]], method: str = "GET", extra: str = "") -> bytes:
    lines = "".join(
        f"{name}: {v}\r\n"
        for name, value in fields.items()
        for v in (value if isinstance(value, list) else [value])
    )
    return (
        f"{method} {TAIL} HTTP/1.1\r\nHost: 127.0.0.1\r\n{ASSERTION}: {token}\r\n{lines}{extra}\r\n".encode()
    )


def without(name: str, **more: str | list[str]) -> dict[str, str | list[str]]:
    fields: dict[str, str | list[str]] = {k: v for k, v in GOOD.items() if k != name}
    fields.update(more)
    return fields


BAD = {
    "no-key": (without("Sec-WebSocket-Key"), 400, "exactly one Sec-WebSocket-Key"),
    "empty-key": (
        without("Sec-WebSocket-Key", **{"Sec-WebSocket-Key": ""}),
        400,
        "base64 of 16 bytes",
    ),
    "key-not-base64": (
        without("Sec-WebSocket-Key", **{"Sec-WebSocket-Key": "x" * 22 + "!="}),
        400,
        "base64 of 16 bytes",
    ),
    "key-24-chars-of-junk": (
        without("Sec-WebSocket-Key", **{"Sec-WebSocket-Key": "x" * 24}),
        400,
        "base64 of 16 bytes",
    ),
    "key-15-bytes": (
        without("Sec-WebSocket-Key", **{"Sec-WebSocket-Key": base64.b64encode(b"x" * 15).decode()}),
        400,
        "base64 of 16 bytes",
    ),
    "key-17-bytes": (
        without("Sec-WebSocket-Key", **{"Sec-WebSocket-Key": base64.b64encode(b"x" * 17).decode()}),
        400,
        "base64 of 16 bytes",
    ),
    "key-unpadded": (
        without("Sec-WebSocket-Key", **{"Sec-WebSocket-Key": KEY.rstrip("=")}),
        400,
        "base64 of 16 bytes",
    ),
    "two-keys": (without("Sec-WebSocket-Key", **{"Sec-WebSocket-Key": [KEY, KEY]}), 400, "exactly one"),
    "no-version": (without("Sec-WebSocket-Version"), 426, "Sec-WebSocket-Version missing"),
    "version-8": (without("Sec-WebSocket-Version", **{"Sec-WebSocket-Version": "8"}), 426, "not 13"),
    "version-list": (without("Sec-WebSocket-Version", **{"Sec-WebSocket-Version": "13, 8"}), 426, "not 13"),
    "two-versions": (
        without("Sec-WebSocket-Version", **{"Sec-WebSocket-Version": ["13", "13"]}),
        426,
        "not 13",
    ),
    "no-connection-upgrade": (without("Connection", Connection="keep-alive"), 400, "Connection: Upgrade"),
    "no-connection": (without("Connection"), 400, "Connection: Upgrade"),
    "no-upgrade": (without("Upgrade"), 426, "needs Upgrade: websocket"),
    "upgrade-h2c": (without("Upgrade", Upgrade="h2c"), 426, "needs Upgrade: websocket"),
    "upgrade-list": (without("Upgrade", Upgrade="websocket, h2c"), 426, "needs Upgrade: websocket"),
    "key-alone": ({"Sec-WebSocket-Key": KEY}, 426, "needs Upgrade: websocket"),
}


@pytest.mark.parametrize("fields, status, reason", BAD.values(), ids=BAD.keys())
async def test_a_bad_handshake_is_refused_precisely_before_ray(
    make_proxy: Any,
    ray: RayDouble,
    mint: Any,
    access_records: AccessRecords,
    fields: dict[str, str],
    status: int,
    reason: str,
) -> None:
    proxy = await make_proxy(access_log=access_records)
    got, answer = await raw_http(proxy.port, handshake(mint(), fields, extra="Connection: close\r\n"))
    assert got == status, answer
    head, _, body = answer.partition(b"\r\n\r\n")
    assert reason in json.loads(body)["reason"]
    if status == 426:
        assert b"Sec-WebSocket-Version: 13" in head
    record = access_records.last()
    assert record["httpRequest"]["status"] == status and record["principal"] == "alice@example.com"
    assert ray.hits == []


@pytest.mark.parametrize(
    "method, extra, reason",
    [
        ("HEAD", "", "a WebSocket handshake is a GET"),
        ("GET", "Content-Length: 5\r\n", "has no body"),
        ("GET", "Transfer-Encoding: chunked\r\n", "has no body"),
    ],
)
async def test_a_handshake_that_is_no_bare_get_is_400(
    proxy: Any, ray: RayDouble, mint: Any, method: str, extra: str, reason: str
) -> None:
    body = b"hello" if "Length" in extra else b"0\r\n\r\n" if "chunked" in extra else b""
    got, answer = await raw_http(
        proxy.port, handshake(mint(), GOOD, method, extra + "Connection: close\r\n") + body
    )
    assert got == 400, answer
    if method != "HEAD":
        assert reason in json.loads(answer.partition(b"\r\n\r\n")[2])["reason"]
    assert ray.hits == []


async def test_a_good_raw_handshake_is_relayed(proxy: Any, ray: RayDouble, mint: Any) -> None:
    got, answer = await raw_http(proxy.port, handshake(mint(), GOOD, extra=f"{MAY_PASS}: yes\r\n"), timeout=2)
    assert got == 101 and b"Sec-WebSocket-Accept: " in answer
    assert ray.only().route == TAIL_ROUTE


async def test_an_unauthenticated_bad_handshake_is_still_401(proxy: Any, ray: RayDouble) -> None:
    """Admission first: the caller learns nothing about the route before being authenticated."""
    request = f"GET {TAIL} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n".encode()
    assert (await raw_http(proxy.port, request))[0] == 401
    assert ray.hits == []


# -- a side vanishing mid-stream ---------------------------------------------------------------------


async def _firehose(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    try:
        for _ in range(100_000):  # frames as fast as the proxy takes them: it is writing when the client goes
            await ws.send_str("x" * 1000)
    except ConnectionError:
        pass
    return ws


async def test_a_client_reset_mid_stream_is_an_abort_not_a_500(
    make_proxy: Any,
    ray: RayDouble,
    mint: Any,
    access_records: AccessRecords,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="ray_iap_proxy")
    ray.overrides[TAIL_ROUTE] = _firehose
    proxy = await make_proxy(access_log=access_records)
    for _ in range(5):
        ws = await proxy.ws_connect(TAIL, headers={ASSERTION: mint(), **PASS})
        await ws.receive_str()
        connection = ws._response.connection  # the raw TCP connection under the client's WebSocket
        assert connection is not None and connection.transport is not None
        connection.transport.abort()  # a reset, while the proxy writes
        await wait_until(lambda: not proxy.server.app[PROXY].inflight)
    await wait_until(lambda: len(access_records.records()) == 5)
    for record in access_records.records():
        assert (record["httpRequest"]["status"], record["decision"], record["aborted"]) == (
            101,
            "allow",
            "client",
        )
    assert not [
        r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("ray_iap_proxy")
    ]


async def test_ray_vanishing_mid_stream_is_rays_abort(
    make_proxy: Any, ray: RayDouble, mint: Any, access_records: AccessRecords
) -> None:
    async def vanishing(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("log line 1")
        assert request.transport is not None
        request.transport.abort()
        await asyncio.sleep(0)
        return ws

    ray.overrides[TAIL_ROUTE] = vanishing
    proxy = await make_proxy(access_log=access_records)
    ws = await proxy.ws_connect(TAIL, headers={ASSERTION: mint(), **PASS})
    assert await ws.receive_str() == "log line 1"
    msg = await ws.receive()
    assert msg.data == 1011  # the client is told the server side failed
    await ws.close()
    await wait_until(lambda: len(access_records.records()) == 1)
    record = access_records.last()
    assert (record["httpRequest"]["status"], record["aborted"]) == (101, "upstream")
