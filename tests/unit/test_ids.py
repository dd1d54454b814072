"""Request ids: 32 hex digits of the OS's randomness, without a system call each, never repeated
across a fork (workers)."""

from __future__ import annotations

import os

from proxy.ids import request_id


def test_ids_are_32_hex_digits_and_distinct_across_blocks() -> None:
    ids = [request_id() for _ in range(2000)]  # several blocks of 256
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_a_forked_child_draws_ids_of_its_own() -> None:
    request_id()  # the parent holds a partly used block
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, ",".join(request_id() for _ in range(300)).encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    child = set(os.read(read, 1 << 16).decode().split(","))
    os.close(read)
    parent = {request_id() for _ in range(300)}
    assert status == 0 and len(child) == 300 and not child & parent
