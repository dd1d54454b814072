"""The upstream pool against a Ray that misbehaves on cue (devkit.raw_upstream): stale keep-alive
connections, closing mid-body, HEAD/204/304/1xx, oversized headers, cancellation, a slow Ray,
stray bytes, an early answer during an upload, back-pressure, expiry and shutdown. Each test checks
what the client got *and* what happened to Ray's connections."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from devkit.config import ROOT
from devkit.http import raw_http
from devkit.raw_upstream import Exchange, RawUpstream
from devkit.ray_double import ASSERTION
from devkit.util import wait_until
from proxy.errors import UpstreamError
from proxy.http.pipeline import PROXY
from proxy.upstream import pool as pool_mod
from proxy.upstream.pool import Pool
from proxy.upstream.pool_conn import HIGH_WATER
from proxy.upstream.pool_relay import fetch_pooled

VERSION = "/api/version"
UPLOAD = "/api/packages/gcs/_ray_pkg_x.zip"
SLOW = "limits:\n  upstream_read_timeout_seconds: 1\n"


@pytest.fixture
async def upstream() -> Any:
    made: list[RawUpstream] = []

    async def make(script: Any) -> RawUpstream:
        raw = RawUpstream(script)
        await raw.start()
        made.append(raw)
        return raw

    yield make
    for raw in made:
        await raw.close()


def pool_of(proxy: Any) -> Pool:
    pool = proxy.server.app[PROXY].upstream.pool
    assert isinstance(pool, Pool)
    return pool


async def get(proxy: Any, mint: Any, target: str = VERSION, method: str = "GET") -> tuple[int, bytes]:
    async with proxy.request(method, target, headers={ASSERTION: mint(ROOT)}) as r:
        return r.status, await r.read()


def put_head(mint: Any, size: int) -> bytes:
    auth = f"{ASSERTION}: {mint(ROOT)}\r\n"
    return f"PUT {UPLOAD} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {size}\r\n\r\n".encode()


async def answers_ok(x: Exchange) -> None:
    await x.answer(200, f"answer {x.conn}.{x.number}".encode())


async def test_connections_are_reused_after_a_complete_keep_alive_answer(
    make_proxy: Any, mint: Any, upstream: Any
) -> None:
    raw = await upstream(answers_ok)
    proxy = await make_proxy(upstream=raw.url)
    for n in range(1, 6):
        assert await get(proxy, mint) == (200, f"answer 1.{n}".encode())
    assert raw.connections == 1 and pool_of(proxy).connects == 1


async def test_a_stale_connection_is_replayed_once_for_a_bodiless_get(
    make_proxy: Any, mint: Any, upstream: Any
) -> None:
    async def closes_second(x: Exchange) -> None:
        if x.number == 2:  # Ray closed the idle connection as our request arrived: nothing returned
            x.close()
            return
        await answers_ok(x)

    raw = await upstream(closes_second)
    proxy = await make_proxy(upstream=raw.url)
    assert await get(proxy, mint) == (200, b"answer 1.1")
    assert await get(proxy, mint) == (200, b"answer 2.1")  # replayed on a new connection
    assert [(x.conn, x.number, x.method) for x in raw.exchanges] == [
        (1, 1, "GET"),
        (1, 2, "GET"),
        (2, 1, "GET"),
    ]


async def test_a_request_with_a_body_is_never_replayed(make_proxy: Any, mint: Any, upstream: Any) -> None:
    async def closes_second(x: Exchange) -> None:
        if x.number == 2:
            x.close()
            return
        await x.body()
        await answers_ok(x)

    raw = await upstream(closes_second)
    proxy = await make_proxy(upstream=raw.url)
    headers = {ASSERTION: mint(ROOT)}
    assert (await proxy.put(UPLOAD, data=b"x" * 100, headers=headers)).status == 200
    r = await proxy.put(UPLOAD, data=b"x" * 100, headers=headers)
    assert r.status == 502 and (await r.json())["reason"] == "Ray failed mid-response"
    assert len(raw.exchanges) == 2


async def test_a_partial_answer_on_a_reused_connection_is_not_replayed(
    make_proxy: Any, mint: Any, upstream: Any
) -> None:
    async def half_second(x: Exchange) -> None:
        if x.number == 2:
            await x.send(b"HTTP/1.1 200 O")
            x.close()
            return
        await answers_ok(x)

    raw = await upstream(half_second)
    proxy = await make_proxy(upstream=raw.url)
    assert (await get(proxy, mint))[0] == 200
    assert (await get(proxy, mint))[0] == 502
    assert len(raw.exchanges) == 2


@pytest.mark.parametrize("length", [1000, 1_000_000], ids=["small", "large"])
async def test_ray_closing_mid_body(make_proxy: Any, mint: Any, upstream: Any, length: int) -> None:
    async def short(x: Exchange) -> None:
        await x.send(f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n".encode() + b"x" * 500)
        x.close()

    raw = await upstream(short)
    proxy = await make_proxy(upstream=raw.url)
    async with proxy.get("/static/big.js", headers={ASSERTION: mint(ROOT)}) as r:
        if length <= 64 * 1024:  # read whole before it is sent: a clean 502
            assert r.status == 502
        else:  # the answer had started: cut, never mistaken for complete
            assert r.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
    assert not pool_of(proxy).idle


async def test_chunked_and_close_delimited_bodies_are_relayed(
    make_proxy: Any, mint: Any, upstream: Any
) -> None:
    async def framed(x: Exchange) -> None:
        if x.target.endswith("chunked.js"):
            await x.send(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
            )
        else:
            await x.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
            x.close()

    raw = await upstream(framed)
    proxy = await make_proxy(upstream=raw.url)
    assert await get(proxy, mint, "/static/chunked.js") == (200, b"abcdefg")
    assert await get(proxy, mint, "/static/close.js") == (200, b"until the end")
    assert await get(proxy, mint, "/static/chunked.js") == (200, b"abcdefg")
    # the chunked connection was reused; the close-delimited one could not be
    assert [x.conn for x in raw.exchanges] == [1, 1, 2]


async def test_head_204_and_304_carry_no_body(make_proxy: Any, mint: Any, upstream: Any) -> None:
    async def bodiless(x: Exchange) -> None:
        if x.method == "HEAD":  # a HEAD answer names the length of the GET's body
            await x.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        elif x.target.endswith("204.js"):
            await x.send(b"HTTP/1.1 204 No Content\r\n\r\n")
        else:
            await x.send(b'HTTP/1.1 304 Not Modified\r\nETag: "e"\r\n\r\n')

    raw = await upstream(bodiless)
    proxy = await make_proxy(upstream=raw.url)
    async with proxy.head("/static/a.js", headers={ASSERTION: mint(ROOT)}) as r:
        assert r.status == 200 and r.headers["Content-Length"] == "5" and await r.read() == b""
    assert await get(proxy, mint, "/static/204.js") == (204, b"")
    async with proxy.get("/static/304.js", headers={ASSERTION: mint(ROOT)}) as r:
        assert r.status == 304 and r.headers["ETag"] == '"e"' and await r.read() == b""
    assert await get(proxy, mint, "/static/204.js") == (204, b"")
    # HEAD's connection is never reused (llhttp cannot be told the answer has no body); 204/304's are
    assert [x.conn for x in raw.exchanges] == [1, 2, 2, 2]


async def test_a_body_after_a_head_answer_never_reaches_the_next_request(
    make_proxy: Any, mint: Any, upstream: Any
) -> None:
    forged = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"

    async def desync(x: Exchange) -> None:
        if x.method == "HEAD":
            await x.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n" + forged)
        else:
            await answers_ok(x)

    raw = await upstream(desync)
    proxy = await make_proxy(upstream=raw.url)
    assert (await get(proxy, mint, "/static/a.js", "HEAD")) == (200, b"")
    for _ in range(3):
        status, body = await get(proxy, mint)
        assert status == 200 and body.startswith(b"answer") and b"forged" not in body


async def test_interim_answers_are_skipped(make_proxy: Any, mint: Any, upstream: Any) -> None:
    async def interim(x: Exchange) -> None:
        await x.send(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </early.css>; rel=preload\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Final: yes\r\n\r\nfinal"
        )

    raw = await upstream(interim)
    proxy = await make_proxy(upstream=raw.url)
    async with proxy.get(VERSION, headers={ASSERTION: mint(ROOT)}) as r:
        assert r.status == 200 and await r.read() == b"final"
        assert r.headers["X-Final"] == "yes" and "Link" not in r.headers
    assert await get(proxy, mint) == (200, b"final")
    assert raw.connections == 1


@pytest.mark.parametrize(
    "headers",
    ["X-Big: " + "a" * 70_000 + "\r\n", "".join(f"X-{i}: {i}\r\n" for i in range(300))],
    ids=["one-huge-header", "too-many-headers"],
)
async def test_oversized_upstream_headers_are_502(
    make_proxy: Any, mint: Any, upstream: Any, headers: str
) -> None:
    async def huge(x: Exchange) -> None:
        await x.send(f"HTTP/1.1 200 OK\r\n{headers}Content-Length: 2\r\n\r\nok".encode())

    raw = await upstream(huge)
    proxy = await make_proxy(upstream=raw.url)
    async with proxy.get(VERSION, headers={ASSERTION: mint(ROOT)}) as r:
        assert r.status == 502 and (await r.json())["reason"] == "Ray's answer headers are too large"
    await wait_until(lambda: raw.open_connections == 0)  # and the connection closed


async def test_a_client_going_away_closes_rays_connection(make_proxy: Any, mint: Any, upstream: Any) -> None:
    started = asyncio.Event()

    async def stalls(x: Exchange) -> None:
        if x.target.endswith("stall.js"):
            started.set()
            await x.until_closed()
        await answers_ok(x)

    raw = await upstream(stalls)
    proxy = await make_proxy(upstream=raw.url)
    assert (await get(proxy, mint))[0] == 200  # one idle connection, which the next request takes
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(f"GET /static/stall.js HTTP/1.1\r\nHost: x\r\n{ASSERTION}: {mint(ROOT)}\r\n\r\n".encode())
    await writer.drain()
    await asyncio.wait_for(started.wait(), 10)
    writer.close()  # the client goes away mid-request: its exchange is cancelled
    await wait_until(lambda: raw.open_connections == 0)  # and Ray's connection closed, not pooled
    pool = pool_of(proxy)
    assert not pool.active and not pool.idle
    assert (await get(proxy, mint))[0] == 200
    assert raw.connections == 2


async def test_a_slow_ray_is_504_before_the_answer_and_a_cut_after(
    make_proxy: Any, mint: Any, upstream: Any
) -> None:
    async def slow(x: Exchange) -> None:
        if x.target.endswith("silent.js"):
            await x.until_closed()
        elif x.target.endswith("stalls.js"):
            await x.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10)
            await x.until_closed()
        else:  # slow but never silent for a whole read timeout: fine, however long in total
            await x.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(5):
                await asyncio.sleep(0.4)
                await x.send(b"1\r\nx\r\n")
            await x.send(b"0\r\n\r\n")

    raw = await upstream(slow)
    proxy = await make_proxy(upstream=raw.url, extra=SLOW)
    async with proxy.get("/static/silent.js", headers={ASSERTION: mint(ROOT)}) as r:
        assert r.status == 504 and (await r.json())["reason"] == "Ray did not answer in time"
    async with proxy.get("/static/stalls.js", headers={ASSERTION: mint(ROOT)}) as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()
    assert await get(proxy, mint, "/static/trickle.js") == (200, b"xxxxx")
    await wait_until(lambda: raw.open_connections == 1)  # the two timed-out ones were closed


async def test_bytes_from_ray_while_idle_close_the_connection(
    make_proxy: Any, mint: Any, upstream: Any
) -> None:
    async def chatty(x: Exchange) -> None:
        await answers_ok(x)
        if x.number == 1:
            await asyncio.sleep(0.05)
            await x.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")

    raw = await upstream(chatty)
    proxy = await make_proxy(upstream=raw.url)
    assert await get(proxy, mint) == (200, b"answer 1.1")
    await wait_until(lambda: raw.open_connections == 0)
    assert await get(proxy, mint) == (200, b"answer 2.1")


async def test_an_early_answer_during_an_upload_is_relayed(make_proxy: Any, mint: Any, upstream: Any) -> None:
    async def refuses(x: Exchange) -> None:
        """Ray's 413 before it has read the body; then, as aiohttp's lingering close does, the rest
        of the body read and dropped until the proxy hangs up."""
        await x.send(b"HTTP/1.1 413 Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big!")
        await x.until_closed()

    raw = await upstream(refuses)
    proxy = await make_proxy(upstream=raw.url)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    size = 64 << 20
    writer.write(put_head(mint, size) + b"x" * (1 << 20))
    await writer.drain()
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413") and await reader.readexactly(8) == b"too big!"
    writer.close()
    pool = pool_of(proxy)
    await wait_until(lambda: not pool.active and not pool.idle)


async def test_a_slow_client_pauses_reading_from_ray(make_proxy: Any, mint: Any, upstream: Any) -> None:
    """Back-pressure towards Ray: while the client reads nothing, the proxy holds at most its high-water
    mark of Ray's answer and Ray's writes block; then the whole answer arrives intact."""
    size, written = 256 << 20, [0]

    async def floods(x: Exchange) -> None:
        await x.send(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
        block = b"z" * (1 << 20)
        for _ in range(size >> 20):
            await x.send(block)
            written[0] += len(block)

    raw = await upstream(floods)
    proxy = await make_proxy(upstream=raw.url)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port, limit=1 << 16)
    writer.write(f"GET /static/huge.js HTTP/1.1\r\nHost: x\r\n{ASSERTION}: {mint(ROOT)}\r\n\r\n".encode())
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    pool = pool_of(proxy)
    await wait_until(lambda: bool(pool.active))
    (conn,) = pool.active
    stable = -1
    for _ in range(50):  # until Ray's writes have stopped moving (bounded: 5 s)
        await asyncio.sleep(0.1)
        if written[0] == stable:
            break
        stable = written[0]
    assert written[0] < size // 4  # kernel buffers and our high-water mark, not the whole answer
    assert conn.buffered <= HIGH_WATER + (1 << 20)
    got = 0
    async with asyncio.timeout(60):
        while got < size:
            got += len(await reader.read(1 << 20))
    assert got == size
    writer.close()


async def test_a_slow_ray_pauses_the_upload(make_proxy: Any, mint: Any, upstream: Any) -> None:
    """Back-pressure towards the client: while Ray reads nothing, the client's body is not buffered."""
    reading = asyncio.Event()

    async def reads_later(x: Exchange) -> None:
        await reading.wait()
        body = await x.body()
        await x.answer(200, str(len(body)).encode())

    raw = await upstream(reads_later)
    proxy = await make_proxy(upstream=raw.url)
    size, sent = 64 << 20, 0
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(put_head(mint, size))
    block = b"u" * (1 << 20)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(2):
            while sent < size:
                writer.write(block)
                await writer.drain()
                sent += len(block)
    assert sent < size // 4  # blocked by the proxy not reading, not buffered by it
    reading.set()
    async with asyncio.timeout(60):
        while sent < size:
            writer.write(block)
            await writer.drain()
            sent += len(block)
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    writer.close()
    assert raw.exchanges[0].header("Content-Length") == str(size)


async def test_idle_connections_expire(
    make_proxy: Any, mint: Any, upstream: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool_mod, "IDLE_SECONDS", 0.3)
    raw = await upstream(answers_ok)
    proxy = await make_proxy(upstream=raw.url)
    assert await get(proxy, mint) == (200, b"answer 1.1")
    await wait_until(lambda: raw.open_connections == 0)  # closed by the proxy's sweep
    assert await get(proxy, mint) == (200, b"answer 2.1")


async def test_shutdown_closes_pooled_connections(make_proxy: Any, mint: Any, upstream: Any) -> None:
    raw = await upstream(answers_ok)
    proxy = await make_proxy(upstream=raw.url)
    results = await asyncio.gather(*(get(proxy, mint) for _ in range(8)))
    assert all(status == 200 for status, _ in results)
    assert raw.open_connections >= 1
    pool = pool_of(proxy)
    await proxy.close()
    await wait_until(lambda: raw.open_connections == 0)
    assert pool.closing and not pool.idle and not pool.active


async def test_raw_request_reaches_ray_byte_for_byte(make_proxy: Any, mint: Any, upstream: Any) -> None:
    """Header values that are not UTF-8 reach Ray as the client sent them."""
    raw = await upstream(answers_ok)
    proxy = await make_proxy(upstream=raw.url)
    request = (
        f"GET {VERSION}?q=1 HTTP/1.1\r\nHost: x\r\n{ASSERTION}: {mint(ROOT)}\r\n".encode()
        + b"X-Latin: caf\xe9\r\nConnection: close\r\n\r\n"
    )
    status, _ = await raw_http(proxy.port, request)
    assert status == 200
    head = raw.exchanges[0].head
    assert head.startswith(f"GET {VERSION}?q=1 HTTP/1.1\r\n".encode()) and b"X-Latin: caf\xe9\r\n" in head


async def test_the_proxys_own_questions_go_through_the_pool(upstream: Any) -> None:
    """`fetch` (job owners, Ray's redaction switch): the answer whole, or UpstreamError beyond its
    limit; a stale connection replayed like any bodiless GET."""

    async def answers(x: Exchange) -> None:
        if x.number == 2:
            x.close()
            return
        size = int(x.target.rpartition("=")[2])
        await x.answer(200, b"j" * size)

    raw = await upstream(answers)
    pool = Pool("127.0.0.1", raw.port, 5, 5)
    try:
        assert await fetch_pooled(pool, "/api/jobs/a?n=100", "h", [], 1000) == (200, b"j" * 100)
        assert await fetch_pooled(pool, "/api/jobs/a?n=200", "h", [], 1000) == (200, b"j" * 200)
        with pytest.raises(UpstreamError, match="larger than 1000 bytes"):
            await fetch_pooled(pool, "/api/jobs/a?n=5000", "h", [], 1000)
        assert not pool.active and len(pool.idle) == 1  # read whole, so its connection stayed clean
    finally:
        await pool.close()
    assert [(x.conn, x.number) for x in raw.exchanges] == [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1)]
