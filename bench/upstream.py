"""The loopback stand-in for the Ray dashboard that `make bench` measures against, run as its own process.

    python -m bench.upstream --port 18265 --jwks-port 18266 --jwks-file jwks.json --ray-token T \
        [--fast-port 18267]

Routes (all answered from memory, no access log), on aiohttp with uvloop:

    GET /api/version                    a Ray-shaped JSON answer of about 128 bytes
    GET /static/{name}                  DOWNLOAD_BYTES (1 MiB), streamed in 64 KiB chunks; with
                                        `?bytes=N`, N bytes in 1 MiB writes (the 1 GiB stream)
    PUT /api/packages/{proto}/{name}    reads and discards the body; answers {"bytes": n}
    GET /api/jobs/{id}/logs/tail        a WebSocket that stays open and quiet (the idle-WebSocket point)
    GET /api/gcs_healthz                "success" (the proxy's readiness probe)
    GET /_bench/stats                   counters: requests, how many carried Ray's token, key set fetches

on --jwks-port, `GET /jwks.json`: the key set from --jwks-file, for the proxy's and Apache's
production fetch paths; and on --fast-port a canned answer to every request, written by a bare
asyncio protocol (no HTTP parsing beyond counting request heads), so that an upstream costs next to
nothing where the proxy's own scaling is measured (`--workers`). It prints `ready` on stdout once the
listeners are up and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from aiohttp import web

CHUNK = 64 * 1024
BIG_CHUNK = 1024 * 1024
DOWNLOAD_BYTES = 1024 * 1024
VERSION_BODY = json.dumps(
    {
        "version": "4",
        "ray_version": "2.60.0",
        "ray_commit": "5f2d1e0c9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d",
        "session_name": "session_bench_00",
    },
    separators=(",", ":"),
).encode()


CANNED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(VERSION_BODY)
    + VERSION_BODY
)


class Canned(asyncio.Protocol):
    """One canned answer per request head received (GETs without bodies only)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.tail = b""

    def data_received(self, data: bytes) -> None:
        data = self.tail + data
        n = data.count(b"\r\n\r\n")
        self.tail = data[data.rfind(b"\r\n\r\n") + 4 :] if n else data[-3:]
        if n:
            self.transport.write(CANNED * n)  # type: ignore[attr-defined]


def stub_app(ray_token: str | None, stats: dict[str, int]) -> web.Application:
    stats.update(requests=0, with_ray_token=0, bytes_in=0, bytes_out=0, websockets=0)
    expected = f"Bearer {ray_token}" if ray_token else None
    chunk = b"\x5a" * CHUNK
    big = b"\x5a" * BIG_CHUNK

    def count(request: web.Request) -> None:
        stats["requests"] += 1
        if expected is not None and request.headers.get("X-Ray-Authorization") == expected:
            stats["with_ray_token"] += 1

    async def version(request: web.Request) -> web.Response:
        count(request)
        stats["bytes_out"] += len(VERSION_BODY)
        return web.Response(body=VERSION_BODY, content_type="application/json")

    async def static(request: web.Request) -> web.StreamResponse:
        count(request)
        size = int(request.query.get("bytes", DOWNLOAD_BYTES))
        piece = chunk if size == DOWNLOAD_BYTES else big
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.content_length = size
        await resp.prepare(request)
        left = size
        while left:
            part = piece if left >= len(piece) else piece[:left]
            await resp.write(part)
            left -= len(part)
        await resp.write_eof()
        stats["bytes_out"] += size
        return resp

    async def tail(request: web.Request) -> web.StreamResponse:
        count(request)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        stats["websockets"] += 1
        async for _ in ws:  # quiet until closed
            pass
        return ws

    async def upload(request: web.Request) -> web.Response:
        count(request)
        n = 0
        while True:
            data = await request.content.readany()
            if not data:
                break
            n += len(data)
        stats["bytes_in"] += n
        return web.json_response({"bytes": n})

    async def healthz(request: web.Request) -> web.Response:
        count(request)
        return web.Response(text="success")

    async def bench_stats(_request: web.Request) -> web.Response:
        return web.json_response(stats)

    app = web.Application()
    app.router.add_get("/api/version", version)
    app.router.add_get("/static/{name:.+}", static)
    app.router.add_put("/api/packages/{protocol}/{name}", upload)
    app.router.add_get("/api/jobs/{job}/logs/tail", tail)
    app.router.add_get("/api/gcs_healthz", healthz)
    app.router.add_get("/_bench/stats", bench_stats)
    return app


def jwks_app(body: bytes, stats: dict[str, int]) -> web.Application:
    stats["jwks_fetches"] = 0

    async def jwks(_request: web.Request) -> web.Response:
        stats["jwks_fetches"] += 1
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/jwks.json", jwks)
    return app


async def main(args: argparse.Namespace) -> None:
    stats: dict[str, int] = {}
    runners = [
        web.AppRunner(stub_app(args.ray_token, stats), access_log=None),
        web.AppRunner(jwks_app(args.jwks, stats), access_log=None),
    ]
    for runner, port in zip(runners, (args.port, args.jwks_port), strict=True):
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
    loop = asyncio.get_running_loop()
    fast = await loop.create_server(Canned, "127.0.0.1", args.fast_port) if args.fast_port else None
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    try:
        await stop.wait()
    finally:
        for runner in runners:
            await runner.cleanup()
        if fast is not None:
            fast.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--jwks-port", type=int, required=True)
    p.add_argument("--jwks-file", required=True)
    p.add_argument("--ray-token")
    p.add_argument("--fast-port", type=int)
    parsed = p.parse_args()
    parsed.jwks = Path(parsed.jwks_file).read_bytes()
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(parsed))
    sys.exit(0)
