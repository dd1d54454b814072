"""Plain HTTP to Ray over the pool (`pool.py`): the request's head written in one piece, its body
relayed as it arrives (with the client's framing: Content-Length, or chunked), and Ray's answer relayed
as it comes. Small answers of known length are sent to the client as one `web.Response`.

- While a body is uploading, Ray's answer is awaited at the same time: an early answer (Ray's 413) is
  relayed, the upload stopped, and the connection closed.
- A request is sent again only when it cannot have done anything: a bodiless GET, HEAD, OPTIONS or
  TRACE (the methods Go's net/http replays) on a reused connection that returned not one byte
  (it was closed under us), once, on a new connection.
- Errors are `upstream.errors`' kinds: before the answer has started they reach the pipeline's one
  status table; after, the client's connection is cut so the truncation is visible (as `http.py`).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from multidict import CIMultiDict

from ..errors import BodyTooLarge, ClientFault, Kind, ProxyError, UpstreamError
from ..model import RequestContext
from .headers import Headers, response_headers
from .http import SMALL_BODY_BYTES, _fail, _tag, _Upload, _write, has_body
from .pool import Pool
from .pool_conn import Connection

log = logging.getLogger("ray_iap_proxy.upstream")

REPLAYABLE = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_SAYS_LENGTH = frozenset({"POST", "PUT", "PATCH"})  # bodiless, they still say Content-Length: 0
_NO_BODY_STATUSES = frozenset({204, 304})


def request_head(method: str, target: str, host: str, headers: Headers, framing: str | None) -> bytes:
    """The request line and headers, as bytes. The client's header values are as aiohttp decoded them
    (UTF-8 with surrogates for other bytes), so they are encoded back byte for byte."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if framing is not None:
        lines.append(framing)
    text = "\r\n".join(lines) + "\r\n\r\n"
    breaks = len(lines) + 1
    if text.count("\n") != breaks or text.count("\r") != breaks or " " in target:
        raise ProxyError("a request line or header holds a line break", Kind.INTERNAL)
    return text.encode("utf-8", "surrogateescape")


async def forward_pooled(
    pool: Pool,
    request: web.Request,
    ctx: RequestContext,
    target: str,
    host: str,
    headers: Headers,
    max_body_bytes: int,
    client_stall_seconds: float | None,
    replacement: bytes | None = None,
) -> web.StreamResponse:
    """`http.forward_http`'s contract, over the pool."""
    if request.content_length is not None and request.content_length > max_body_bytes:
        raise BodyTooLarge(max_body_bytes)
    method = request.method
    upload = None
    framing: str | None = None
    if replacement is not None:
        framing = f"Content-Length: {len(replacement)}"
    elif has_body(request):
        upload = _Upload(request, ctx, max_body_bytes, client_stall_seconds)
        length = request.content_length
        framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    elif method in _SAYS_LENGTH:
        framing = "Content-Length: 0"
    head = request_head(method, target, host, headers, framing)
    conn = await _open(pool, head, method, replacement, upload, request.content_length)
    response: web.StreamResponse | None = None
    try:
        ctx.upstream_status = conn.status
        if method == "HEAD" or conn.status in _NO_BODY_STATUSES:
            response = _start(conn, ctx)
            await response.prepare(request)
            await response.write_eof()
            return response
        if conn.length is not None and conn.length <= SMALL_BODY_BYTES:
            return await _small(conn, ctx)
        response = _start(conn, ctx)
        await response.prepare(request)
        while True:
            if conn.chunks:
                data = conn.take()
                await _write(response, data, client_stall_seconds)
                ctx.bytes_out += len(data)
            elif conn.complete:
                break
            elif conn.error is not None:
                raise conn.error
            else:
                await conn.wait()
        await response.write_eof()
        return response
    except ClientFault as exc:  # a client that stopped reading our answer
        return _fail(request, ctx, response, exc, exc)
    except UpstreamError as exc:
        return _fail(request, ctx, response, exc, exc)
    except ConnectionError:  # writing to a client that went away
        if response is None or not response.prepared:
            raise
        ctx.extra["aborted"] = "client"
        return response
    finally:
        pool.release(conn)


async def fetch_pooled(pool: Pool, target: str, host: str, headers: Headers, limit: int) -> tuple[int, bytes]:
    """A small GET the proxy asks Ray itself: status and at most `limit` bytes (else UpstreamError)."""
    conn = await _open(pool, request_head("GET", target, host, headers, None), "GET", None, None, None)
    try:
        while not conn.complete:
            if conn.buffered > limit:
                break
            if conn.error is not None:
                raise conn.error
            await conn.wait()
        if conn.buffered > limit:
            raise UpstreamError(f"Ray's answer to {target[:80]} is larger than {limit} bytes")
        return conn.status, conn.take() if conn.chunks else b""
    finally:
        pool.release(conn)


def _start(conn: Connection, ctx: RequestContext) -> web.StreamResponse:
    response = web.StreamResponse(status=conn.status, reason=conn.reason.decode("latin-1") or None)
    for name, value in response_headers(conn.headers):
        response.headers.add(name, value)
    _tag(response, ctx)
    ctx.status = conn.status
    return response


async def _small(conn: Connection, ctx: RequestContext) -> web.Response:
    """All of a small answer of known length, then headers and body in one write."""
    while not conn.complete:
        if conn.error is not None:
            raise conn.error
        await conn.wait()
    body = conn.take() if conn.chunks else b""
    headers = CIMultiDict(response_headers(conn.headers))  # in one go: cheaper than one add each
    headers.popall("Content-Length", None)  # aiohttp frames the body it is given
    if ctx.request_id:
        headers["X-Request-Id"] = ctx.request_id  # as `_tag`: ours, not Ray's
    response = web.Response(
        status=conn.status, reason=conn.reason.decode("latin-1") or None, body=body, headers=headers
    )
    ctx.status, ctx.bytes_out = conn.status, len(body)
    return response


async def _open(
    pool: Pool,
    head: bytes,
    method: str,
    body: bytes | None,
    upload: _Upload | None,
    length: int | None,
) -> Connection:
    """A connection on which Ray's answer has begun (its status and headers are in)."""
    fresh = False
    while True:
        conn = await pool.acquire(fresh)
        try:
            await _send(conn, head, method == "HEAD", body, upload, length)
            return conn
        except UpstreamError:
            pool.release(conn)  # failed: closed
            replay = upload is None and body is None and method in REPLAYABLE
            if fresh or not (replay and conn.reuse and conn.received == 0):
                raise
            fresh = True  # the pool's connections may all be as stale as this one
        except BaseException:
            pool.release(conn)
            raise


async def _send(
    conn: Connection,
    head: bytes,
    head_only: bool,
    body: bytes | None,
    upload: _Upload | None,
    length: int | None,
) -> None:
    conn.begin(head_only)
    if upload is None:
        conn.write(head + body if body else head)
        conn.sent = True
        await _head(conn, None)
        return
    conn.write(head)
    pump = asyncio.get_running_loop().create_task(_pump(conn, upload, length))
    try:
        await _head(conn, pump)
    finally:
        if pump.done():
            _retrieve(pump)
        else:  # Ray answered before the body was sent whole: stop (and never reuse the connection)
            pump.cancel()
            pump.add_done_callback(_retrieve)


async def _head(conn: Connection, pump: asyncio.Task[None] | None) -> None:
    """Until Ray's answer has begun. While the body is still being sent, Ray's silence is expected,
    and a failure of the client's body ends the exchange (its ClientFault, not Ray's fault)."""
    while not conn.head_done:
        if pump is not None and pump.done():
            exc = pump.exception()
            if isinstance(exc, ClientFault):
                conn.abort()
                raise exc
            pump = None  # sent (or Ray went away: its error follows)
        if conn.error is not None:
            raise conn.error
        await conn.wait(bounded=pump is None)


async def _pump(conn: Connection, upload: _Upload, length: int | None) -> None:
    try:
        sent = 0
        async for chunk in upload.chunks():
            if length is None:
                conn.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
            else:
                conn.write(chunk)
            sent += len(chunk)
            await conn.drain()
        if length is None:
            conn.write(b"0\r\n\r\n")
        elif sent != length:  # cannot happen behind aiohttp's parser; never leave Ray waiting
            raise ClientFault("request body shorter than its Content-Length")
        conn.sent = True
    except ConnectionError:
        pass  # Ray closed: connection_lost has recorded why
    finally:
        conn.wake()


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
