"""WebSocket pass-through (`/api/jobs/{id}/logs/tail`): the upgrade is authorized like the GET it
is, Ray's handshake is completed first, then frames are pumped both ways and close codes propagated.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
from aiohttp import WSMsgType, web
from yarl import URL

from ..model import RequestContext
from .errors import upstream_error
from .headers import Headers, norm

# What ws_connect negotiates itself.
_HANDSHAKE = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)
_UNSENDABLE_CODES = frozenset({1005, 1006, 1015})
GOING_AWAY_SECONDS = 1.0  # how long a close frame may take when the stream is being cut


def is_upgrade(request: web.Request) -> bool:
    return (
        request.headers.get("Upgrade", "").lower() == "websocket"
        and "upgrade" in request.headers.get("Connection", "").lower()
    )


async def forward_websocket(
    request: web.Request,
    ctx: RequestContext,
    session: aiohttp.ClientSession,
    url: URL,
    headers: Headers,
    max_message_bytes: int,
) -> web.StreamResponse:
    ctx.websocket = True
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    protocols = tuple(p.strip() for p in offered.split(",") if p.strip())
    try:
        upstream = await session.ws_connect(
            url,
            headers=[(k, v) for k, v in headers if norm(k) not in _HANDSHAKE],
            protocols=protocols,
            autoclose=False,
            autoping=True,
            max_msg_size=max_message_bytes,
        )
    except (TimeoutError, aiohttp.ClientError) as exc:
        error = upstream_error(exc)
        ctx.upstream_status = error.upstream_status
        raise error from exc
    ctx.upstream_status = 101
    async with upstream:
        client = web.WebSocketResponse(
            protocols=(upstream.protocol,) if upstream.protocol else (),
            autoclose=False,
            autoping=True,
            max_msg_size=max_message_bytes,
        )
        if ctx.request_id:
            client.headers["X-Request-Id"] = ctx.request_id
        await client.prepare(request)
        ctx.status = 101
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_pump(upstream, client, ctx, "bytes_out"))
                tg.create_task(_pump(client, upstream, ctx, "bytes_in"))
        except asyncio.CancelledError:  # shutdown's grace period is over, or the client went away
            await _going_away(client, upstream)
            raise
        ctx.extra["close_code"] = str(client.close_code)
        return client


async def _going_away(*sides: Side) -> None:
    """Say 1001 (going away) to both ends rather than just dropping the connections; bounded."""
    for side in sides:
        if not side.closed:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(GOING_AWAY_SECONDS):
                    await side.close(code=1001, message=b"proxy going away")


Side = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


async def _pump(source: Side, sink: Side, ctx: RequestContext, counter: str) -> None:
    """Copy frames from `source` to `sink` until `source` closes; then close `sink` with its code."""
    code, message = 1000, b""
    while True:
        msg = await source.receive()
        if msg.type is WSMsgType.TEXT:
            setattr(ctx, counter, getattr(ctx, counter) + len(msg.data))
            if not sink.closed:
                await sink.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            setattr(ctx, counter, getattr(ctx, counter) + len(msg.data))
            if not sink.closed:
                await sink.send_bytes(msg.data)
        elif msg.type is WSMsgType.CLOSE:
            code = msg.data if isinstance(msg.data, int) else 1000
            message = (msg.extra or "").encode()[:120] if isinstance(msg.extra, str) else b""
            break
        elif msg.type is WSMsgType.ERROR:
            code = 1009 if "too big" in str(msg.data).lower() or "size" in str(msg.data).lower() else 1011
            break
        elif msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED):
            code = source.close_code or 1000
            break
    if code in _UNSENDABLE_CODES:
        code = 1011 if code == 1006 else 1000
    if not sink.closed:
        await sink.close(code=code, message=message)
    if not source.closed:
        await source.close(code=code)
