"""What the access record is made of: its time, severity, client address and cut strings, and a gRPC
call's record (`grpc_record`, a dict); an HTTP request's line is written by `line.py`. The fields
are defined in `schema.py`; tests hold the builders and the definition together.

Pure (the clock is passed in). Nothing here reads a body or a header value that could hold a
credential: the user agent, `X-Forwarded-For`, the path and the query are the only client-supplied
strings; each is redacted before it is cut to length, and the whole line again by the writer.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .redaction import redact
from .schema import SAMPLED_KEY, SCHEMA, SPAN_KEY, TRACE_KEY

if TYPE_CHECKING:
    from ..grpc import CallRecord

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
KNOWN_EXTRA = ("aborted", "parser", "close_code")
_second = -1
_prefix = ""


def rfc3339(now: float) -> str:
    """`2026-05-01T12:00:00.123Z`, to the millisecond `round(now, 3)` names (so `time` and `ts` of a
    record agree). The seconds part is formatted once per second."""
    global _second, _prefix
    whole, ms = divmod(round(now * 1000), 1000)
    if whole != _second:
        _second, _prefix = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{_prefix}.{ms:03d}Z"


def severity(decision: str, status: int) -> str:
    if decision == "error" or status >= 500:
        return "ERROR"
    return "WARNING" if decision == "deny" else "INFO"


def client_ip(peer: str, forwarded_for: str, trusted: Sequence[Network], per_hop: int = 1) -> str:
    """The client's address. `X-Forwarded-For` is believed only from a trusted peer, and only as far
    as trusted hops wrote it: each trusted hop appended `per_hop` addresses, its client's first
    (Google's load balancer appends two, `client, forwarding-rule-address`; most proxies one). The
    first of those that is not itself a trusted hop is the client; anything further left is the
    client's own say."""
    if not trusted or not forwarded_for or not _within(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",")]
    client, index = peer, len(hops) - per_hop
    while index >= 0:
        hop = hops[index]
        if not _is_ip(hop):
            return client  # garbage where a trusted hop wrote: stop at the last address we believe
        if not _within(hop, trusted):
            return hop
        client, index = hop, index - per_hop
    return client


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _within(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def cut(text: str, limit: int) -> str:
    """`text` at most `limit` characters. What is cut is redacted first: half a token no longer looks
    like one to the writer's redaction of the whole line. (What is not cut is left to the writer.)"""
    return text if len(text) <= limit else redact(text)[:limit]


def trace_name(project: str, trace_id: str) -> str | None:
    return f"projects/{project}/traces/{trace_id}" if project and trace_id else None


def grpc_record(
    call: CallRecord,
    *,
    tenant: str,
    request_id: str,
    now: float,
    source: str | None = None,
) -> dict[str, Any]:
    """The record of a finished gRPC call (`proxy.grpc.CallRecord`): the same schema, `kind` grpc.
    The call's peer is grpc's `ipv4:10.0.0.7:43512`; its details are the reason."""
    principal = call.principal or None
    decision = call.decision if call.code != "INTERNAL" else "error"
    status = 200
    failed = call.decision == "allow" and call.code in ("INTERNAL", "UNAVAILABLE", "UNKNOWN", "DATA_LOSS")
    peer = _grpc_peer(call.peer)
    return {
        "schema": SCHEMA,
        "time": rfc3339(now),
        "ts": round(now, 3),
        "severity": "ERROR" if failed or decision == "error" else severity(decision, 0),
        "message": f"gRPC {call.method} {call.code} {decision} {principal or '-'}",
        "kind": "grpc",
        "httpRequest": {
            "requestMethod": "POST",
            "requestUrl": cut(call.method, 2048),
            "status": status,
            "requestSize": str(call.bytes_in),
            "responseSize": str(call.bytes_out),
            "latency": f"{call.duration_s:.6f}s",
            "remoteIp": peer,
            "userAgent": "",
            "protocol": "HTTP/2",
        },
        TRACE_KEY: None,
        SPAN_KEY: None,
        SAMPLED_KEY: False,
        "trace_id": None,
        "request_id": request_id,
        "principal": principal,
        "credential": (call.credential or None) if principal else None,
        "tenant": tenant,
        "route": call.method if call.verb else None,
        "verb": call.verb or None,
        "decision": decision,
        "reason": call.details,
        "source": source,
        "job_id": None,
        "upstream_status": None,
        "duration_s": round(call.duration_s, 6),
        "peer": peer,
        "forwarded_for": None,
        "query": None,
        "close_code": None,
        "grpc": {
            "method": call.method,
            "code": call.code,
            "client_id": call.client_id or None,
            "messages_in": call.messages_in,
            "messages_out": call.messages_out,
        },
        "aborted": "cancelled" if call.code == "CANCELLED" else None,
        "parser": None,
        "extra": None,
    }


def _grpc_peer(peer: str) -> str:
    """`ipv4:10.0.0.7:43512` -> `10.0.0.7`; `ipv6:[::1]:5` -> `::1`; anything else as it is."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]") or rest
    return peer
