"""The upstream interface: what the HTTP pipeline asks of "Ray", and its implementation over
aiohttp's client. A test double, or a faster hop for plain HTTP, is another implementation."""

from __future__ import annotations

from typing import Protocol

import aiohttp
from aiohttp import web
from yarl import URL

from ..errors import UpstreamError
from ..model import RequestContext
from ..settings import Limits
from .errors import upstream_error
from .headers import RAY_TOKEN_HEADER, Headers
from .http import forward_http, upstream_timeout
from .websocket import forward_websocket

HEALTH_PATH = "/api/gcs_healthz"
HEALTH_TIMEOUT_SECONDS = 2.0


class Upstream(Protocol):
    async def http(
        self,
        request: web.Request,
        ctx: RequestContext,
        target: str,
        headers: Headers,
        body: bytes | None = None,
    ) -> web.StreamResponse: ...

    async def websocket(
        self, request: web.Request, ctx: RequestContext, target: str, headers: Headers
    ) -> web.StreamResponse: ...

    async def problem(self, ray_token: str | None) -> str | None:
        """Why Ray is not usable now (for readiness), or None."""
        ...

    async def fetch(self, target: str, headers: Headers, limit: int) -> tuple[int, bytes]:
        """A small GET the proxy asks Ray itself (a job's owner): status and at most `limit` bytes."""
        ...

    async def close(self) -> None: ...


class AiohttpUpstream:
    """HTTP and WebSocket to one Ray dashboard through one aiohttp `ClientSession`."""

    def __init__(self, base: str, limits: Limits) -> None:
        self.base = base
        self.limits = limits
        self.session = aiohttp.ClientSession(
            timeout=upstream_timeout(
                limits.upstream_connect_timeout_seconds, limits.upstream_read_timeout_seconds
            ),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            connector=aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True),
        )

    def url(self, target: str) -> URL:
        return URL(self.base + target, encoded=True)

    async def http(
        self,
        request: web.Request,
        ctx: RequestContext,
        target: str,
        headers: Headers,
        body: bytes | None = None,
    ) -> web.StreamResponse:
        limits = self.limits
        return await forward_http(
            request,
            ctx,
            self.session,
            self.url(target),
            headers,
            limits.max_body_bytes,
            limits.client_read_timeout_seconds,
            replacement=body,
        )

    async def websocket(
        self, request: web.Request, ctx: RequestContext, target: str, headers: Headers
    ) -> web.StreamResponse:
        return await forward_websocket(
            request, ctx, self.session, self.url(target), headers, self.limits.max_websocket_message_bytes
        )

    async def problem(self, ray_token: str | None) -> str | None:
        headers = {RAY_TOKEN_HEADER: f"Bearer {ray_token}"} if ray_token else {}
        try:
            async with self.session.get(
                self.url(HEALTH_PATH),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=HEALTH_TIMEOUT_SECONDS),
            ) as r:
                return None if r.status == 200 else f"Ray answered {r.status}"
        except (aiohttp.ClientError, TimeoutError):
            return "Ray not answering"

    async def fetch(self, target: str, headers: Headers, limit: int) -> tuple[int, bytes]:
        """Raises UpstreamError when Ray cannot be asked or answers more than `limit` bytes; the
        caller bounds the time."""
        try:
            async with self.session.get(self.url(target), headers=headers, allow_redirects=False) as r:
                body = bytearray()
                async for chunk in r.content.iter_chunked(64 * 1024):  # at most limit/64 KiB + 1 turns
                    body += chunk
                    if len(body) > limit:
                        raise UpstreamError(f"Ray's answer to {target[:80]} is larger than {limit} bytes")
                return r.status, bytes(body)
        except aiohttp.ClientError as exc:
            raise upstream_error(exc) from exc

    async def close(self) -> None:
        await self.session.close()
