"""Ray Client (ray://, gRPC) through the proxy: the seam between the listener and admission.

What admission answers for one call (CallAdmission), what each call leaves (CallRecord), and the one
table from the proxy's refusal kinds to gRPC codes (STATUS). The listener is in listener.py, the
method table in methods.py, session owners in sessions.py, the relay in proxy/upstream/grpc.py.

The proxy's own refusals get their code from STATUS, the one table; Ray's codes, details and trailing
metadata are relayed as they are. Measured against Ray 2.60 (tests/e2e/test_ray_client.py): Ray's
client hides any error of its first call (the ClusterInfo "ping") and gives up after 30 s with
"ray client connection timeout"; past the ping, only a FINAL code ends ray.init at once, with our
details shown; other codes make it reconnect for ever. So final refusals use FINAL codes, and a refused
ping whose code is final gets Ray's constant ping answer (no data) for the client to reach Datapath
and report its refusal. Never ABORTED: Ray's client unpickles its details (`decode_exception`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Literal

import grpc

from proxy.upstream.grpc import Metadata

__all__ = ["FINAL", "STATUS", "Admit", "CallAdmission", "CallRecord", "Record", "Refusal", "refusal"]


@dataclass(frozen=True)
class CallAdmission:
    """What admission answers for one RPC."""

    allowed: bool
    code: grpc.StatusCode  # meaningful when not allowed
    details: str  # safe, human-readable; never contains a token
    principal: str  # who (e.g. "alice@example.com"); "" when unauthenticated
    upstream_metadata: Metadata  # what to send to Ray when allowed


@dataclass(frozen=True)
class CallRecord:
    """One access record per call, written when the call has ended."""

    method: str
    verb: str  # "" for a method the table does not know
    principal: str
    decision: Literal["allow", "deny"]
    code: str  # grpc.StatusCode name: "OK", "PERMISSION_DENIED", ...
    details: str
    bytes_in: int
    bytes_out: int
    messages_in: int
    messages_out: int
    duration_s: float
    client_id: str
    peer: str


Admit = Callable[[str, Metadata], Awaitable[CallAdmission]]  # (full method name, invocation metadata)
Record = Callable[[CallRecord], None]


class Refusal(Enum):
    UNAUTHENTICATED = "unauthenticated"  # no or bad credentials
    FORBIDDEN = "forbidden"  # authenticated, not allowed
    UNAVAILABLE = "unavailable"  # the proxy cannot decide now (e.g. keys not reachable)
    MALFORMED = "malformed"  # the call is not one a Ray client sends (no or several client_id, ...)
    UNKNOWN_METHOD = "unknown method"
    SESSION_TAKEN = "session taken"  # client_id of a live session of another principal
    TOO_MANY_SESSIONS = "too many sessions"
    UPSTREAM_UNREACHABLE = "upstream unreachable"
    INTERNAL = "internal"


# The one table from a refusal kind to a gRPC code (see the module docstring for why these).
STATUS: Mapping[Refusal, grpc.StatusCode] = MappingProxyType(
    {
        # Final, so ray.init ends at once and shows the details; UNAUTHENTICATED and PERMISSION_DENIED
        # would leave it reconnecting for ever. The code is shared: the details must say which it is.
        Refusal.UNAUTHENTICATED: grpc.StatusCode.FAILED_PRECONDITION,
        Refusal.FORBIDDEN: grpc.StatusCode.FAILED_PRECONDITION,
        Refusal.MALFORMED: grpc.StatusCode.INVALID_ARGUMENT,
        Refusal.TOO_MANY_SESSIONS: grpc.StatusCode.RESOURCE_EXHAUSTED,
        # Transient: Ray's client retries (30 s at connect, its reconnect grace period in a session).
        Refusal.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
        Refusal.UPSTREAM_UNREACHABLE: grpc.StatusCode.UNAVAILABLE,
        Refusal.INTERNAL: grpc.StatusCode.INTERNAL,
        # What a gRPC server answers for a method it does not serve; Ray's client never calls one.
        Refusal.UNKNOWN_METHOD: grpc.StatusCode.UNIMPLEMENTED,
        # Only a client presenting someone else's client_id gets this; it is left to retry.
        Refusal.SESSION_TAKEN: grpc.StatusCode.PERMISSION_DENIED,
    }
)

# Codes after which Ray's client gives up at once (`util/client/common.py`), ABORTED left out.
_C = grpc.StatusCode
FINAL = frozenset({_C.FAILED_PRECONDITION, _C.INVALID_ARGUMENT, _C.NOT_FOUND, _C.RESOURCE_EXHAUSTED})


def refusal(kind: Refusal, details: str, principal: str = "") -> CallAdmission:
    return CallAdmission(False, STATUS[kind], details, principal, ())
