"""One connection to Ray and the exchange it carries: an `asyncio.Protocol` feeding httptools (llhttp),
with the state the relay (`pool_relay.py`) reads after each `wait()`. The rules for reusing it are in
`pool.py`'s docstring; `reusable()` is their one test.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from typing import TYPE_CHECKING, cast

import httptools

from ..errors import Kind, UpstreamError
from .errors import MID_RESPONSE, TIMEOUT

if TYPE_CHECKING:
    from .pool import Pool

HIGH_WATER = 512 * 1024  # Ray's answer buffered before reading from Ray pauses
MAX_HEAD_BYTES = 64 * 1024  # Ray's status line and headers, together
MAX_HEADERS = 200
TOO_LARGE = "Ray's answer headers are too large"
CLOSED = MID_RESPONSE  # as aiohttp's client said it (upstream.errors): Ray closed before answering


class Connection(asyncio.Protocol):
    """One connection to Ray and the exchange it carries. The relay reads the state below after each
    `wait()`; the protocol callbacks only record and wake it."""

    def __init__(self, pool: Pool) -> None:
        self.pool, self.loop = pool, pool.loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reuse = False  # this connection has answered before (a stale one may answer nothing)
        self.idle_since = 0.0
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self.begin(False)

    # ---- one exchange

    def begin(self, head_only: bool) -> None:
        """Ready for the answer to a new request (`head_only`: to HEAD, which has no body)."""
        self.head_only = head_only
        self.status, self.reason = 0, b""
        self.headers: list[tuple[str, str]] = []
        self.length: int | None = None  # Content-Length (llhttp checked it: digits, one value)
        self.head_done = self.complete = self.keep_alive = self.sent = False
        self.error: UpstreamError | None = None
        self.received = 0  # bytes of the answer so far
        self.head_bytes = 0  # of the status line and headers
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self._interim = self._read_paused = False
        self._parser = httptools.HttpResponseParser(self)
        if self.closed:
            self.error = UpstreamError(CLOSED)

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and self.sent and self.error is None and not self.closed

    def take(self) -> bytes:
        """The body bytes received so far, in one piece; reading resumes if it was paused."""
        data = self.chunks.popleft() if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        if self._read_paused and self.transport is not None and not self.closed:
            self._read_paused = False
            self.transport.resume_reading()
        return data

    async def wait(self, bounded: bool = True) -> None:
        """Until something happens (the head, body, the end, an error, `wake()`), for at most the
        pool's `read_timeout` when `bounded`. The caller checks the state first, so a wait is only
        ever for news."""
        fut = self.loop.create_future()
        self._waiter = fut
        timer = self.loop.call_later(self.pool.read_timeout, self._timed_out, fut) if bounded else None
        try:
            await fut
        finally:
            if timer is not None:
                timer.cancel()
            self._waiter = None

    def _timed_out(self, fut: asyncio.Future[None]) -> None:
        if not fut.done():
            self.fail(UpstreamError(TIMEOUT, Kind.UPSTREAM_TIMEOUT))

    def fail(self, error: UpstreamError) -> None:
        if self.error is None and not self.complete:
            self.error = error
        self.abort()
        self.wake()

    def wake(self) -> None:
        fut = self._waiter
        if fut is not None and not fut.done():
            fut.set_result(None)

    def write(self, data: bytes) -> None:
        """Send `data` (or, on a closed connection, record why it cannot be: the relay's next look at
        `error` sees it)."""
        if self.transport is None or self.closed:
            self.fail(UpstreamError(CLOSED))
        else:
            self.transport.write(data)

    def writelines(self, data: tuple[bytes, ...]) -> None:
        if self.transport is None or self.closed:
            self.fail(UpstreamError(CLOSED))
        else:
            self.transport.writelines(data)

    async def drain(self) -> None:
        """Until the kernel takes more of the request (or the connection is gone), for at most
        `read_timeout`: Ray not taking the body is silence from Ray too."""
        if self._write_paused and not self.closed:
            self._drain = self.loop.create_future()
            try:
                async with asyncio.timeout(self.pool.read_timeout):
                    await self._drain
            except TimeoutError:
                self.fail(UpstreamError(TIMEOUT, Kind.UPSTREAM_TIMEOUT))
            finally:
                self._drain = None
        if self.closed:
            raise ConnectionResetError("connection to Ray closed")

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # ---- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is one, without the subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.idle_since or self.complete or self.error is not None:
            self.pool.discard(self)  # nobody asked: never let it answer the next request
            self.fail(UpstreamError(MID_RESPONSE))
            return
        self.received += len(data)
        assert self._parser is not None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            self.fail(self.error or UpstreamError(MID_RESPONSE))
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self.fail(UpstreamError(MID_RESPONSE))
        else:
            if not self.head_done and self.received > MAX_HEAD_BYTES:  # a head that never ends
                self.fail(UpstreamError(TOO_LARGE))

    def eof_received(self) -> bool:
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.discard(self)
        if self.head_done and not self.complete and exc is None and self._close_delimited():
            self.complete = True  # the end of a body without a length is the end of the connection
            self.keep_alive = False
        elif not self.complete and self.error is None:
            if self.received == 0:
                self.error = UpstreamError(CLOSED)
            else:
                self.error = UpstreamError(MID_RESPONSE)
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self.wake()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # ---- httptools callbacks (an exception raised here stops the parser: `data_received` fails)

    def on_message_begin(self) -> None:
        if self.complete:  # a second answer to one request: the connection is out of step
            self.keep_alive = False
            raise ValueError("unsolicited answer")

    def on_status(self, status: bytes) -> None:
        self.reason += status
        self._count(len(status))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        if len(self.headers) >= MAX_HEADERS:
            self.error = UpstreamError(TOO_LARGE)
            raise ValueError(TOO_LARGE)
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))
        if len(name) == 14 and name.lower() == b"content-length":
            self.length = int(value)

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # interim (100 Continue, 103): skipped
            self._interim = True
            self.headers, self.reason, self.head_bytes, self.length = [], b"", 0, None
            return
        self.status, self.keep_alive = status, parser.should_keep_alive()
        self.head_done = True
        if self.head_only:  # HEAD: nothing follows the headers, whatever they say; never reused
            self.complete, self.keep_alive = True, False
        self.wake()

    def on_body(self, body: bytes) -> None:
        if self.head_only:
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()
        self.wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            self.received = 0  # the final answer's head gets the whole allowance
            return
        self.complete = True
        self.wake()

    def _count(self, n: int) -> None:
        self.head_bytes += n
        if self.head_bytes > MAX_HEAD_BYTES:
            self.error = UpstreamError(TOO_LARGE)
            raise ValueError(TOO_LARGE)

    def _close_delimited(self) -> bool:
        names = {n.lower() for n, _ in self.headers}
        return "content-length" not in names and "transfer-encoding" not in names
