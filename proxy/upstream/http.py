"""Plain HTTP to Ray, streamed both ways: the request body is relayed as it arrives and the response
is written as Ray produces it. Nothing is buffered beyond one chunk.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from yarl import URL

from ..model import RequestContext
from .errors import BodyTooLarge, UpstreamError
from .headers import Headers, response_headers

log = logging.getLogger("ray_iap_proxy.upstream")

# Headers aiohttp's client would add on its own; we add none the caller did not send.
_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
_NO_BODY_STATUSES = frozenset({204, 304})


async def _relay_body(request: web.Request, ctx: RequestContext, limit: int) -> AsyncIterator[bytes]:
    while True:
        chunk = await request.content.readany()
        if not chunk:
            return
        ctx.bytes_in += len(chunk)
        if ctx.bytes_in > limit:
            raise BodyTooLarge(limit)
        yield chunk


def has_body(request: web.Request) -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


async def forward_http(
    request: web.Request,
    ctx: RequestContext,
    session: aiohttp.ClientSession,
    url: URL,
    headers: Headers,
    max_body_bytes: int,
) -> web.StreamResponse:
    """Send the request to Ray and stream the answer back. Raises UpstreamError before the answer
    has started; after that, a failure aborts the client connection so the truncation is visible."""
    if request.content_length is not None and request.content_length > max_body_bytes:
        raise BodyTooLarge(max_body_bytes)
    body = _relay_body(request, ctx, max_body_bytes) if has_body(request) else None
    if body is not None and request.content_length is not None:
        headers = [*headers, ("Content-Length", str(request.content_length))]
    sent = {name.lower() for name, _ in headers}
    skip = {h for h in _AUTO_HEADERS if h.lower() not in sent}
    response: web.StreamResponse | None = None
    try:
        async with session.request(
            request.method,
            url,
            headers=headers,
            data=body,
            allow_redirects=False,
            skip_auto_headers=skip,
            compress=None,
        ) as upstream:
            ctx.upstream_status = upstream.status
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in response_headers(
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in upstream.raw_headers
            ):
                response.headers.add(name, value)
            await response.prepare(request)
            if request.method != "HEAD" and upstream.status not in _NO_BODY_STATUSES:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                    ctx.bytes_out += len(chunk)
            await response.write_eof()
            return response
    except BodyTooLarge:
        raise
    except (ConnectionResetError, aiohttp.ClientConnectionResetError) as exc:
        if response is not None and response.prepared:  # the client went away mid-response
            ctx.extra["aborted"] = "client"
            return response
        raise UpstreamError(502, "connection reset") from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        return _fail(request, ctx, response, UpstreamError(504, "Ray did not answer in time"), exc)
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamError(502, "Ray is not reachable") from exc
    except aiohttp.ClientError as exc:
        return _fail(request, ctx, response, UpstreamError(502, "Ray failed mid-response"), exc)


def _fail(
    request: web.Request,
    ctx: RequestContext,
    response: web.StreamResponse | None,
    error: UpstreamError,
    exc: BaseException,
) -> web.StreamResponse:
    if response is None or not response.prepared:
        raise error from exc
    # Headers are out: the only honest signal left is to cut the connection.
    ctx.extra["aborted"] = "upstream"
    ctx.reason = error.reason
    log.warning(
        "request %s: %s after the response started (%s)", ctx.request_id, error.reason, type(exc).__name__
    )
    if request.transport is not None:
        request.transport.abort()
    return response


def upstream_timeout(connect: float, read: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect, sock_read=read)
