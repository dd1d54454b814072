"""What the adversarial, fault and fuzz suites share: a tripwire stand-in for Ray and the real proxy.

`RayDouble` registers the proxy's own route table with aiohttp's router, as Ray's dashboard does with
its routes, so it also tells which route *Ray* would have matched. A request reaches it legitimately
only when the test marks it with `MAY_PASS`; any other request that arrives is a refused request that
got through, and the `ray` fixture fails the test for it, whatever the test itself asserted. The one
exception is the proxy's own readiness probe (GET /api/gcs_healthz), answered and kept in `probes`.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from proxy import config as config_mod
from proxy.app import build_app, runner_args
from proxy.authz.routes import RAY_ROUTES
from tests.support import ProxyTestServer, write_config

MAY_PASS = "x-test-may-reach-ray"  # header name; value "yes"
PASS = {MAY_PASS: "yes"}
ASSERTION = "x-goog-iap-jwt-assertion"
ROOT = "root@example.com"  # holds every verb in team-a (see `write_hardening_config`)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Hit:
    method: str
    raw_path: str
    route: str | None  # the pattern Ray's router matched, None for no route
    headers: list[tuple[str, str]]
    body_sha256: str = ""
    body_len: int = 0
    marked: bool = False


@dataclass
class RayDouble:
    """A recording, route-matching stand-in for the Ray dashboard. `overrides` maps a route pattern to
    a handler a test wants instead of the default echo; `violations` lists unmarked arrivals."""

    hits: list[Hit] = field(default_factory=list)
    violations: list[Hit] = field(default_factory=list)
    probes: int = 0
    overrides: dict[str, Handler] = field(default_factory=dict)
    url: str = ""
    server: TestServer | None = None
    finished: list[str] = field(default_factory=list)  # request ids whose body was read to the end
    cancelled: list[str] = field(default_factory=list)  # handlers cancelled (the proxy hung up)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        for route in RAY_ROUTES:
            handler = self._handler(route.pattern, route.websocket)
            if route.method == "GET":
                app.router.add_get(route.pattern, handler)  # HEAD too, as Ray's routes.get does
            else:
                app.router.add_route(route.method, route.pattern, handler)
        app.router.add_route("*", "/{unrouted:.*}", self._handler(None, False))
        return app

    def _handler(self, pattern: str | None, websocket: bool) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            if pattern == "/api/gcs_healthz" and request.headers.get(MAY_PASS) is None:
                self.probes += 1
                return web.Response(text="success")
            hit = Hit(request.method, request.raw_path, pattern, list(request.headers.items()),
                      marked=request.headers.get(MAY_PASS) == "yes")
            self.hits.append(hit)
            if not hit.marked:
                self.violations.append(hit)
                return web.json_response({"tripwire": "a refused request reached Ray"}, status=418)
            override = self.overrides.get(pattern or "")
            if override is not None:
                return await override(request)
            if websocket and request.headers.get("Upgrade", "").lower() == "websocket":
                return await _echo_websocket(request)
            return await self.echo(request, pattern, hit)

        return handle

    async def echo(self, request: web.Request, pattern: str | None = None,
                   hit: Hit | None = None) -> web.StreamResponse:
        """The default answer: what was asked, and the sha256 and length of the body received."""
        digest, n = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            n += len(chunk)
        if hit is not None:
            hit.body_sha256, hit.body_len = digest.hexdigest(), n
        return web.json_response({"method": request.method, "path": request.raw_path, "route": pattern,
                                  "sha256": digest.hexdigest(), "bytes": n})

    async def start(self) -> None:
        self.server = TestServer(self.app(), host="127.0.0.1")
        await self.server.start_server()
        self.url = str(self.server.make_url("")).rstrip("/")

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    def only(self) -> Hit:
        assert len(self.hits) == 1, self.hits
        return self.hits[0]


async def _echo_websocket(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(max_msg_size=64 << 20)
    await ws.prepare(request)
    await ws.send_str("log line 1")
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            await ws.send_str("echo:" + msg.data)
        elif msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


def write_hardening_config(tmp: Path, jwks_url: str, upstream: str, extra: str = "") -> Path:
    """tests.support's config and policy, plus ROOT with every verb in team-a."""
    cfg = write_config(tmp, jwks_url, upstream, extra=extra)
    policy = tmp / "policy.yaml"
    binding = f'  - tenant: team-a\n    role: admin\n    members: ["user:{ROOT}"]\n'
    policy.write_text(policy.read_text() + binding)
    return cfg


async def start_proxy(tmp: Path, jwks_url: str, upstream: str, extra: str = "", **build: Any) -> TestClient:
    """The real app on the real listener (ProxyRunner), on loopback."""
    cfg = config_mod.load(write_hardening_config(tmp, jwks_url, upstream, extra))
    server = ProxyTestServer(build_app(cfg, **build), host="127.0.0.1", runner_args=runner_args(cfg))
    client = TestClient(server)
    await client.start_server()
    return client


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def wait_until(condition: Callable[[], bool], guard: float = 10.0) -> None:
    """Poll `condition` until it holds; `guard` only stops a hang, it is not a timing assertion."""
    async with asyncio.timeout(guard):
        while not condition():  # noqa: ASYNC110 - the condition is another component's state
            await asyncio.sleep(0.01)


async def read_response(reader: asyncio.StreamReader, guard: float = 10.0) -> tuple[bytes, bytes]:
    """One response with a Content-Length: (head, body)."""
    async with asyncio.timeout(guard):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        return head, await reader.readexactly(length)


# -- fixtures, imported by the conftest.py of each suite ------------------------------------------


@pytest.fixture
async def ray() -> AsyncIterator[RayDouble]:
    """The tripwire double. Fails the test if any request without the MAY_PASS mark reached it."""
    double = RayDouble()
    await double.start()
    yield double
    await double.close()
    if double.violations:
        pytest.fail("refused request(s) reached Ray: "
                    + "; ".join(f"{h.method} {h.raw_path[:80]}" for h in double.violations))


@pytest.fixture
async def make_proxy(tmp_path: Path, key_server: tuple[Any, str],
                     ray: RayDouble) -> AsyncIterator[Callable[..., Awaitable[TestClient]]]:
    """Start the real proxy in front of `ray` (or `upstream=`); config `extra` is appended YAML."""
    clients: list[TestClient] = []

    async def make(extra: str = "", upstream: str | None = None, **build: Any) -> TestClient:
        client = await start_proxy(tmp_path, key_server[1], upstream or ray.url, extra, **build)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def proxy(make_proxy: Callable[..., Awaitable[TestClient]]) -> TestClient:
    return await make_proxy()
