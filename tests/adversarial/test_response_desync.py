"""Response desync from Ray's side: Ray's aiohttp server writes a streamed body even after the headers
of a HEAD answer (`make fuzz` found it on `/api/v0/logs/stream`), and what a log stream holds is
whatever a job printed — an attacker's job can print a whole forged HTTP response. The proxy never
relays such bytes as an answer, to the HEAD's caller or to anyone whose request later shares Ray's
connection: the HEAD gets its headers or a 502, every other request its own answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from devkit.config import ROOT
from devkit.http import get_request, raw_http
from devkit.ray_double import MAY_PASS, RayDouble

STREAM = "/api/v0/logs/stream"
FORGED = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{"forged": true}\n'
MARK = f"{MAY_PASS}: yes\r\n"


def streaming(delay: float, repeats: int) -> Any:
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(repeats):  # a job's log that looks like HTTP answers, written after the headers
            if delay:
                await asyncio.sleep(delay)
            await response.write(FORGED)
        return response

    return stream


async def real_version(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(0.02)  # long enough for Ray's stray bytes to land while it is in flight
    return web.json_response({"version": "real"})


@pytest.mark.parametrize(
    "delay, repeats", [(0.0, 1), (0.02, 40), (0.3, 3)], ids=["at-once", "trickled", "late"]
)
async def test_a_body_after_a_head_answer_never_becomes_anyones_answer(
    proxy: Any, ray: RayDouble, mint: Any, delay: float, repeats: int
) -> None:
    ray.overrides[STREAM] = streaming(delay, repeats)
    ray.overrides["/api/version"] = real_version
    bob = mint("bob@example.com")
    answers: list[bytes] = []

    async def others() -> None:
        for _ in range(25):
            status, answer = await raw_http(proxy.port, get_request("/api/version", bob, extra=MARK))
            assert status == 200
            answers.append(answer)

    running = asyncio.ensure_future(others())
    status, head = await raw_http(proxy.port, get_request(STREAM, mint(ROOT), "HEAD", extra=MARK))
    await running
    assert status in (200, 502), head
    assert b"forged" not in head
    assert all(b'"version": "real"' in a and b"forged" not in a for a in answers)
    assert len([h for h in ray.hits if h.method == "HEAD"]) == 1
