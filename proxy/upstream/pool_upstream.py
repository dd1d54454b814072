"""The upstream the proxy runs with: plain HTTP (and the proxy's own questions to Ray, `fetch`) over
the keep-alive pool; WebSocket upgrades and the readiness probe over aiohttp's `ClientSession`
(`AiohttpUpstream`), which stays for what the pool does not speak."""

from __future__ import annotations

from aiohttp import web
from yarl import URL

from ..model import RequestContext
from ..settings import Limits
from .base import AiohttpUpstream, Upstream
from .headers import Headers
from .pool import Pool
from .pool_relay import fetch_pooled, forward_pooled


def make_upstream(base: str, limits: Limits) -> Upstream:
    """The pool for plain http:// (Ray's dashboard on loopback); aiohttp's client for https://."""
    if URL(base).scheme == "http":
        return PoolUpstream(base, limits)
    return AiohttpUpstream(base, limits)


class PoolUpstream(AiohttpUpstream):
    """`Upstream` for one Ray dashboard at `base` (`http://HOST:PORT`): plain HTTP and `fetch` over the
    pool; WebSockets and readiness as `AiohttpUpstream`. Built inside the running loop."""

    def __init__(self, base: str, limits: Limits) -> None:
        url = URL(base)
        if url.scheme != "http" or not url.host or url.port is None:
            raise ValueError(f"upstream {base!r}: the pool speaks plain http://HOST:PORT only")
        super().__init__(base, limits)
        self.host = url.raw_host or url.host
        self.host_header = f"[{self.host}]:{url.port}" if ":" in self.host else f"{self.host}:{url.port}"
        self.pool = Pool(
            self.host,
            url.port,
            limits.upstream_connect_timeout_seconds,
            limits.upstream_read_timeout_seconds,
        )

    async def http(
        self,
        request: web.Request,
        ctx: RequestContext,
        target: str,
        headers: Headers,
        body: bytes | None = None,
    ) -> web.StreamResponse:
        limits = self.limits
        return await forward_pooled(
            self.pool,
            request,
            ctx,
            target,
            self.host_header,
            headers,
            limits.max_body_bytes,
            limits.client_read_timeout_seconds,
            replacement=body,
        )

    async def fetch(self, target: str, headers: Headers, limit: int) -> tuple[int, bytes]:
        """Raises UpstreamError when Ray cannot be asked or answers more than `limit` bytes; the
        caller bounds the time (a cancelled fetch closes its connection)."""
        return await fetch_pooled(self.pool, target, self.host_header, headers, limit)

    async def close(self) -> None:
        await self.pool.close()
        await super().close()
