"""The one mapping of aiohttp's client exceptions to ours, shared by HTTP and WebSocket relaying."""

from __future__ import annotations

import aiohttp

from ..errors import Kind, UpstreamError

REACH = "Ray is not reachable"
TIMEOUT = "Ray did not answer in time"
MID_RESPONSE = "Ray failed mid-response"


def upstream_error(exc: BaseException) -> UpstreamError:
    """What a failure talking to Ray means, in our words."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return UpstreamError(
            f"Ray refused the WebSocket upgrade ({exc.status})", Kind.UPSTREAM_REFUSED, exc.status
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamError(REACH, Kind.UPSTREAM_UNREACHABLE)
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamError(TIMEOUT, Kind.UPSTREAM_TIMEOUT)
    if isinstance(exc, ConnectionResetError | aiohttp.ClientConnectionResetError):
        return UpstreamError("connection reset", Kind.UPSTREAM_FAILED)
    return UpstreamError(MID_RESPONSE, Kind.UPSTREAM_FAILED)


def is_reset(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionResetError | aiohttp.ClientConnectionResetError)
