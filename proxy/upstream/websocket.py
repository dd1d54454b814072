"""WebSocket pass-through (`/api/jobs/{id}/logs/tail`): the upgrade is authorized like the GET it
is, the client's handshake is checked (`handshake_problem`) before Ray is dialled, Ray's handshake is
completed first, then frames are pumped both ways and close codes propagated.

A side that vanishes mid-stream (a reset, a write to a closed transport) ends the stream as an abort
of that side (`aborted: client` or `upstream` in the record), never as a proxy error.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
from aiohttp import WSMsgType, web
from multidict import MultiMapping
from yarl import URL

from ..errors import Kind
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
VERSION = "13"  # RFC 6455, the only version there is
_KEY = re.compile(r"^[A-Za-z0-9+/]{22}==$")  # base64 of 16 bytes
_GONE = (ConnectionError, aiohttp.ClientConnectionError)  # a side that vanished (resets included)


def is_upgrade(request: web.Request) -> bool:
    return (
        request.headers.get("Upgrade", "").lower() == "websocket"
        and "upgrade" in request.headers.get("Connection", "").lower()
    )


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a client's handshake cannot be relayed: a kind, a reason, and headers for the answer."""

    kind: Kind
    reason: str
    headers: Mapping[str, str] = field(default_factory=dict)


def _tokens(headers: MultiMapping[str], name: str) -> list[str]:
    return [t.strip().lower() for v in headers.getall(name, ()) for t in v.split(",") if t.strip()]


def attempts_handshake(headers: MultiMapping[str]) -> bool:
    """The request tries to open a WebSocket, however badly: an Upgrade, `Connection: upgrade` or any
    `Sec-WebSocket-*` header. A plain GET is relayed as one (Ray answers it as it sees fit)."""
    return (
        "Upgrade" in headers
        or "upgrade" in _tokens(headers, "Connection")
        or any(k.lower().startswith("sec-websocket-") for k in headers)
    )


def handshake_problem(method: str, headers: MultiMapping[str]) -> Problem | None:
    """What is wrong with a request to a WebSocket route that attempts a handshake, as an RFC 6455
    opening handshake, or None: checked before Ray is dialled, so a bad one never reaches Ray."""
    if not attempts_handshake(headers):
        return None
    upgrade = headers.getall("Upgrade", ())
    if [u.strip().lower() for u in upgrade] != ["websocket"]:
        required = {"Upgrade": "websocket", "Sec-WebSocket-Version": VERSION}
        why = "a WebSocket handshake needs Upgrade: websocket"
        return Problem(Kind.UPGRADE_REQUIRED, why, required)
    if method != "GET":
        return Problem(Kind.MALFORMED, f"a WebSocket handshake is a GET, not {method[:10]}")
    if "upgrade" not in _tokens(headers, "Connection"):
        return Problem(Kind.MALFORMED, "WebSocket handshake without Connection: Upgrade")
    versions = headers.getall("Sec-WebSocket-Version", ())
    if [v.strip() for v in versions] != [VERSION]:
        said = "missing" if not versions else "not 13"
        why = f"Sec-WebSocket-Version {said}: only version 13 is spoken"
        return Problem(Kind.UPGRADE_REQUIRED, why, {"Sec-WebSocket-Version": VERSION})
    keys = headers.getall("Sec-WebSocket-Key", ())
    if len(keys) != 1:
        return Problem(Kind.MALFORMED, "WebSocket handshake needs exactly one Sec-WebSocket-Key")
    if not _is_key(keys[0].strip()):
        return Problem(Kind.MALFORMED, "Sec-WebSocket-Key is not the base64 of 16 bytes")
    if headers.get("Transfer-Encoding") or headers.get("Content-Length", "0").strip() != "0":
        return Problem(Kind.MALFORMED, "a WebSocket handshake has no body")
    return None


def _is_key(key: str) -> bool:
    if not _KEY.match(key):
        return False
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


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
                tg.create_task(_pump(upstream, client, ctx, "bytes_out", "upstream", "client"))
                tg.create_task(_pump(client, upstream, ctx, "bytes_in", "client", "upstream"))
        except asyncio.CancelledError:  # shutdown's grace period is over, or the client went away
            if request.transport is None or request.transport.is_closing():
                ctx.extra.setdefault("aborted", "client")
            await _going_away(client, upstream)
            raise
        ctx.extra.setdefault("close_code", str(client.close_code))
        return client


async def _going_away(*sides: Side) -> None:
    """Say 1001 (going away) to both ends rather than just dropping the connections; bounded."""
    for side in sides:
        if not side.closed:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(GOING_AWAY_SECONDS):
                    await side.close(code=1001, message=b"proxy going away")


Side = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


async def _pump(
    source: Side, sink: Side, ctx: RequestContext, counter: str, source_name: str, sink_name: str
) -> None:
    """Copy frames from `source` to `sink` until `source` closes; then close `sink` with its code. A
    side that vanishes ends the pump as that side's abort; the other side is told 1001 (going away)."""
    try:
        code, message = await _copy(source, sink, ctx, counter, source_name)
    except _GONE:
        # A write to `sink` failed (it reset or closed under us); reads fail as messages, not here.
        ctx.extra["aborted"] = ctx.extra.get("aborted", sink_name)
        await _going_away(source)
        return
    if code in _UNSENDABLE_CODES:
        code = 1011 if code == 1006 else 1000
    if sink_name == "client":  # the code the client got, for the record (aiohttp keeps only its own)
        ctx.extra["close_code"] = str(code)
    with contextlib.suppress(*_GONE):
        if not sink.closed:
            await sink.close(code=code, message=message)
        if not source.closed:
            await source.close(code=code)


async def _copy(
    source: Side, sink: Side, ctx: RequestContext, counter: str, source_name: str
) -> tuple[int, bytes]:
    """Frames from `source` to `sink` until `source` ends: the close code and message to pass on."""
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
            return code, message
        elif msg.type is WSMsgType.ERROR:
            if isinstance(msg.data, _GONE):  # the source vanished: its abort, not a protocol error
                ctx.extra["aborted"] = ctx.extra.get("aborted", source_name)
                return 1011, b""
            too_big = "too big" in str(msg.data).lower() or "size" in str(msg.data).lower()
            return (1009 if too_big else 1011), b""
        elif msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED):
            if source.close_code in (None, 1006):  # closed without a close frame: it went away
                ctx.extra["aborted"] = ctx.extra.get("aborted", source_name)
            return source.close_code or 1000, b""
