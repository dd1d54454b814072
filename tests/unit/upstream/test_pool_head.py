"""The request head the pool writes to Ray: byte for byte what the client sent (values aiohttp decoded
with surrogates are encoded back), the framing the pool chose, and never a line break smuggled in."""

from __future__ import annotations

import pytest

from proxy.errors import Kind, ProxyError
from proxy.upstream.pool_relay import request_head


def test_the_head_is_the_request_line_host_headers_and_framing() -> None:
    head = request_head(
        "PUT", "/api/x?a=1", "127.0.0.1:8265", [("A", "b"), ("C", "d e")], "Content-Length: 3"
    )
    assert head == (
        b"PUT /api/x?a=1 HTTP/1.1\r\nHost: 127.0.0.1:8265\r\nA: b\r\nC: d e\r\nContent-Length: 3\r\n\r\n"
    )


def test_bytes_that_are_not_utf8_go_through_unchanged() -> None:
    value = b"caf\xe9 \xff".decode("utf-8", "surrogateescape")  # as aiohttp's parser hands them over
    assert b"X: caf\xe9 \xff\r\n" in request_head("GET", "/", "h", [("X", value)], None)


@pytest.mark.parametrize(
    "target, headers",
    [
        ("/a", [("X", "1\r\nInjected: yes")]),
        ("/a", [("X", "1\nInjected: yes")]),
        ("/a", [("X\r\nInjected", "yes")]),
        ("/a HTTP/1.1\r\nX: y", []),
        ("/a b", []),
        ("/a", [("X", "1\r")]),
    ],
    ids=["crlf-in-value", "lf-in-value", "crlf-in-name", "crlf-in-target", "space-in-target", "cr-alone"],
)
def test_a_line_break_anywhere_is_refused(target: str, headers: list[tuple[str, str]]) -> None:
    with pytest.raises(ProxyError) as caught:
        request_head("GET", target, "h", headers, None)
    assert caught.value.kind is Kind.INTERNAL
