"""Property: under concurrent mixed traffic through the real proxy and its upstream pool, every client
gets exactly the answer to its own request. Ray's stand-in (aiohttp, as Ray's dashboard) echoes a
per-request marker in a header and in the body of every kind of answer — small, streamed, chunked,
HEAD, 204, 304, uploads, slow ones, ones cut mid-way, and a HEAD answer followed by a forged answer
(as Ray's aiohttp does for a streamed HEAD) — and each client checks the marker it gets back.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from devkit.config import AUDIENCE, ROOT
from devkit.keys import KeyServer
from devkit.loop_thread import LoopThread
from devkit.proxy import start_proxy
from proxy import dev
from proxy.http.pipeline import PROXY
from tests.fuzz.budget import fuzz_settings, run

T = TypeVar("T")
T_MARK = "X-Marker"
KINDS = ("small", "large", "chunked", "head", "head-stream", "204", "304", "put", "slow", "cut")


def forged(marker: str) -> bytes:
    body = f'{{"marker": "forged-{marker}"}}'.encode()
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Marker: forged\r\n\r\n%s" % (len(body), body)


async def marker_ray(request: web.Request) -> web.StreamResponse:
    """Every answer names the request's marker (header X-Marker; the body where there is one)."""
    marker, kind = request.headers["X-Marker"], request.query.get("kind", "small")
    tag = {"X-Marker": marker}
    if kind == "slow":
        await asyncio.sleep(0.05)
    if kind == "put":
        digest = hashlib.sha256(await request.read()).hexdigest()
        return web.json_response({"marker": marker, "sha256": digest}, headers=tag)
    if kind in ("204", "304"):
        return web.Response(status=int(kind), headers=tag)
    if kind in ("large", "chunked", "cut", "head-stream"):
        response = web.StreamResponse(headers=tag)
        if kind == "large":
            response.content_length = 200 * (len(marker) + 1)
        await response.prepare(request)
        if kind == "head-stream":  # aiohttp writes a streamed body after a HEAD's headers
            await response.write(forged(marker))
            return response
        for i in range(200):
            await response.write(marker.encode() + b"\n")
            if kind == "cut" and i == 50:
                assert request.transport is not None
                request.transport.abort()
                return response
        await response.write_eof()
        return response
    return web.json_response({"marker": marker}, headers=tag)


class Live(LoopThread):
    """Key server, the marker Ray and the real proxy on loopback, in a thread's own event loop."""

    def __init__(self, tmp: Path) -> None:
        super().__init__("pool-live", guard=60)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.ids = itertools.count()
        self.token = ""
        self.call(self._start(tmp))

    async def _start(self, tmp: Path) -> None:
        self.keys = TestServer(KeyServer([self.key]).app(), host="127.0.0.1")
        await self.keys.start_server()
        app = web.Application(client_max_size=8 << 20)
        app.router.add_route("*", "/{tail:.*}", marker_ray)
        self.ray = TestServer(app, host="127.0.0.1")
        await self.ray.start_server()
        ray_url = str(self.ray.make_url("")).rstrip("/")
        self.proxy = await start_proxy(tmp, str(self.keys.make_url("/jwks.json")), ray_url)
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=6))

    async def _stop(self) -> None:
        await self.session.close()
        await self.proxy.close()
        await self.ray.close()
        await self.keys.close()

    async def one(self, kind: str, size: int) -> None:
        """One request of `kind`; asserts it got its own answer (or, for `cut`, no one else's)."""
        marker = f"m{next(self.ids)}-{kind}"
        headers = {"x-goog-iap-jwt-assertion": self.token, T_MARK: marker}
        url = self.proxy.make_url(f"/api/version?kind={kind}")
        method, data = "GET", None
        if kind.startswith("head"):
            method, url = "HEAD", self.proxy.make_url(f"/static/x.js?kind={kind}")
        elif kind in ("large", "chunked", "cut"):
            url = self.proxy.make_url(f"/static/x.js?kind={kind}")
        elif kind == "put":
            method, url = "PUT", self.proxy.make_url(f"/api/packages/gcs/{marker}.zip?kind=put")
            data = marker.encode() * size
        async with self.session.request(method, url, headers=headers, data=data) as r:
            try:
                body = await r.read()
            except aiohttp.ClientPayloadError:
                assert kind == "cut", marker
                return
            if r.status == 502:  # Ray cut it before the answer began: nobody else's answer either
                assert kind in ("cut", "head-stream") and marker not in body.decode(), (marker, body)
                return
            assert r.headers.get(T_MARK) == marker, (marker, r.status, dict(r.headers))
            assert b"forged" not in body and all(
                line == marker for line in body.decode().splitlines() if not line.startswith("{")
            ), (marker, body[:200])
            if kind in ("small", "slow", "put"):
                answer = await r.json(content_type=None)
                assert answer["marker"] == marker, (marker, answer)
                if kind == "put":
                    assert answer["sha256"] == hashlib.sha256(data or b"").hexdigest()
            elif kind in ("204", "304") or kind.startswith("head"):
                assert r.status in (200, 204, 304) and body == b"", (marker, r.status, body)
            else:
                assert body == (marker + "\n").encode() * 200

    async def batch(self, requests: list[tuple[str, int]]) -> None:
        self.token = dev.mint(self.key, ROOT, AUDIENCE)  # IAP's lifetime: fresh for every batch
        await asyncio.gather(*(self.one(kind, size) for kind, size in requests))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    running = Live(tmp_path_factory.mktemp("pool-live"))
    yield running
    running.close()


def test_every_client_gets_the_answer_to_its_own_request(live: Live) -> None:
    @fuzz_settings(40)
    @given(
        st.lists(
            st.tuples(st.sampled_from(KINDS), st.integers(min_value=1, max_value=20_000)),
            min_size=1,
            max_size=16,
        )
    )
    def target(requests: list[tuple[str, int]]) -> None:
        live.call(live.batch(requests))

    run(target)
    pool = live.proxy.server.app[PROXY].upstream.pool  # type: ignore[attr-defined]
    assert pool.connects < next(live.ids)  # connections were reused, so reuse was what was tested
