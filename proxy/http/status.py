"""The one table from refusal kinds to HTTP statuses, with each status's title and error code."""

from __future__ import annotations

from ..errors import Kind

STATUS: dict[Kind, int] = {
    Kind.MALFORMED: 400,
    Kind.TARGET_TOO_LONG: 414,
    Kind.HEADERS_TOO_LARGE: 431,
    Kind.UNAUTHENTICATED: 401,
    Kind.FORBIDDEN: 403,
    Kind.UNAVAILABLE: 503,
    Kind.BODY_TOO_LARGE: 413,
    Kind.CLIENT_TIMEOUT: 408,
    Kind.UPSTREAM_UNREACHABLE: 502,
    Kind.UPSTREAM_TIMEOUT: 504,
    Kind.UPSTREAM_FAILED: 502,
    Kind.UPSTREAM_REFUSED: 502,  # unless Ray's own refusal status says more: see `status_for`
    Kind.BUSY: 503,
    Kind.EXPECTATION_FAILED: 417,
    Kind.VERSION_NOT_SUPPORTED: 505,
    Kind.UPGRADE_REQUIRED: 426,
    Kind.INTERNAL: 500,
}

TITLES = {
    400: "Bad request",
    401: "Sign-in required",
    403: "Not allowed",
    404: "Not found",
    408: "Request timed out",
    413: "Request too large",
    414: "Request target too long",
    417: "Expectation not supported",
    426: "WebSocket handshake required",
    431: "Request headers too large",
    500: "Proxy error",
    502: "Ray is unavailable",
    503: "Not ready",
    504: "Ray did not answer in time",
    505: "HTTP version not supported",
}
ERRORS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    408: "request_timeout",
    413: "too_large",
    414: "target_too_long",
    417: "expectation_failed",
    426: "upgrade_required",
    431: "headers_too_large",
    500: "internal",
    502: "bad_gateway",
    503: "unavailable",
    504: "gateway_timeout",
    505: "http_version_not_supported",
}


def status_for(kind: Kind, upstream_status: int | None = None) -> int:
    if kind is Kind.UPSTREAM_REFUSED and upstream_status is not None and upstream_status >= 400:
        return upstream_status  # Ray's own refusal of a WebSocket upgrade (404, 403...), relayed
    return STATUS[kind]
