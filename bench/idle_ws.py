"""Idle WebSockets through a target: N opened (a job-log tail each, which the stub keeps open and
quiet), the target's resident memory before and after, and its CPU while they sit idle."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.procs import proc_cpu_seconds
from bench.settings import TOKEN_HEADER

WS_PATH = "/api/jobs/raysubmit_bench/logs/tail"
IDLE_SECONDS = 5.0


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def idle_websockets(url: str, token: str, pid: int, count: int) -> dict[str, Any]:
    import aiohttp

    before = rss_bytes(pid)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        try:
            for start in range(0, count, 100):  # a hundred handshakes at a time
                batch = await asyncio.gather(
                    *(
                        session.ws_connect(url + WS_PATH, headers={TOKEN_HEADER: token}, autoping=False)
                        for _ in range(start, min(count, start + 100))
                    )
                )
                sockets.extend(batch)
            await asyncio.sleep(1.0)  # let the handshakes' garbage go
            opened = rss_bytes(pid)
            cpu0, t0 = proc_cpu_seconds([pid]), time.monotonic()
            await asyncio.sleep(IDLE_SECONDS)
            idle_cpu = proc_cpu_seconds([pid]) - cpu0
            idle_s = time.monotonic() - t0
            still_open = sum(not ws.closed for ws in sockets)
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {
        "websockets": count,
        "open_after_idle": still_open,
        "rss_before_mib": round(before / (1 << 20), 1),
        "rss_growth_mib": round((opened - before) / (1 << 20), 1),
        "idle_seconds": round(idle_s, 1),
        "idle_cpu_pct": round(100 * idle_cpu / idle_s, 2),
    }
