"""What HTTP lets a client ask before the request proper: an expectation, a protocol version. The
proxy decides first — `100 Continue` only for a request it allows, just before relaying its body; an
unknown expectation 417 in its own shape — and refuses request lines of HTTP/2.0 and HTTP/0.9 with a
505 framed as HTTP/1.1, closing the connection. None of these refused requests reaches Ray."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest

from devkit.config import ROOT
from devkit.http import raw_http, read_response
from devkit.ray_double import ASSERTION, MAY_PASS, RayDouble
from devkit.records import AccessRecords

BIG = 100 * 1024 * 1024  # what the client would upload once invited


def post(lines: str, target: str = "/api/jobs/", length: int = BIG, method: str = "POST") -> bytes:
    return (
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}Content-Length: {length}\r\n\r\n"
    ).encode()


def parts(answer: bytes) -> tuple[bytes, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, json.loads(body)


@pytest.mark.parametrize(
    "expect",
    ["bogus", "100-continue, x-bogus", "200-ok", "100-continue; q=1", "<script>alert(1)</script>", "\u00ff"],
)
@pytest.mark.parametrize("who", [None, ROOT], ids=["anonymous", "root"])
async def test_an_unknown_expectation_is_417_in_our_shape(
    make_proxy: Any, ray: RayDouble, mint: Any, access_records: AccessRecords, expect: str, who: str | None
) -> None:
    proxy = await make_proxy(access_log=access_records)
    auth = f"{ASSERTION}: {mint(who)}\r\n" if who else ""
    request = post(f"{auth}Expect: {expect}\r\n", length=2).replace(b"\xc3\xbf", b"\xff") + b"{}"
    status, answer = await raw_http(proxy.port, request)
    assert status == 417, answer
    head, body = parts(answer)
    assert body["error"] == "expectation_failed" and set(body) == {"error", "reason", "request_id"}
    assert b"Connection: close" in head and b"X-Request-Id: " + body["request_id"].encode() in head
    assert expect.encode() not in answer and b"alert" not in answer  # the value is never echoed
    record = access_records.last()
    assert (record["httpRequest"]["status"], record["request_id"]) == (417, body["request_id"])
    assert ray.hits == []


@pytest.mark.parametrize(
    "raw",
    [
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\nExpect: bogus\r\n\r\n",  # unroutable, and an expectation
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: bogus\r\n\r\n",  # even a probe
        b"GET /api/jobs/ HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nExpect: bogus\r\n\r\n",
    ],
    ids=["asterisk", "probe", "two-headers"],
)
async def test_no_request_gets_aiohttps_own_expectation_answer(
    proxy: Any, ray: RayDouble, raw: bytes
) -> None:
    status, answer = await raw_http(proxy.port, raw)
    assert status == 417 and b"Unknown Expect" not in answer and b"text/plain" not in answer
    assert parts(answer)[1]["error"] == "expectation_failed"
    assert ray.hits == []


REFUSED = {
    "anonymous": ("", 401),
    "bad-token": (f"{ASSERTION}: eyJhbGciOiJFUzI1NiJ9.e30.c2ln\r\n", 401),
    "viewer-submits": ("bob", 403),
    "other-tenant": ("mallory", 403),
    "cross-site": ("alice-cross-site", 403),
    "internal-route": ("alice-report-events", 403),
}


@pytest.mark.parametrize("case", REFUSED, ids=REFUSED.keys())
async def test_100_continue_is_never_sent_before_the_request_is_allowed(
    make_proxy: Any, ray: RayDouble, mint: Any, access_records: AccessRecords, case: str
) -> None:
    """The 100 MB upload is never invited: the refusal comes first, and the connection is closed so
    no body is read from a client that was told not to send one."""
    proxy = await make_proxy(access_log=access_records)
    lines, expected = REFUSED[case]
    target = "/api/jobs/"
    if lines == "bob" or lines == "mallory":
        lines = f"{ASSERTION}: {mint(lines + '@example.com')}\r\n"
    elif lines == "alice-cross-site":
        lines = f"{ASSERTION}: {mint()}\r\nSec-Fetch-Site: cross-site\r\n"
    elif lines == "alice-report-events":
        lines, target = f"{ASSERTION}: {mint(ROOT)}\r\n", "/report_events"
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(post(lines + "Expect: 100-continue\r\n", target))
    head, body = await read_response(reader)
    assert head.startswith(f"HTTP/1.1 {expected} ".encode()), head
    assert b"Connection: close" in head
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed: nothing more, no 100 after
    writer.close()
    assert json.loads(body)["request_id"] == access_records.last()["request_id"]
    assert ray.hits == []


@pytest.mark.parametrize("expect", ["100-continue", "100-Continue", " 100-CONTINUE "])
async def test_an_allowed_upload_is_invited_then_relayed(
    proxy: Any, ray: RayDouble, mint: Any, expect: str
) -> None:
    body = b"x" * 300_000
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    lines = f"{ASSERTION}: {mint()}\r\n{MAY_PASS}: yes\r\nExpect: {expect}\r\n"
    writer.write(post(lines, "/api/packages/gcs/p.zip", len(body), "PUT"))
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)  # before any byte of the body
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(body)
    head, answer = await read_response(reader)
    writer.close()
    assert head.startswith(b"HTTP/1.1 200 ")
    assert json.loads(answer)["sha256"] == hashlib.sha256(body).hexdigest()
    assert "expect" not in {k.lower() for k, _ in ray.only().headers}  # Ray is never asked to continue


async def test_an_http_1_0_client_is_not_sent_100_continue(proxy: Any, ray: RayDouble, mint: Any) -> None:
    """RFC 9110: a 100-continue from an HTTP/1.0 client is ignored; its body comes at once."""
    request = (
        f"PUT /api/packages/gcs/p.zip HTTP/1.0\r\nHost: x\r\n{ASSERTION}: {mint()}\r\n{MAY_PASS}: yes\r\n"
        "Expect: 100-continue\r\nContent-Length: 2\r\n\r\n{}"
    ).encode()
    status, answer = await raw_http(proxy.port, request)
    assert status == 200 and b"100 Continue" not in answer
    assert ray.only().body_len == 2


# -- protocol versions ------------------------------------------------------------------------------

VERSIONS = {
    "http-2.0": b"GET /api/jobs/ HTTP/2.0\r\nHost: x\r\n%s\r\n",
    "http-2.0-head": b"HEAD /api/jobs/ HTTP/2.0\r\nHost: x\r\n%s\r\n",
    "http-2.0-post": b"POST /api/jobs/ HTTP/2.0\r\nHost: x\r\n%sContent-Length: 2\r\n\r\n{}",
    "http-2.0-probe": b"GET /readyz HTTP/2.0\r\nHost: x\r\n%s\r\n",
    "http-0.9": b"GET /api/jobs/\r\n%s\r\n",
    "http-0.9-health": b"GET /healthz\r\n\r\n%s",
}


@pytest.mark.parametrize("template", VERSIONS.values(), ids=VERSIONS.keys())
async def test_http_2_and_0_9_request_lines_get_505_framed_as_http_1_1(
    make_proxy: Any, ray: RayDouble, mint: Any, access_records: AccessRecords, template: bytes
) -> None:
    proxy = await make_proxy(access_log=access_records)
    auth = f"{ASSERTION}: {mint(ROOT)}\r\n{MAY_PASS}: no\r\n".encode()
    request = template % (auth if b"healthz" not in template else b"")
    status, answer = await raw_http(proxy.port, request)
    assert status == 505, answer
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 505 ") and b"Connection: close" in head
    if not request.startswith(b"HEAD"):
        assert json.loads(body)["error"] == "http_version_not_supported"
    record = access_records.last()
    assert record["httpRequest"]["status"] == 505 and record["decision"] == "deny"
    assert record["httpRequest"]["protocol"] in ("HTTP/2.0", "HTTP/0.9")
    assert ray.hits == []


@pytest.mark.parametrize(
    "line",
    [b"GET /api/jobs/ HTTP/1.2", b"GET /api/jobs/ HTTP/3.0", b"GET /api/jobs/ HTTP/2", b"PRI * HTTP/2.0"],
)
async def test_other_versions_are_refused_by_the_parser_in_our_shape(
    proxy: Any, ray: RayDouble, line: bytes
) -> None:
    status, answer = await raw_http(proxy.port, line + b"\r\nHost: x\r\n\r\n")
    assert status == 400 and json.loads(answer.partition(b"\r\n\r\n")[2])["error"] == "bad_request"
    assert ray.hits == []
