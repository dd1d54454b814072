"""A scripted HTTP/1.1 upstream on loopback, for what a real server does not do on cue: answers written
byte for byte, connections closed or stalled at chosen moments, and every connection and request
recorded (the upstream pool's fault tests).

    upstream = RawUpstream(script)      # script(exchange) answers one request, or not
    await upstream.start(); ...; await upstream.close()

The server reads each request's head; the script reads its body if it wants it (`exchange.body()`),
writes whatever it likes, and returns; `exchange.close()` ends the connection instead of waiting for
the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

MAX_HEAD = 1 << 20


@dataclass
class Exchange:
    conn: int  # which connection (1, 2, ...)
    number: int  # which request on it (1, 2, ...)
    head: bytes
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    closed: bool = False

    @property
    def method(self) -> str:
        return self.head.split(b" ", 1)[0].decode()

    @property
    def target(self) -> str:
        return self.head.split(b" ", 2)[1].decode()

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower().encode():
                return value.strip().decode("latin-1")
        return None

    async def body(self) -> bytes:
        """The request body, by Content-Length or chunked framing."""
        length = self.header("Content-Length")
        if length is not None:
            return await self.reader.readexactly(int(length))
        if (self.header("Transfer-Encoding") or "").lower() != "chunked":
            return b""
        out = bytearray()
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
            out += await self.reader.readexactly(size + 2)
            if size == 0:
                return bytes(out[:-2])
            del out[-2:]

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self, status: int = 200, body: bytes = b"", headers: str = "") -> None:
        await self.send(
            f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body
        )

    async def until_closed(self) -> None:
        """Read and drop whatever comes until the proxy closes the connection (a stalled Ray that
        still notices the hang-up)."""
        while await self.reader.read(1 << 16):
            pass

    def close(self) -> None:
        self.closed = True
        self.writer.close()


Script = Callable[[Exchange], Awaitable[None]]


@dataclass
class RawUpstream:
    script: Script
    connections: int = 0
    open_connections: int = 0
    exchanges: list[Exchange] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=MAX_HEAD)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        self.open_connections += 1
        conn, number = self.connections, 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                number += 1
                exchange = Exchange(conn, number, head, reader, writer)
                self.exchanges.append(exchange)
                await self.script(exchange)
                if exchange.closed:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:  # close(): the test is over; end quietly
            return
        finally:
            self.open_connections -= 1
            self._tasks.discard(task)
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
