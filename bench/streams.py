"""Streams through a target, over plain sockets (a client far cheaper than what it measures):

- one 1 GiB GET and one 1 GiB PUT, each timed from the request's first byte to the answer's last, with
  the growth of the target's peak RSS during it (the peak is reset through /proc/PID/clear_refs first);
- `Expect: 100-continue`: how long until the target invites the body, and the whole exchange.
"""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path
from typing import Any

from bench.settings import DOWNLOAD_PATH, TOKEN_HEADER, UPLOAD_PATH

MIB = 1 << 20
_BLOCK = memoryview(bytes(MIB))


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _head(sock: socket.socket, pending: bytearray) -> tuple[int, dict[str, str]]:
    """Read one answer's status and headers; what came after them stays in `pending`."""
    while b"\r\n\r\n" not in pending:
        data = sock.recv(65536)
        if not data:
            raise RuntimeError(f"connection closed before an answer: {bytes(pending[:200])!r}")
        pending += data
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    pending[:] = rest
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
    return int(lines[0].split()[1]), {k.strip().lower(): v.strip() for k, v in fields.items()}


def _drain(sock: socket.socket, pending: bytearray, length: int) -> int:
    got = len(pending)
    buf = bytearray(MIB)
    view = memoryview(buf)
    while got < length:
        n = sock.recv_into(view)
        if not n:
            break
        got += n
    return got


def _body(sock: socket.socket, pending: bytearray, length: int) -> bytes:
    while len(pending) < length:
        data = sock.recv(65536)
        if not data:
            break
        pending += data
    return bytes(pending)


class PeakRss:
    """The growth of a process's peak resident set while the block runs (Linux: clear_refs 5)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.growth_mib = pid, 0.0

    def _field(self, name: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def __enter__(self) -> PeakRss:
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        self.before = self._field("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.growth_mib = round(max(0, self._field("VmHWM") - self.before) / MIB, 1)


def gib_stream(url: str, token: str, pid: int, size: int) -> dict[str, Any]:
    """One `size`-byte GET and one PUT through `url`; GiB/s and the peak RSS growth of `pid`."""
    out: dict[str, Any] = {"bytes": size}
    auth = f"{TOKEN_HEADER}: {token}\r\n"
    with PeakRss(pid) as rss, _connect(url) as sock:
        t0 = time.perf_counter()
        sock.sendall(f"GET {DOWNLOAD_PATH}?bytes={size} HTTP/1.1\r\nHost: b\r\n{auth}\r\n".encode())
        pending = bytearray()
        status, headers = _head(sock, pending)
        got = _drain(sock, pending, int(headers.get("content-length", "0")))
        seconds = time.perf_counter() - t0
    if status != 200 or got != size:
        raise RuntimeError(f"GET {size} bytes via {url}: {status}, {got} bytes")
    out["get"] = {"gib_per_s": round(size / (1 << 30) / seconds, 2), "rss_growth_mib": rss.growth_mib}
    with PeakRss(pid) as rss, _connect(url) as sock:
        t0 = time.perf_counter()
        head = f"PUT {UPLOAD_PATH} HTTP/1.1\r\nHost: b\r\n{auth}Content-Length: {size}\r\n\r\n"
        sock.sendall(head.encode())
        left = size
        while left:
            part = _BLOCK if left >= MIB else _BLOCK[:left]
            sock.sendall(part)
            left -= len(part)
        pending = bytearray()
        status, headers = _head(sock, pending)
        body = _body(sock, pending, int(headers.get("content-length", "0")))
        seconds = time.perf_counter() - t0
    if status != 200 or str(size).encode() not in body:  # the stub answers {"bytes": n}
        raise RuntimeError(f"PUT {size} bytes via {url}: {status} {body[:200]!r}")
    out["put"] = {"gib_per_s": round(size / (1 << 30) / seconds, 2), "rss_growth_mib": rss.growth_mib}
    return out


def expect_continue(url: str, token: str, size: int = MIB, rounds: int = 20) -> dict[str, Any]:
    """`PUT` with `Expect: 100-continue`: the median time until `100 Continue` arrives, and until the
    final answer after the body. A client that got no invitation would wait (curl: 1 s) instead."""
    to_continue, total = [], []
    auth = f"{TOKEN_HEADER}: {token}\r\n"
    head = f"PUT {UPLOAD_PATH} HTTP/1.1\r\nHost: b\r\n{auth}Content-Length: {size}\r\n"
    head += "Expect: 100-continue\r\n\r\n"
    for _ in range(rounds):
        with _connect(url) as sock:
            t0 = time.perf_counter()
            sock.sendall(head.encode())
            pending = bytearray()
            status, _ = _head(sock, pending)
            t1 = time.perf_counter()
            if status != 100:
                raise RuntimeError(f"Expect: 100-continue via {url} answered {status}, not 100")
            sock.sendall(_BLOCK[:size])
            status, headers = _head(sock, pending)
            _body(sock, pending, int(headers.get("content-length", "0")))
            t2 = time.perf_counter()
            if status != 200:
                raise RuntimeError(f"the body after 100 Continue via {url} answered {status}")
        to_continue.append(t1 - t0)
        total.append(t2 - t0)
    to_continue.sort()
    total.sort()
    return {
        "rounds": rounds,
        "continue_median_ms": round(1000 * to_continue[rounds // 2], 2),
        "continue_max_ms": round(1000 * to_continue[-1], 2),
        "total_median_ms": round(1000 * total[rounds // 2], 2),
    }
