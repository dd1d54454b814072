"""HTTP as the tests speak it: a blocking GET for processes, raw bytes for what client libraries would
refuse or normalise, and reading one framed response."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any


def http_get(url: str, headers: Mapping[str, str] | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``url``; return (status, body) for any HTTP status, raise OSError otherwise."""
    req = urllib.request.Request(url, headers=dict(headers or {}), method="GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (loopback only)
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def decode(body: bytes) -> Any:
    return json.loads(body)


async def raw_http(port: int, request: bytes, timeout: float = 5.0) -> tuple[int, bytes]:  # noqa: ASYNC109
    """Send bytes exactly as given to 127.0.0.1:port; return (status, whole answer). For targets and
    framings a well-behaved client library would refuse or normalise."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(1 << 20), timeout)
    finally:
        writer.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data


def get_request(target: str, token: str | None = None, method: str = "GET", extra: str = "") -> bytes:
    auth = f"x-goog-iap-jwt-assertion: {token}\r\n" if token else ""
    return f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}{extra}Connection: close\r\n\r\n".encode()


async def read_response(reader: asyncio.StreamReader, guard: float = 10.0) -> tuple[bytes, bytes]:
    """One response with a Content-Length: (head, body)."""
    async with asyncio.timeout(guard):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return head, await reader.readexactly(length)
