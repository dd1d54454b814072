"""What aiohttp would decide for us before any handler runs, held back for the pipeline to decide.

- `Expect`: aiohttp's router answers it before middlewares and handlers run — an unknown expectation
  with its own plain-text 417 that echoes the value, `100-continue` with a `100 Continue` sent before
  anyone is authenticated, inviting a 100 MB upload from anyone. `defer` takes the header off the
  request the application sees and keeps it aside; the pipeline refuses an unknown expectation in
  its own shape (417) and sends `100 Continue` itself, only once the request is allowed and its body
  is about to be relayed (`send_continue`).
- The HTTP version: aiohttp's parser accepts `HTTP/2.0` and `HTTP/0.9` request lines and answers in
  kind, with HTTP/1 framing under another version's name. `defer` marks them and hands the
  application a request that says HTTP/1.1, so the pipeline refuses them with 505 framed as HTTP/1.1
  (prepared on that request, not on aiohttp's original) and closes the connection.

The listener wraps the application's handler with `defer` (`listener.ProxyRunner`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion10, HttpVersion11
from multidict import CIMultiDict, CIMultiDictProxy

from ..errors import Kind

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

EXPECTATION = web.RequestKey("expectation", str)  # the Expect header, taken off the request
CONTINUE_SENT = web.RequestKey("continue_sent", bool)
REQUESTED_VERSION = web.RequestKey("requested_version", str)  # a version we do not speak, as sent
SUPPORTED_VERSIONS = (HttpVersion10, HttpVersion11)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def defer(handler: Handler) -> Handler:
    """`handler` (the application's), seeing requests without their `Expect` header and with an
    unsupported version replaced by HTTP/1.1 for the answer's framing; both kept in the request."""

    async def deferring(request: web.BaseRequest) -> web.StreamResponse:
        version = request.version
        if version not in SUPPORTED_VERSIONS:
            # A request that says HTTP/1.1, so that the answer is framed as HTTP/1.1 whatever the
            # request line claimed (the pipeline prepares its refusal on this one, and closes).
            request._message = request._message._replace(version=HttpVersion11, should_close=True)
            request = request.clone()
            request[REQUESTED_VERSION] = f"{version.major}.{version.minor}"
        if hdrs.EXPECT in request.headers:
            values = request.headers.getall(hdrs.EXPECT)
            message = request._message
            # The message rebuilt without it, then a request from that message (`clone()` rebuilds
            # headers from the message; `clone(headers=)` would re-encode values that are not UTF-8).
            request._message = message._replace(
                headers=CIMultiDictProxy(
                    CIMultiDict((k, v) for k, v in message.headers.items() if k.lower() != "expect")
                ),
                raw_headers=tuple((k, v) for k, v in message.raw_headers if k.lower() != b"expect"),
            )
            request = request.clone()
            request[EXPECTATION] = ", ".join(values)
        return await handler(request)

    return deferring


def refusal(request: web.BaseRequest) -> tuple[Kind, str] | None:
    """Why the pipeline must refuse this request before anything else, or None."""
    version = request.get(REQUESTED_VERSION)
    if version is not None:
        return Kind.VERSION_NOT_SUPPORTED, f"HTTP/{version[:8]} is not supported: speak HTTP/1.1"
    expectation = request.get(EXPECTATION)
    if expectation is not None and not _is_continue(expectation):
        return Kind.EXPECTATION_FAILED, "unknown expectation: only Expect: 100-continue is understood"
    return None


def requested_protocol(request: web.BaseRequest) -> str | None:
    """`HTTP/2.0`, `HTTP/0.9`: what the request line said, when it is not what we answer in."""
    version = request.get(REQUESTED_VERSION)
    return f"HTTP/{version}" if version is not None else None


def _is_continue(expectation: str) -> bool:
    members = {m.strip().lower() for m in expectation.split(",")}
    return members == {"100-continue"}


def awaits_continue(request: web.BaseRequest) -> bool:
    """The client waits for `100 Continue` before sending its body (and we have not sent it)."""
    return (
        request.get(EXPECTATION) is not None
        and request.version == HttpVersion11
        and request.body_exists
        and not request.get(CONTINUE_SENT, False)
    )


def must_close(request: web.BaseRequest) -> bool:
    """Answer and close at once: a version or expectation refused, or a client still waiting for
    `100 Continue` (its body was never invited, so it is never read)."""
    return awaits_continue(request) or refusal(request) is not None


async def answer_and_close(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """Write `response` (framed as `request` says: HTTP/1.1 after `defer`) and close the connection
    right after it. aiohttp would otherwise linger, reading an unread body for up to 10 s."""
    response.force_close()
    with contextlib.suppress(ConnectionError):
        await response.prepare(request)
        await response.write_eof()
    request.protocol.force_close()


async def send_continue(request: web.BaseRequest) -> None:
    """Invite the body, once the request is allowed and about to be relayed."""
    if not awaits_continue(request):
        return
    await request.writer.write(CONTINUE)
    request.writer.output_size = 0  # as aiohttp does: the answer proper has not started
    request[CONTINUE_SENT] = True
