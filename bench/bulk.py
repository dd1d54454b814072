"""Bulk transfers through a target: 1 MiB downloads and 16 MiB uploads, streamed by an aiohttp client."""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.settings import (
    BULK_SECONDS,
    DOWNLOAD_BYTES,
    DOWNLOAD_PATH,
    MAX_BULK_TRANSFERS,
    TOKEN_HEADER,
    UPLOAD_BYTES,
    UPLOAD_PATH,
)


async def bulk(url: str, token: str) -> dict[str, Any]:
    import aiohttp

    headers = {TOKEN_HEADER: token}
    payload = b"\xa5" * UPLOAD_BYTES
    out: dict[str, Any] = {}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        for kind in ("download", "upload"):
            times: list[float] = []
            start = time.monotonic()
            while len(times) < MAX_BULK_TRANSFERS and (
                len(times) < 3 or time.monotonic() - start < BULK_SECONDS
            ):
                t0 = time.perf_counter()
                if kind == "download":
                    n = 0
                    async with session.get(url + DOWNLOAD_PATH, headers=headers) as r:
                        if r.status != 200:
                            raise RuntimeError(f"download via {url}: {r.status}")
                        async for chunk in r.content.iter_chunked(1 << 16):
                            n += len(chunk)
                    if n != DOWNLOAD_BYTES:
                        raise RuntimeError(f"download via {url}: {n} bytes")
                else:
                    async with session.put(url + UPLOAD_PATH, headers=headers, data=payload) as r:
                        body = await r.json(content_type=None)
                        if r.status != 200 or body.get("bytes") != UPLOAD_BYTES:
                            raise RuntimeError(f"upload via {url}: {r.status} {body}")
                times.append(time.perf_counter() - t0)
            size = DOWNLOAD_BYTES if kind == "download" else UPLOAD_BYTES
            out[kind] = {
                "transfers": len(times),
                "mib_each": size / (1 << 20),
                "mib_per_s": round(len(times) * size / (1 << 20) / sum(times), 1),
                "median_ms": round(statistics.median(times) * 1000, 2),
            }
    return out
