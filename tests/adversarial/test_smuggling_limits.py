"""Smuggling and exhaustion: ambiguous framings are 400, oversized heads 431/414 in the proxy's own
JSON shape, slow and idle clients are cut, connections are bounded, bodies stream, cross-site writes
are refused. None of the refused requests is marked MAY_PASS: one reaching Ray fails the test."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web

from devkit.http import get_request, raw_http, read_response
from devkit.ray_double import ASSERTION, MAY_PASS, PASS, RayDouble
from devkit.records import AccessRecords
from devkit.util import wait_until
from proxy.http.pipeline import PROXY

SMUGGLED = b"GET /test/dump HTTP/1.1\r\nHost: x\r\n\r\n"


def head(token: str, lines: str, method: str = "POST", target: str = "/api/jobs/") -> bytes:
    return (
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{ASSERTION}: {token}\r\n{lines}"
        f"Connection: close\r\n\r\n"
    ).encode()


FRAMINGS = {
    "cl-then-te": ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED),
    "te-then-cl": ("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n" + SMUGGLED),
    "two-different-cl": ("Content-Length: 5\r\nContent-Length: 40\r\n", b"{}   " + SMUGGLED),
    "cl-list": ("Content-Length: 5, 40\r\n", b"{}   " + SMUGGLED),
    "cl-plus-sign": ("Content-Length: +5\r\n", b"{}   " + SMUGGLED),
    "cl-hex": ("Content-Length: 0x5\r\n", b"{}   " + SMUGGLED),
    "te-not-final-chunked": ("Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n" + SMUGGLED),
    "te-xchunked": ("Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n" + SMUGGLED),
    "te-obs-fold": ("Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n" + SMUGGLED),
    "te-space-before-colon": ("Transfer-Encoding : chunked\r\n", b"0\r\n\r\n" + SMUGGLED),
    "te-twice": ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED),
    "bad-chunk-size": ("Transfer-Encoding: chunked\r\n", b"0x2\r\n{}\r\n0\r\n\r\n" + SMUGGLED),
    "obs-fold": ("X-A: a\r\n b\r\nContent-Length: 2\r\n", b"{}" + SMUGGLED),
    "nul-in-value": ("X-A: a\x00b\r\nContent-Length: 2\r\n", b"{}" + SMUGGLED),
    "two-hosts": ("Host: evil\r\nContent-Length: 2\r\n", b"{}" + SMUGGLED),
}


@pytest.mark.parametrize("lines, body", FRAMINGS.values(), ids=FRAMINGS.keys())
async def test_ambiguous_framing_is_400(
    proxy: Any, ray: RayDouble, mint: Any, lines: str, body: bytes
) -> None:
    status, answer = await raw_http(proxy.port, head(mint(), lines) + body)
    assert status == 400, answer
    assert b'"error": "bad_request"' in answer
    assert ray.hits == []


async def test_bare_lf_request_is_400(proxy: Any, ray: RayDouble, mint: Any) -> None:
    request = f"GET /api/jobs/ HTTP/1.1\nHost: x\n{ASSERTION}: {mint()}\n\n".encode()
    status, answer = await raw_http(proxy.port, request)
    assert status == 400 and b"request_id" in answer
    assert ray.hits == []


async def test_a_request_smuggled_in_an_allowed_body_is_only_a_body(
    proxy: Any, ray: RayDouble, mint: Any
) -> None:
    """Ray receives the bytes as the body of the one request the proxy authorized, nothing more."""
    body = SMUGGLED + b"GET /test/dump HTTP/1.1\r\nHost: x\r\n" + b"\r\n"
    request = (
        head(mint(), f"Content-Length: {len(body)}\r\n{MAY_PASS}: yes\r\n", "PUT", "/api/packages/gcs/p.zip")
        + body
    )
    status, answer = await raw_http(proxy.port, request)
    assert status == 200, answer
    assert [(h.method, h.raw_path, h.body_len) for h in ray.hits] == [
        ("PUT", "/api/packages/gcs/p.zip", len(body))
    ]


# -- the parser's refusals, in the proxy's own shape -------------------------------------------------


def _json(answer: bytes) -> dict[str, Any]:
    head_, _, body = answer.partition(b"\r\n\r\n")
    assert b"application/json" in head_ and b"X-Request-Id" in head_, head_
    parsed: dict[str, Any] = json.loads(body)
    assert set(parsed) == {"error", "reason", "request_id"}
    return parsed


@pytest.mark.parametrize(
    "extra, target, status, error",
    [
        ("".join(f"X-H{i}: v\r\n" for i in range(101)), "/api/jobs/", 431, "headers_too_large"),
        ("X-Big: " + "a" * 8200 + "\r\n", "/api/jobs/", 431, "headers_too_large"),
        ("Cookie: GCP_IAP_UID=" + "s" * 9000 + "\r\n", "/api/jobs/", 431, "headers_too_large"),
        ("", "/api/jobs/?" + "a" * 5000, 414, "target_too_long"),
        ("", "/api/jobs/?" + "a" * 4100, 414, "target_too_long"),
    ],
    ids=[
        "too-many-headers",
        "header-too-large",
        "cookie-too-large",
        "target-over-parser-limit",
        "target-over-limit",
    ],
)
async def test_oversized_heads_get_precise_statuses(
    proxy: Any, ray: RayDouble, mint: Any, extra: str, target: str, status: int, error: str
) -> None:
    token = mint()
    got, answer = await raw_http(proxy.port, get_request(target, token, extra=extra))
    assert got == status, answer[:300]
    assert _json(answer)["error"] == error
    assert token.encode() not in answer and b"sss" not in answer and b"aaaa" not in answer
    assert ray.hits == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /api/jobs/ HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"GET /api/jobs/\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/jobs/ HTTP/9.9\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET http://x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ],
    ids=[
        "junk-after-version",
        "nul-in-target",
        "http-9.9",
        "tls-hello",
        "asterisk",
        "absolute-no-path",
        "connect",
    ],
)
async def test_unparseable_requests_are_400_json(proxy: Any, ray: RayDouble, request_bytes: bytes) -> None:
    status, answer = await raw_http(proxy.port, request_bytes)
    assert status == 400, answer
    assert _json(answer)["error"] == "bad_request"
    assert ray.hits == []


async def test_head_limits_are_configurable(make_proxy: Any, ray: RayDouble, mint: Any) -> None:
    proxy = await make_proxy(
        extra="limits:\n  max_headers: 12\n  max_header_bytes: 1024\n  max_target_length: 64\n"
    )
    token = mint()  # ~700 bytes: fits in 1024
    ok = f"{MAY_PASS}: yes\r\n"
    assert (await raw_http(proxy.port, get_request("/api/jobs/", token, extra=ok)))[0] == 200
    cases = [
        ("X-Big: " + "a" * 1100 + "\r\n", "/api/jobs/", 431),
        ("".join(f"X-H{i}: v\r\n" for i in range(12)), "/api/jobs/", 431),
        ("", "/api/jobs/?" + "a" * 60, 414),
        ("", "/api/jobs/?" + "a" * 200, 414),
    ]
    for extra, target, status in cases:
        got, answer = await raw_http(proxy.port, get_request(target, token, extra=extra))
        assert got == status, answer[:300]
    assert len(ray.hits) == 1


# -- connections and slow clients -------------------------------------------------------------------


async def test_connections_over_the_limit_get_503_and_are_closed(
    make_proxy: Any, ray: RayDouble, mint: Any
) -> None:
    proxy = await make_proxy(extra="limits:\n  max_connections: 3\n")
    held = [await asyncio.open_connection("127.0.0.1", proxy.port) for _ in range(3)]
    try:
        await wait_until(lambda: len(proxy.server.runner.server.connections) == 3)
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(get_request("/api/jobs/", mint()))
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 503 ") and b"too many connections" in answer
        assert proxy.server.app[PROXY].telemetry.connections_refused == 1
    finally:
        for _, w in held:
            w.close()
    await wait_until(lambda: len(proxy.server.runner.server.connections) == 0)  # freed slots...
    status, _ = await raw_http(proxy.port, get_request("/api/jobs/", mint(), extra=f"{MAY_PASS}: yes\r\n"))
    assert status == 200  # ...are usable again
    assert len(ray.hits) == 1


async def test_an_idle_connection_is_closed(make_proxy: Any, ray: RayDouble) -> None:
    proxy = await make_proxy(extra="limits:\n  client_idle_timeout_seconds: 1\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    assert await asyncio.wait_for(reader.read(), 15) == b""  # closed by the proxy; 15 s is a hang guard
    writer.close()
    assert ray.hits == []


async def test_slowloris_headers_are_cut_by_the_idle_timeout(
    make_proxy: Any, ray: RayDouble, mint: Any
) -> None:
    proxy = await make_proxy(extra="limits:\n  client_idle_timeout_seconds: 1\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    request = get_request("/api/jobs/", mint(), extra="".join(f"X-{i}: v\r\n" for i in range(90)))
    cut = False
    for i in range(len(request)):  # one byte every 50 ms: never finishes the head within the timeout
        if reader.at_eof() or writer.is_closing():
            cut = True
            break
        try:
            writer.write(request[i : i + 1])
            await writer.drain()
        except ConnectionError:
            cut = True
            break
        try:
            if await asyncio.wait_for(reader.read(1), 0.05) == b"":
                cut = True
                break
        except TimeoutError:
            pass
    writer.close()
    assert cut and i < len(request) - 1
    assert ray.hits == []


async def test_a_stalled_upload_is_408_and_ray_is_let_go(make_proxy: Any, ray: RayDouble, mint: Any) -> None:
    proxy = await make_proxy(extra="limits:\n  client_read_timeout_seconds: 0.5\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    upload = head(mint(), f"Content-Length: 1000\r\n{MAY_PASS}: yes\r\n", "PUT", "/api/packages/gcs/p.zip")
    writer.write(upload + b"x" * 10)
    status_line, body = await read_response(reader, 15)
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 408 ") and b"request_timeout" in body
    assert [h.body_len for h in ray.hits] == [0]  # Ray's side never completed a body


async def test_a_client_that_stops_reading_is_cut(
    make_proxy: Any, ray: RayDouble, mint: Any, access_records: AccessRecords
) -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(256):  # 256 MiB if anyone read it all
            await resp.write(b"z" * (1 << 20))
        return resp

    ray.overrides["/api/v0/logs/file"] = huge
    proxy = await make_proxy(extra="limits:\n  client_read_timeout_seconds: 0.5\n", access_log=access_records)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(get_request("/api/v0/logs/file?node_id=n&filename=f", mint(), extra=f"{MAY_PASS}: yes\r\n"))
    inflight = proxy.server.app[PROXY].inflight
    await wait_until(lambda: bool(inflight))
    await wait_until(lambda: not inflight, 20)  # the proxy gives up on its own
    received = 0
    try:
        while chunk := await asyncio.wait_for(reader.read(1 << 20), 5):
            received += len(chunk)
    except ConnectionError:
        pass
    writer.close()
    assert received < 256 << 20
    records = access_records.records()
    assert [(r["httpRequest"]["status"], r["reason"], r["aborted"]) for r in records] == [
        (200, "client stopped reading for 0.5 s", "client")
    ]


async def test_uploads_stream_rather_than_buffer(proxy: Any, ray: RayDouble, mint: Any) -> None:
    """Ray sees the first part of a body before the client has sent the rest: nothing is buffered."""
    first_part_at_ray = asyncio.Event()

    async def receiving(request: web.Request) -> web.StreamResponse:
        total = 0
        async for chunk in request.content.iter_any():
            total += len(chunk)
            if total >= 1 << 20:
                first_part_at_ray.set()
        return web.json_response({"bytes": total})

    ray.overrides["/api/packages/{protocol}/{package_name}"] = receiving
    size = 4 << 20
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(
        head(mint(), f"Content-Length: {size}\r\n{MAY_PASS}: yes\r\n", "PUT", "/api/packages/gcs/p.zip")
    )
    writer.write(b"a" * (1 << 20))
    await writer.drain()
    await asyncio.wait_for(first_part_at_ray.wait(), 10)  # would hang if the proxy waited for the whole body
    writer.write(b"b" * (size - (1 << 20)))
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(f'{{"bytes": {size}}}'.encode())


async def test_a_chunked_body_over_the_limit_is_413_not_rays_fault(
    make_proxy: Any, ray: RayDouble, mint: Any
) -> None:
    proxy = await make_proxy(extra="limits:\n  max_body_bytes: 1000\n")
    chunks = b"".join(b"%x\r\n%s\r\n" % (400, b"x" * 400) for _ in range(4)) + b"0\r\n\r\n"
    lines = f"Transfer-Encoding: chunked\r\n{MAY_PASS}: yes\r\n"
    request = head(mint(), lines, "PUT", "/api/packages/gcs/p.zip")
    status, answer = await raw_http(proxy.port, request + chunks)
    assert status == 413 and b'"error": "too_large"' in answer, answer
    assert all(h.body_len <= 1000 for h in ray.hits)  # Ray never got more than the limit


# -- cross-site writes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example.net"},
        {"Origin": "null"},
        {"Origin": "file://"},
        {"Origin": "http://127.0.0.1:1"},
        {"Origin": "https://127.0.0.1@evil.example.net"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "same-origin", "Origin": "https://evil.example.net"},
    ],
    ids=lambda h: ",".join(f"{k}={v}" for k, v in h.items()),
)
async def test_cross_site_writes_are_refused(
    proxy: Any, ray: RayDouble, mint: Any, headers: dict[str, str]
) -> None:
    for method, path in (
        ("POST", "/api/jobs/"),
        ("POST", "/api/jobs/x/stop"),
        ("DELETE", "/api/jobs/x"),
        ("PUT", "/api/packages/gcs/p.zip"),
    ):
        r = await proxy.request(method, path, headers={ASSERTION: mint(), **headers}, data=b"{}")
        assert r.status == 403 and "cross-origin" in (await r.json())["reason"], (method, path)
    assert ray.hits == []


async def test_same_origin_and_non_browser_writes_pass(proxy: Any, ray: RayDouble, mint: Any) -> None:
    origin = f"http://127.0.0.1:{proxy.port}"
    for headers in ({"Origin": origin, "Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}, {}):
        r = await proxy.post("/api/jobs/", headers={ASSERTION: mint(), **headers, **PASS}, json={})
        assert r.status == 200, headers
    assert len(ray.hits) == 3
