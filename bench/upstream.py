"""The loopback stand-in for the Ray dashboard that `make bench` measures against, run as its own process.

    python -m bench.upstream --port 18265 --jwks-port 18266 --jwks-file jwks.json --ray-token T

Routes (all answered from memory, no access log):

    GET /api/version                    a Ray-shaped JSON answer of about 128 bytes
    GET /static/{name}                  DOWNLOAD_BYTES (1 MiB), streamed in 64 KiB chunks
    PUT /api/packages/{proto}/{name}    reads and discards the body; answers {"bytes": n}
    GET /api/gcs_healthz                "success" (the proxy's readiness probe)
    GET /_bench/stats                   counters: requests, how many carried Ray's token, key set fetches

and, on --jwks-port, `GET /jwks.json`: the key set from --jwks-file, for the proxy's and Apache's
production fetch paths. It prints `ready` on stdout once both listeners are up and stops on SIGTERM.
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


def stub_app(ray_token: str | None, stats: dict[str, int]) -> web.Application:
    stats.update(requests=0, with_ray_token=0, bytes_in=0, bytes_out=0)
    expected = f"Bearer {ray_token}" if ray_token else None
    chunk = b"\x5a" * CHUNK

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
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.content_length = DOWNLOAD_BYTES
        await resp.prepare(request)
        for _ in range(DOWNLOAD_BYTES // CHUNK):
            await resp.write(chunk)
        await resp.write_eof()
        stats["bytes_out"] += DOWNLOAD_BYTES
        return resp

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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    try:
        await stop.wait()
    finally:
        for runner in runners:
            await runner.cleanup()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--jwks-port", type=int, required=True)
    p.add_argument("--jwks-file", required=True)
    p.add_argument("--ray-token")
    parsed = p.parse_args()
    parsed.jwks = Path(parsed.jwks_file).read_bytes()
    asyncio.run(main(parsed))
    sys.exit(0)
