"""Every error the proxy raises on purpose, in one tree. Each carries a `kind` — what went wrong, in
terms every transport can answer — and a `reason`: short, safe to show to the caller and to log (never
a token, a cookie or a stack trace). Statuses are not here: each transport maps kinds to its own
answers in exactly one table (HTTP: `http/status.py`; gRPC: `grpc/status.py`).

    ProxyError                     kind, reason
    ├── Refused                    refused before Ray sees anything
    │   ├── Malformed              MALFORMED · TARGET_TOO_LONG · HEADERS_TOO_LARGE
    │   ├── Unauthenticated        UNAUTHENTICATED: no, bad, expired or ambiguous credentials
    │   │   └── UnknownKeyId       signed with a key id we lack (the key store may refetch once)
    │   └── Forbidden              FORBIDDEN: unknown or internal route, cross-site, not granted
    ├── Unavailable                UNAVAILABLE: something we depend on is down (key set, policy source)
    ├── ClientFault                the client broke its own request mid-way
    │   └── BodyTooLarge           BODY_TOO_LARGE
    │   (others: CLIENT_TIMEOUT, MALFORMED for a broken body; EXPECTATION_FAILED,
    │   VERSION_NOT_SUPPORTED, UPGRADE_REQUIRED for what HTTP itself cannot do as asked)
    ├── UpstreamError              UPSTREAM_UNREACHABLE · UPSTREAM_TIMEOUT · UPSTREAM_FAILED
    │                              · UPSTREAM_REFUSED (Ray refused a WebSocket upgrade: its status kept)
    └── Internal                   INTERNAL: a bug of ours; the reason never says more

`ConfigError` stands apart: it is raised at load time, never per request, and lists every problem.
"""

from __future__ import annotations

import enum


class Kind(enum.Enum):
    MALFORMED = "malformed"
    TARGET_TOO_LONG = "target_too_long"
    HEADERS_TOO_LARGE = "headers_too_large"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    UNAVAILABLE = "unavailable"
    BODY_TOO_LARGE = "too_large"
    CLIENT_TIMEOUT = "request_timeout"
    UPSTREAM_UNREACHABLE = "upstream_unreachable"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_FAILED = "upstream_failed"
    UPSTREAM_REFUSED = "upstream_refused"
    BUSY = "busy"
    EXPECTATION_FAILED = "expectation_failed"  # an `Expect` other than 100-continue
    VERSION_NOT_SUPPORTED = "version_not_supported"  # an HTTP version other than 1.0 and 1.1
    UPGRADE_REQUIRED = "upgrade_required"  # a WebSocket route asked without a WebSocket handshake we speak
    INTERNAL = "internal"


class ProxyError(Exception):
    kind: Kind = Kind.INTERNAL

    def __init__(self, reason: str, kind: Kind | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if kind is not None:
            self.kind = kind


class Refused(ProxyError):
    """Refused before Ray sees anything. `hint` is advice for a person, when the reason is not enough."""

    def __init__(self, reason: str, kind: Kind | None = None, hint: str | None = None) -> None:
        super().__init__(reason, kind)
        self.hint = hint


class Malformed(Refused):
    kind = Kind.MALFORMED


class Unauthenticated(Refused):
    kind = Kind.UNAUTHENTICATED


class UnknownKeyId(Unauthenticated):
    """The token names a `kid` that is not in the key set we hold."""

    def __init__(self, kid: str) -> None:
        super().__init__("signed with an unknown key id")
        self.kid = kid


class Forbidden(Refused):
    kind = Kind.FORBIDDEN


class Unavailable(ProxyError):
    kind = Kind.UNAVAILABLE


class ClientFault(ProxyError):
    kind = Kind.MALFORMED


class BodyTooLarge(ClientFault):
    kind = Kind.BODY_TOO_LARGE

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


class UpstreamError(ProxyError):
    kind = Kind.UPSTREAM_FAILED

    def __init__(self, reason: str, kind: Kind | None = None, upstream_status: int | None = None) -> None:
        super().__init__(reason, kind)
        self.upstream_status = upstream_status


class Internal(ProxyError):
    kind = Kind.INTERNAL

    def __init__(self, reason: str = "internal proxy error") -> None:
        super().__init__(reason)


class ConfigError(Exception):
    """Every problem found in a config or policy, one line each, each naming the key path and value."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
