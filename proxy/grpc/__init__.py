"""Ray Client (ray://, gRPC) through the proxy: the seam between the listener and admission.

What admission answers for one call (CallAdmission), what each call leaves (CallRecord), and the one
table from the proxy's refusal kinds (`errors.Kind`, the same kinds HTTP maps to statuses) to gRPC
codes (STATUS). The listener is in listener.py, Ray's ping in methods.py, session owners in
sessions.py, the admission adapter in admission.py, the relay in proxy/upstream/grpc.py; the method
table is a route table of its own (proxy/authz/routes/ray_client.py).

Measured against Ray 2.60 (tests/e2e/test_ray_client.py): Ray's client hides any error of its first
call (the ClusterInfo "ping") and gives up after 30 s with "ray client connection timeout"; past the
ping, only a FINAL code ends ray.init at once, with our details shown; other codes (UNAUTHENTICATED and
PERMISSION_DENIED included) make it reconnect for ever. So the proxy's final refusals use FINAL codes,
with details that say which refusal it is, and a refused ping whose code is final gets Ray's constant
ping answer (no data) for the client to reach Datapath and report its refusal. Never ABORTED: Ray's
client unpickles its details (`decode_exception`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import grpc

from proxy.errors import Kind
from proxy.upstream.grpc import Metadata

__all__ = ["FINAL", "STATUS", "Admit", "CallAdmission", "CallRecord", "Record", "refusal"]


@dataclass(frozen=True)
class CallAdmission:
    """What admission answers for one RPC."""

    allowed: bool
    code: grpc.StatusCode  # meaningful when not allowed
    details: str  # safe, human-readable; never contains a token
    principal: str  # who (e.g. "alice@example.com"); "" when unauthenticated
    upstream_metadata: Metadata  # what to send to Ray when allowed
    verb: str = ""  # the method's verb, "" for a method the table does not know
    credential: str = ""  # the credential kind that decided, "" when unauthenticated


@dataclass(frozen=True)
class CallRecord:
    """One access record per call, written when the call has ended."""

    method: str
    verb: str  # "" for a method the table does not know
    principal: str
    decision: Literal["allow", "deny"]
    code: str  # grpc.StatusCode name: "OK", "FAILED_PRECONDITION", ...
    details: str
    bytes_in: int
    bytes_out: int
    messages_in: int
    messages_out: int
    duration_s: float
    client_id: str
    peer: str
    credential: str = ""


Admit = Callable[[str, Metadata], Awaitable[CallAdmission]]  # (full method name, invocation metadata)
Record = Callable[[CallRecord], None]

_C = grpc.StatusCode
# The one table from a refusal kind to a gRPC code (the module docstring says why these).
STATUS: Mapping[Kind, grpc.StatusCode] = MappingProxyType(
    {
        Kind.UNAUTHENTICATED: _C.FAILED_PRECONDITION,  # final; the details say "sign in"
        Kind.FORBIDDEN: _C.FAILED_PRECONDITION,  # final; the details say what is not allowed
        Kind.MALFORMED: _C.INVALID_ARGUMENT,  # not a call a Ray client sends (no or several client_id)
        Kind.TARGET_TOO_LONG: _C.INVALID_ARGUMENT,
        Kind.HEADERS_TOO_LARGE: _C.INVALID_ARGUMENT,
        Kind.BODY_TOO_LARGE: _C.RESOURCE_EXHAUSTED,
        Kind.BUSY: _C.RESOURCE_EXHAUSTED,  # too many sessions: final, close some
        Kind.UNAVAILABLE: _C.UNAVAILABLE,  # the proxy cannot decide now: the client retries, as in an outage
        Kind.UPSTREAM_UNREACHABLE: _C.UNAVAILABLE,
        Kind.UPSTREAM_TIMEOUT: _C.DEADLINE_EXCEEDED,
        Kind.UPSTREAM_FAILED: _C.UNAVAILABLE,
        Kind.UPSTREAM_REFUSED: _C.UNAVAILABLE,
        Kind.CLIENT_TIMEOUT: _C.DEADLINE_EXCEEDED,
        Kind.INTERNAL: _C.INTERNAL,
    }
)

# Codes after which Ray's client gives up at once (`util/client/common.py`), ABORTED left out.
FINAL = frozenset({_C.FAILED_PRECONDITION, _C.INVALID_ARGUMENT, _C.NOT_FOUND, _C.RESOURCE_EXHAUSTED})


def refusal(kind: Kind, details: str, principal: str = "", verb: str = "") -> CallAdmission:
    return CallAdmission(False, STATUS[kind], details, principal, (), verb)
