"""The supervisor relays each worker's output in whole lines (two workers' lines never interleave
mid-line), and a line that never ends is cut at `MAX_LINE_BYTES` instead of growing in memory."""

from __future__ import annotations

import asyncio

from proxy.workers import MAX_LINE_BYTES, relay_lines


class Out:
    """A text stream whose binary `buffer` records each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.buffer = self

    def write(self, data: bytes) -> int:
        self.writes.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


async def relayed(*pieces: bytes) -> list[bytes]:
    stream = asyncio.StreamReader()
    for piece in pieces:
        stream.feed_data(piece)
    stream.feed_eof()
    out = Out()
    await relay_lines(stream, out)  # type: ignore[arg-type]
    return out.writes


async def test_every_write_ends_at_a_line_end() -> None:
    stream = asyncio.StreamReader()
    out = Out()
    relay = asyncio.create_task(relay_lines(stream, out))  # type: ignore[arg-type]
    for piece in (b'{"a":', b'1}\n{"b"', b":2}\n{", b'"c":3}\n'):
        stream.feed_data(piece)
        await asyncio.sleep(0)  # each piece read on its own
    stream.feed_eof()
    await relay
    assert all(w.endswith(b"\n") for w in out.writes), out.writes
    assert b"".join(out.writes) == b'{"a":1}\n{"b":2}\n{"c":3}\n'


async def test_a_last_line_without_its_end_is_ended() -> None:
    assert b"".join(await relayed(b"one\ntwo")) == b"one\ntwo\n"


async def test_a_line_that_never_ends_is_cut_not_held() -> None:
    writes = await relayed(*(b"x" * 65536 for _ in range(2 * MAX_LINE_BYTES // 65536)))
    assert len(writes) >= 2 and all(w.endswith(b"\n") for w in writes)
    assert max(len(w) for w in writes) <= MAX_LINE_BYTES + 65536 + 1
    assert b"".join(writes).replace(b"\n", b"") == b"x" * (2 * MAX_LINE_BYTES)
