"""Shared test helpers: key pairs, configs written as real files, a recording stub of Ray."""

from __future__ import annotations

import hashlib
import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec

from proxy import dev
from proxy.listener import ProxyRunner

AUDIENCE = "/projects/111/global/backendServices/222"
TENANT = "team-a"

POLICY = textwrap.dedent("""\
    roles:
      viewer: [view]
      scientist: [view, logs, submit, stop, delete]
      admin: ["*"]
    groups:
      ml-team@example.com: [carol@example.com]
    bindings:
      - tenant: team-a
        role: scientist
        members: ["user:alice@example.com", "group:ml-team@example.com", "domain:example.org",
                  "serviceAccount:ci@p.iam.gserviceaccount.com"]
      - tenant: team-a
        role: viewer
        members: ["user:bob@example.com"]
      - tenant: team-b
        role: admin
        members: ["user:mallory@example.com"]
""")


def write_config(
    tmp: Path, jwks_url: str, upstream: str, *, ray_token: str | None = "ray-secret-token", extra: str = ""
) -> Path:
    (tmp / "policy.yaml").write_text(POLICY)
    token_line = ""
    if ray_token is not None:
        (tmp / "ray_token").write_text(ray_token + "\n")
        token_line = "ray_token_file: ray_token\n"
    cfg = tmp / "proxy.yaml"
    cfg.write_text(
        textwrap.dedent(f"""\
        listen: 127.0.0.1:18999
        upstream: {upstream}
        tenant: {TENANT}
        iap:
          audiences: ["{AUDIENCE}"]
          jwks_url: {jwks_url}
          key_min_refetch_seconds: 1
        policy_file: policy.yaml
        """)
        + token_line
        + extra
    )
    return cfg


class ProxyTestServer(TestServer):
    """The real listener, as `serve()` runs it: `ProxyRunner` with the config's `runner_args`.
    (aiohttp's TestServer drops keyword arguments it is given; these reach the runner.)"""

    def __init__(self, app: web.Application, *, runner_args: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.runner_args = runner_args

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        return ProxyRunner(self.app, **{**kwargs, **self.runner_args})


@dataclass
class KeyServer:
    """Serves a mutable key set on loopback; counts fetches; can be told to fail."""

    keys: list[ec.EllipticCurvePrivateKey]
    fail: bool = False
    fetches: int = 0

    def app(self) -> web.Application:
        async def jwks(_r: web.Request) -> web.Response:
            self.fetches += 1
            if self.fail:
                return web.Response(status=503, text="down")
            return web.json_response(dev.jwks(*self.keys))

        app = web.Application()
        app.router.add_get("/jwks.json", jwks)
        return app


@dataclass
class Seen:
    method: str
    raw_path: str
    headers: list[tuple[str, str]]
    body_sha256: str
    body_len: int


@dataclass
class StubRay:
    """A recording stand-in for the Ray dashboard. Every request that reaches it is kept in `seen`."""

    seen: list[Seen] = field(default_factory=list)

    def app(self) -> web.Application:
        async def any_route(request: web.Request) -> web.StreamResponse:
            digest, n = hashlib.sha256(), 0
            async for chunk in request.content.iter_any():
                digest.update(chunk)
                n += len(chunk)
            self.seen.append(
                Seen(request.method, request.raw_path, list(request.headers.items()), digest.hexdigest(), n)
            )
            if request.path == "/api/v0/logs/stream":  # chunked, no length: the streaming path
                resp = web.StreamResponse()
                await resp.prepare(request)
                for i in range(int(request.query.get("n", "3"))):
                    await resp.write(f"line {i}\n".encode())
                await resp.write_eof()
                return resp
            if request.path == "/api/gcs_healthz":
                return web.Response(text="success")
            body: dict[str, Any] = {
                "method": request.method,
                "path": request.raw_path,
                "sha256": digest.hexdigest(),
                "bytes": n,
            }
            resp = web.json_response(body)
            resp.set_cookie("ray-authentication-token", "leak")
            return resp

        async def tail(request: web.Request) -> web.StreamResponse:
            self.seen.append(Seen("WS", request.raw_path, list(request.headers.items()), "", 0))
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            await ws.send_str("log line 1")
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    if msg.data == "close-4001":
                        await ws.close(code=4001, message=b"bye")
                        break
                    await ws.send_str("echo:" + msg.data)
            return ws

        app = web.Application(client_max_size=1 << 30)
        app.router.add_get("/api/jobs/{id}/logs/tail", tail)
        app.router.add_route("*", "/{tail:.*}", any_route)
        return app

    def last_headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.seen[-1].headers}


def decode(body: bytes) -> Any:
    return json.loads(body)


async def raw_http(port: int, request: bytes, timeout: float = 5.0) -> tuple[int, bytes]:  # noqa: ASYNC109
    """Send bytes exactly as given to 127.0.0.1:port; return (status, whole answer). For targets and
    framings a well-behaved client library would refuse or normalise."""
    import asyncio

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
