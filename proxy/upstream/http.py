"""Plain HTTP to Ray over aiohttp's client, streamed both ways: the request body is relayed as it
arrives and the response is written as Ray produces it. Nothing is buffered beyond one chunk.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from yarl import URL

from ..errors import BodyTooLarge, ClientFault, Kind, UpstreamError
from ..model import RequestContext
from .errors import MID_RESPONSE, is_reset, upstream_error
from .headers import Headers, response_headers

log = logging.getLogger("ray_iap_proxy.upstream")

# Headers aiohttp's client would add on its own; we add none the caller did not send.
_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
_NO_BODY_STATUSES = frozenset({204, 304})
# Answers up to this size with a Content-Length are read as one chunk and sent in one write.
SMALL_BODY_BYTES = 64 * 1024


class _Upload:
    """The request body, relayed chunk by chunk. A failure on the client's side is kept in `error`:
    aiohttp's client reports it only as a failure to send, which must not read as Ray's fault."""

    def __init__(self, request: web.Request, ctx: RequestContext, limit: int, stall: float | None) -> None:
        self.request, self.ctx, self.limit, self.stall = request, ctx, limit, stall
        self.error: ClientFault | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            try:
                async with asyncio.timeout(self.stall):
                    chunk = await self.request.content.readany()
            except TimeoutError:
                self.error = ClientFault(f"request body stalled for {self.stall:g} s", Kind.CLIENT_TIMEOUT)
                raise self.error from None
            except web.RequestPayloadError:
                self.error = ClientFault("malformed request body")
                raise self.error from None
            if not chunk:
                return
            self.ctx.bytes_in += len(chunk)
            if self.ctx.bytes_in > self.limit:
                self.error = BodyTooLarge(self.limit)
                raise self.error
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
    client_stall_seconds: float | None = None,
    replacement: bytes | None = None,
) -> web.StreamResponse:
    """Send the request to Ray and stream the answer back. Raises UpstreamError (Ray's fault),
    ClientFault or BodyTooLarge (the client's) before the answer has started; after that, a failure
    aborts the client connection so the truncation is visible. `client_stall_seconds` bounds each
    wait for the client: for the next piece of its body, or for it to take the next piece of ours.
    `replacement` is a body the proxy rewrote (a job submission, read already), sent instead."""
    if request.content_length is not None and request.content_length > max_body_bytes:
        raise BodyTooLarge(max_body_bytes)
    upload = None
    body: AsyncIterator[bytes] | bytes | None = replacement
    if replacement is not None:
        headers = [*headers, ("Content-Length", str(len(replacement)))]
    elif has_body(request):
        upload = _Upload(request, ctx, max_body_bytes, client_stall_seconds)
        body = upload.chunks()
        if request.content_length is not None:
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
            length = upstream.content_length
            if length is not None and length <= SMALL_BODY_BYTES and request.method != "HEAD":
                return await _small(request, ctx, upstream)
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in response_headers(
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in upstream.raw_headers
            ):
                response.headers.add(name, value)
            _tag(response, ctx)
            await response.prepare(request)
            ctx.status = upstream.status
            if request.method != "HEAD" and upstream.status not in _NO_BODY_STATUSES:
                async for chunk in upstream.content.iter_any():
                    await _write(response, chunk, client_stall_seconds)
                    ctx.bytes_out += len(chunk)
            await response.write_eof()
            return response
    except ClientFault as exc:  # too large, or a client that stopped reading our answer
        return _fail(request, ctx, response, exc, exc)
    except (TimeoutError, aiohttp.ClientError) as exc:
        if is_reset(exc) and response is not None and response.prepared:  # the client went away
            ctx.extra["aborted"] = "client"
            return response
        if upload is not None and upload.error is not None:  # the client's body failed, not Ray
            return _fail(request, ctx, response, upload.error, exc)
        return _fail(request, ctx, response, upstream_error(exc), exc)


async def _small(request: web.Request, ctx: RequestContext, upstream: aiohttp.ClientResponse) -> web.Response:
    """A small answer of known length (most API calls) is one chunk: read it and send headers and
    body in a single write instead of three."""
    try:
        body = await upstream.content.readexactly(upstream.content_length or 0)
    except asyncio.IncompleteReadError as exc:
        raise UpstreamError(MID_RESPONSE) from exc
    response = web.Response(status=upstream.status, reason=upstream.reason, body=body)
    for name, value in response_headers(
        (k.decode("latin-1"), v.decode("latin-1")) for k, v in upstream.raw_headers
    ):
        if name.lower() != "content-length":
            response.headers.add(name, value)
    _tag(response, ctx)
    ctx.status, ctx.bytes_out = upstream.status, len(body)
    return response


def _tag(response: web.StreamResponse, ctx: RequestContext) -> None:
    """The request id on allowed answers too, so anyone can quote it; ours, not Ray's."""
    if ctx.request_id:
        response.headers["X-Request-Id"] = ctx.request_id


async def _write(response: web.StreamResponse, chunk: bytes, stall: float | None) -> None:
    try:
        async with asyncio.timeout(stall):
            await response.write(chunk)
    except TimeoutError:
        raise ClientFault(f"client stopped reading for {stall:g} s", Kind.CLIENT_TIMEOUT) from None


def _fail(
    request: web.Request,
    ctx: RequestContext,
    response: web.StreamResponse | None,
    error: UpstreamError | ClientFault,
    exc: BaseException,
) -> web.StreamResponse:
    if response is None or not response.prepared:
        raise error from (None if error is exc else exc)
    # Headers are out: the only honest signal left is to cut the connection.
    ctx.extra["aborted"] = "client" if isinstance(error, ClientFault) else "upstream"
    ctx.reason = error.reason
    log.warning(
        "request %s: %s after the response started (%s)", ctx.request_id, error.reason, type(exc).__name__
    )
    if request.transport is not None:
        request.transport.abort()
    return response


def upstream_timeout(connect: float, read: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect, sock_read=read)
