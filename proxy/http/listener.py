"""The HTTP listener: aiohttp's server, with the proxy's answers where aiohttp would answer for us.

- A request aiohttp's parser refuses (bad request line, header too large, too many headers, bad
  framing) gets the pipeline's refusal: 400/414/431 as JSON with a request id and an access record.
  aiohttp's own answer would echo, and log at ERROR, the raw bytes it choked on: credentials included.
- A connection beyond `limits.max_connections` gets a canned 503 and is closed before anything is
  read from it.
- What aiohttp would answer before the application runs — an `Expect` header, an HTTP version other
  than 1.0/1.1 — is held back for the pipeline (`protocol.defer`): it decides first, then sends
  `100 Continue` or refuses in its own shape (417, 505).

`ProxyRunner` is `web.AppRunner` with both; `serve()` and the tests use it alike.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, BadStatusLine, InvalidURLError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from ..errors import Kind
from .pipeline import PROXY, handler_for, refuse_unparseable
from .protocol import defer
from .status import ERRORS, STATUS

log = logging.getLogger("ray_iap_proxy")
_REFUSAL_LOG_EVERY_SECONDS = 10.0
_BUSY_STATUS = STATUS[Kind.BUSY]
_BUSY_BODY = json.dumps(
    {"error": ERRORS[_BUSY_STATUS], "reason": "too many connections to this proxy"}
).encode()
BUSY = (
    f"HTTP/1.1 {_BUSY_STATUS} Service Unavailable\r\n".encode() + b"Content-Type: application/json\r\n"
    b"Cache-Control: no-store\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"Content-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY
)


class ProxyRequestHandler(RequestHandler):
    """One client connection."""

    def __init__(self, manager: ProxyServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.server = manager

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if len(self.server.connections) >= self.server.max_connections:
            self.server.refuse(transport)
            return
        super().connection_made(transport)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp: an answer has started, only a cut is left
            raise ConnectionError("response already started")
        if status >= 500:
            log.error("request from %s failed outside the pipeline", request.remote, exc_info=exc)
        parser = None
        if status == 400:
            kind, reason = parse_failure(exc, self.max_line_size)
            parser = type(exc).__name__
        elif status == 504:
            kind, reason = Kind.UPSTREAM_TIMEOUT, "request timed out inside the proxy"
        else:
            kind, reason = Kind.INTERNAL, "internal proxy error"
        return refuse_unparseable(request, self.server.app[PROXY], kind, reason, parser)


def parse_failure(exc: BaseException | None, line_limit: int) -> tuple[Kind, str]:
    """The kind and a safe reason for one of aiohttp's parser errors; its own message is never echoed
    or logged (it quotes the raw request, credentials included). `line_limit` is the request line
    limit the parser was given: a line-too-long at that limit is the target, any other a header."""
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else None
        if limit == line_limit:
            return Kind.TARGET_TOO_LONG, "request target too long"
        return Kind.HEADERS_TOO_LARGE, f"a request header is longer than {limit} bytes"
    if isinstance(exc, BadHttpMessage) and exc.message.startswith("Too many headers"):
        return Kind.HEADERS_TOO_LARGE, "too many request headers"
    if isinstance(exc, BadHttpMethod):
        return Kind.MALFORMED, "malformed or unknown method"
    if isinstance(exc, BadStatusLine):
        return Kind.MALFORMED, "malformed request line"
    if isinstance(exc, InvalidURLError):
        return Kind.MALFORMED, "malformed request target"
    return Kind.MALFORMED, "malformed request (headers or framing)"


class ProxyServer(web.Server):
    """aiohttp's low-level server, making `ProxyRequestHandler`s and counting refused connections."""

    def __init__(self, *args: Any, app: web.Application, max_connections: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = app
        self.max_connections = max_connections
        self._last_refusal_log = -_REFUSAL_LOG_EVERY_SECONDS

    def __call__(self) -> RequestHandler:
        return ProxyRequestHandler(self, loop=self._loop, **self._kwargs)

    def refuse(self, transport: asyncio.BaseTransport) -> None:
        telemetry = self.app[PROXY].telemetry
        telemetry.connections_refused += 1
        now = time.monotonic()
        if now - self._last_refusal_log >= _REFUSAL_LOG_EVERY_SECONDS:
            self._last_refusal_log = now
            log.warning(
                "connection limit (%d) reached: refusing new connections (%d refused so far)",
                self.max_connections,
                telemetry.connections_refused,
            )
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(BUSY)
        transport.close()


class ProxyRunner(web.AppRunner):
    """`web.AppRunner` serving through `ProxyServer`. Keyword arguments as for `web.AppRunner`, plus
    `max_connections`."""

    def __init__(self, app: web.Application, *, max_connections: int, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.max_connections = max_connections

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # runs the application's start-up (PROXY is set)
        return ProxyServer(
            defer(handler_for(self.app[PROXY])),
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            app=self.app,
            max_connections=self.max_connections,
            **plain._kwargs,
        )
