"""Request bodies with a Content-Encoding are relayed exactly as they came (aiohttp's server would
inflate them and the proxy pass them on still labelled gzip); a compressed job submission is read
under the same bound as a plain one, so an inflate bomb is refused, not inflated."""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from typing import Any

import pytest
from aiohttp import web

from devkit.config import ROOT
from devkit.ray_double import ASSERTION, PASS, RayDouble

PACKAGE = "/api/packages/gcs/_ray_pkg_abc.zip"


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_an_encoded_upload_reaches_ray_byte_for_byte(
    proxy: Any, ray: RayDouble, mint: Any, coding: str
) -> None:
    plain = bytes(range(256)) * 4096  # 1 MiB
    body = gzip.compress(plain) if coding == "gzip" else zlib.compress(plain)
    seen: dict[str, Any] = {}

    async def raw(request: web.Request) -> web.Response:
        seen["encoding"] = request.headers.get("Content-Encoding")
        seen["length"] = request.headers.get("Content-Length")
        data = await request.read()  # Ray's aiohttp inflates it on its side, as this double does
        seen["sha256"] = hashlib.sha256(data).hexdigest()
        return web.json_response({"ok": True})

    ray.overrides["/api/packages/{protocol}/{package_name}"] = raw
    headers = {ASSERTION: mint(ROOT), "Content-Encoding": coding, **PASS}
    r = await proxy.put(PACKAGE, data=body, headers=headers)
    assert r.status == 200, await r.text()
    assert seen == {"encoding": coding, "length": str(len(body)), "sha256": hashlib.sha256(plain).hexdigest()}


async def test_a_compressed_submission_is_bounded_after_inflating(
    proxy: Any, ray: RayDouble, mint: Any
) -> None:
    bomb = gzip.compress(json.dumps({"entrypoint": "x", "metadata": {"pad": "a" * (8 << 20)}}).encode())
    assert len(bomb) < 64 * 1024  # small on the wire, 8 MiB inflated: over the 1 MiB submission bound
    headers = {ASSERTION: mint(ROOT), "Content-Encoding": "gzip", "Content-Type": "application/json", **PASS}
    r = await proxy.post("/api/jobs/", data=bomb, headers=headers)
    assert r.status == 413 and ray.hits == []


@pytest.mark.parametrize("coding, body", [("br", b"\x0b\x02\x80{}\x03"), ("gzip", b"not gzip at all")])
async def test_a_submission_in_an_unreadable_encoding_is_400(
    proxy: Any, ray: RayDouble, mint: Any, coding: str, body: bytes
) -> None:
    headers = {ASSERTION: mint(ROOT), "Content-Encoding": coding, "Content-Type": "application/json", **PASS}
    r = await proxy.post("/api/jobs/", data=body, headers=headers)
    assert r.status == 400 and "submission" in (await r.json())["reason"] and ray.hits == []
