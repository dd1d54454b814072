"""A small keep-alive pool of plain HTTP/1.1 connections to the one upstream (Ray's dashboard on
loopback), each answer parsed by httptools (llhttp). `pool_relay.py` sends requests over it and
relays the answers; this module owns the connections and the rule for reusing one:

- A connection carries one exchange at a time and goes back to the pool only when the answer was
  complete, properly framed (Content-Length or chunked, llhttp's count), keep-alive (HTTP/1.1 without
  `Connection: close`), the request was sent whole, and nothing else arrived. Everything else — an
  error, a timeout, a cancellation, a client that went away, an answer to HEAD (llhttp cannot be told
  it has no body), a close-delimited body, a byte while idle — closes it.
- Idle connections are taken newest first and closed after `IDLE_SECONDS`, well before any server's
  keep-alive timeout (aiohttp's, which Ray's dashboard uses: 3630 s since aiohttp 3.11, 75 s
  before), so the pool does not hand out a connection the server is closing. One Ray closed anyway is
  noticed at once (`connection_lost`) and dropped.
- Each wait for Ray is bounded (`read_timeout`), and so is connecting (`connect_timeout`). Ray's
  answer is buffered up to `pool_conn.HIGH_WATER` bytes; beyond that reading from Ray pauses until the
  client takes it. Sending pauses while the kernel's buffer towards Ray is full.
"""

from __future__ import annotations

import asyncio
import time

from ..errors import Kind, UpstreamError
from .errors import REACH
from .pool_conn import Connection

IDLE_SECONDS = 30.0
MAX_IDLE = 128  # idle connections kept; more are closed when released


class Pool:
    """Connections to `host:port`: `acquire()` one, then `release(conn)` it (reused when it may be)."""

    def __init__(self, host: str, port: int, connect_timeout: float, read_timeout: float) -> None:
        self.host, self.port = host, port
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.loop = asyncio.get_running_loop()
        self.idle: list[Connection] = []  # newest last
        self.active: set[Connection] = set()
        self.closing = False
        self.connects = 0  # counters, for tests and the bench
        self._sweep: asyncio.TimerHandle | None = None

    async def acquire(self, fresh: bool = False) -> Connection:
        """A connection for one exchange: the newest idle one still fresh, else a new one."""
        if self.closing:
            raise UpstreamError(REACH, Kind.UPSTREAM_UNREACHABLE)
        now = time.monotonic()
        while self.idle and not fresh:
            conn = self.idle.pop()
            if not conn.closed and now - conn.idle_since < IDLE_SECONDS:
                conn.idle_since = 0.0
                self.active.add(conn)
                return conn
            conn.abort()
        return await self._connect()

    async def _connect(self) -> Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await self.loop.create_connection(lambda: Connection(self), self.host, self.port)
        except TimeoutError:
            raise UpstreamError(REACH, Kind.UPSTREAM_UNREACHABLE) from None
        except OSError as exc:
            raise UpstreamError(REACH, Kind.UPSTREAM_UNREACHABLE) from exc
        self.connects += 1
        if self.closing:
            conn.abort()
            raise UpstreamError(REACH, Kind.UPSTREAM_UNREACHABLE)
        self.active.add(conn)
        return conn

    def release(self, conn: Connection) -> None:
        """After an exchange: back to the pool if the answer allows it, else closed."""
        self.active.discard(conn)
        if conn.reusable() and not self.closing and len(self.idle) < MAX_IDLE:
            conn.reuse = True
            conn._parser = None
            conn.idle_since = time.monotonic()
            self.idle.append(conn)
            if self._sweep is None:
                self._sweep = self.loop.call_later(IDLE_SECONDS / 2, self._expire)
        else:
            conn.abort()

    def discard(self, conn: Connection) -> None:
        self.active.discard(conn)
        if conn.idle_since:
            try:
                self.idle.remove(conn)
            except ValueError:
                pass

    def _expire(self) -> None:
        self._sweep = None
        cutoff = time.monotonic() - IDLE_SECONDS
        for conn in [c for c in self.idle if c.idle_since < cutoff]:
            self.idle.remove(conn)
            conn.abort()
        if self.idle and not self.closing:
            self._sweep = self.loop.call_later(IDLE_SECONDS / 2, self._expire)

    async def close(self) -> None:
        """At shutdown: every connection closed, idle or not; later acquires fail."""
        self.closing = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for conn in [*self.idle, *self.active]:
            conn.fail(UpstreamError(REACH, Kind.UPSTREAM_UNREACHABLE))
        self.idle.clear()
        self.active.clear()
        await asyncio.sleep(0)  # let the transports' connection_lost run
