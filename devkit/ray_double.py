"""The one stand-in for Ray's dashboard in the integration, adversarial, fault and fuzz suites.

`RayDouble` registers the proxy's own route table with aiohttp's router, as Ray's dashboard does with
its routes, so it also tells which route *Ray* would have matched. Every arrival is kept in `hits`.

As a *tripwire* (the default), a request reaches it legitimately only when the test marks it with
`MAY_PASS`; any other arrival is a refused request that got through, kept in `violations`, and the
`ray` fixture fails the test for it, whatever the test itself asserted. The proxy's own readiness
probe (GET /api/gcs_healthz) is one exception: answered and counted in `probes`; the proxy's own
questions (User-Agent `ray-iap-proxy`: a job's owner, whether Ray redacts secrets) are the other:
answered (an override, or the default) and kept in `asked`, never in `hits`. With `tripwire=False`
it is a plain recording stand-in (the integration suite's `stub_ray`).

Default answers: a JSON echo (method, path, route, sha256 and length of the body), with a Ray
credential cookie the proxy must strip; `/api/v0/logs/stream` streams `n` chunked lines; the log-tail
route speaks WebSocket (a first line, then echoes; `close-4001` closes with code 4001).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from proxy.authz.routes import RAY_ROUTES
from proxy.jobs.service import OWN_USER_AGENT

MAY_PASS = "x-test-may-reach-ray"  # header name; value "yes"
PASS = {MAY_PASS: "yes"}
ASSERTION = "x-goog-iap-jwt-assertion"

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
    """`overrides` maps a route pattern to a handler a test wants instead of the default answer."""

    tripwire: bool = True
    hits: list[Hit] = field(default_factory=list)
    violations: list[Hit] = field(default_factory=list)
    probes: int = 0
    probe_headers: list[tuple[str, str]] = field(default_factory=list)
    asked: list[Hit] = field(default_factory=list)  # the proxy's own questions (OWN_USER_AGENT)
    overrides: dict[str, Handler] = field(default_factory=dict)
    url: str = ""
    server: TestServer | None = None
    finished: list[str] = field(default_factory=list)  # request ids whose body was read to the end
    cancelled: list[str] = field(default_factory=list)  # handlers cancelled (the proxy hung up)

    @property
    def seen(self) -> list[Hit]:
        return self.hits

    def last_headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.hits[-1].headers}

    def only(self) -> Hit:
        assert len(self.hits) == 1, self.hits
        return self.hits[0]

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
                self.probe_headers = list(request.headers.items())
                if self.tripwire:
                    return web.Response(text="success")
            if request.headers.get("User-Agent") == OWN_USER_AGENT and MAY_PASS not in request.headers:
                self.asked.append(
                    Hit(request.method, request.raw_path, pattern, list(request.headers.items()))
                )
                own = self.overrides.get(pattern or "")
                if own is not None:
                    return await own(request)
                if pattern == "/api/v0/runtime_env_redaction":  # Ray 2.60's default answer
                    return web.json_response({"result": True, "msg": "", "data": {"redactionEnabled": True}})
                return await self.echo(request, pattern)
            hit = Hit(
                request.method,
                request.raw_path,
                pattern,
                list(request.headers.items()),
                marked=request.headers.get(MAY_PASS) == "yes",
            )
            self.hits.append(hit)
            if self.tripwire and not hit.marked:
                self.violations.append(hit)
                return web.json_response({"tripwire": "a refused request reached Ray"}, status=418)
            override = self.overrides.get(pattern or "")
            if override is not None:
                return await override(request)
            if websocket and request.headers.get("Upgrade", "").lower() == "websocket":
                return await _echo_websocket(request)
            if pattern == "/api/gcs_healthz":
                return web.Response(text="success")
            if pattern == "/api/v0/logs/stream":
                return await _stream_lines(request, int(request.query.get("n", "3")))
            return await self.echo(request, pattern, hit)

        return handle

    async def echo(
        self, request: web.Request, pattern: str | None = None, hit: Hit | None = None
    ) -> web.StreamResponse:
        """What was asked, and the sha256 and length of the body received."""
        digest, n = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            n += len(chunk)
        if hit is not None:
            hit.body_sha256, hit.body_len = digest.hexdigest(), n
        body = {
            "method": request.method,
            "path": request.raw_path,
            "route": pattern,
            "sha256": digest.hexdigest(),
            "bytes": n,
        }
        response = web.json_response(body)
        response.set_cookie("ray-authentication-token", "leak")  # the proxy must never pass this on
        return response

    async def start(self) -> None:
        self.server = TestServer(self.app(), host="127.0.0.1")
        await self.server.start_server()
        self.url = str(self.server.make_url("")).rstrip("/")

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()


async def _stream_lines(request: web.Request, n: int) -> web.StreamResponse:
    """Chunked, no length: the streaming path."""
    response = web.StreamResponse()
    await response.prepare(request)
    for i in range(n):
        await response.write(f"line {i}\n".encode())
    await response.write_eof()
    return response


async def _echo_websocket(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(max_msg_size=64 << 20)
    await ws.prepare(request)
    await ws.send_str("log line 1")
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            if msg.data == "close-4001":
                await ws.close(code=4001, message=b"bye")
                break
            await ws.send_str("echo:" + msg.data)
        elif msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws
