"""The one free-port helper of the test stack, the demo, the soak and the benchmarks."""

from __future__ import annotations

import socket


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct ports the kernel reports free right now.

    All sockets are held open until every port is chosen so the kernel cannot
    hand out the same port twice. There is still a small race with other
    processes between closing them and Ray binding them.
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]
