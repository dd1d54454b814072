"""Request-size, timeout and connection bounds (`limits:`)."""

from __future__ import annotations

from .base import Float, Int, Section, setting

MIB = 1024 * 1024


class Limits(Section):
    """Request-size, timeout and connection bounds."""

    max_body_bytes: Int = setting(
        100 * MIB + 64 * 1024,
        "a larger request body gets 413 (Ray's own limit is 100 MiB). Bodies are streamed, never buffered.",
        low=0,
        high=2**40,
        shown="100 MiB + 64 KiB",
    )
    max_websocket_message_bytes: Int = setting(
        4 * MIB,
        "a WebSocket message of this size or larger closes the stream (1009).",
        low=1024,
        high=2**30,
        shown="4 MiB",
    )
    max_header_bytes: Int = setting(8190, "one header line longer than this: 431.", low=1024, high=MIB)
    max_headers: Int = setting(100, "more header fields: 431.", low=8, high=10_000)
    max_target_length: Int = setting(4096, "a longer request target: 414.", low=64, high=MIB)
    client_idle_timeout_seconds: Float = setting(
        75.0,
        "an idle keep-alive connection is closed after this; it also bounds how long a request's "
        "headers may take to arrive.",
        low=1,
        high=86400,
    )
    client_read_timeout_seconds: Float = setting(
        60.0,
        "a client that stops sending its body, or stops reading the answer, for this long: 408, or the "
        "connection is cut if the answer has started. Ray's side of the request is cancelled.",
        low=0.5,
        high=3600,
    )
    max_connections: Int = setting(
        1024,
        "concurrent client connections; one more gets a canned 503 and is closed (counted in metrics).",
        low=1,
        high=1_000_000,
    )
    upstream_connect_timeout_seconds: Float = setting(
        5.0, 'connecting to Ray; then 502 "Ray is not reachable".', low=0.1, high=300
    )
    upstream_read_timeout_seconds: Float = setting(
        3600.0,
        "silence from Ray mid-request before 504; long because log streams can be quiet. Match the load "
        "balancer's `timeoutSec`.",
        low=1,
        high=86400,
    )
