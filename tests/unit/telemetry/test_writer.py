"""The access log's writer: one redacted line per record, written once per loop turn, in order."""

from __future__ import annotations

import asyncio
import io

from proxy.telemetry.writer import AccessWriter

JWS = "eyJhbGciOiJFUzI1NiJ9.eyJlbWFpbCI6ImEifQ.c2lnbmF0dXJl"


async def test_one_write_per_loop_turn_in_order() -> None:
    out = io.StringIO()
    writer = AccessWriter(out)
    for i in range(3):
        writer.write({"n": i})
    assert out.getvalue() == ""  # buffered until the loop turns
    await asyncio.sleep(0)
    assert out.getvalue() == '{"n":0}\n{"n":1}\n{"n":2}\n' and writer.written == 3
    writer.write({"n": 3})
    writer.flush()  # shutdown writes what is left
    assert out.getvalue().endswith('{"n":3}\n')


def test_outside_a_loop_it_writes_at_once_and_redacts() -> None:
    out = io.StringIO()
    AccessWriter(out).write({"query": f"token={JWS}", "ua": "Bearer abc.def", "é": "ü"})
    line = out.getvalue()
    assert JWS not in line and "abc.def" not in line and line.count("[redacted]") == 2
    assert line.isascii() and line.endswith("\n") and line.count("\n") == 1


class _Closed(io.StringIO):
    def write(self, s: str) -> int:
        raise OSError(32, "Broken pipe")


def test_a_closed_stdout_is_counted_not_raised() -> None:
    writer = AccessWriter(_Closed())
    writer.write({"n": 1})
    writer.write({"n": 2})
    assert writer.failures == 2 and writer.written == 0
