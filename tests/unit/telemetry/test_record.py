"""The record builder against the one definition: every record it builds validates (strict, no
unknown keys) for every kind of traffic; severity, client address and time formatting as tables."""

from __future__ import annotations

import ipaddress
import json
import time

import pytest

from proxy.grpc import CallRecord
from proxy.model import CredentialKind, Identity, RequestContext, Route, Verb
from proxy.telemetry.line import http_line, http_record
from proxy.telemetry.record import client_ip, grpc_record, rfc3339, severity
from proxy.telemetry.schema import AccessRecord

NOW = 1_777_000_000.25
GFE = (ipaddress.ip_network("35.191.0.0/16"), ipaddress.ip_network("130.211.0.0/22"))
LB = (*GFE, ipaddress.ip_network("34.120.1.2/32"))


def ctx(**kw: object) -> RequestContext:
    c = RequestContext("r" * 32, "GET", "/api/jobs/?limit=1", "35.191.3.4", time.monotonic(), tenant="team-a")
    for k, v in kw.items():
        setattr(c, k, v)
    return c


ALICE = Identity("alice@example.com", "1", CredentialKind.GOOGLE_ID_TOKEN)
ROUTE = Route("GET", "/api/jobs/{job_or_submission_id}", Verb.VIEW)


@pytest.mark.parametrize(
    "c",
    [
        ctx(decision="allow", status=200, identity=ALICE, route=ROUTE, verb=Verb.VIEW, source="static"),
        ctx(decision="deny", status=403, identity=ALICE, reason="no", source="static", job_id="raysubmit_1"),
        ctx(decision="deny", status=401, reason="no credential", source="authn"),
        ctx(decision="error", status=500, reason="internal proxy error", extra={"aborted": "cancelled"}),
        ctx(decision="local", status=200, reason="health", trace_id="a" * 32, span_id="b" * 16),
        ctx(method="-", target="-", decision="deny", status=400, extra={"parser": "BadStatusLine"}),
        ctx(websocket=True, status=101, decision="allow", extra={"close_code": "4001", "other": "x"}),
    ],
    ids=["allow", "deny", "unauthenticated", "error", "probe", "parser", "websocket"],
)
def test_every_http_record_is_valid(c: RequestContext) -> None:
    record = http_record(c, "proj", (), NOW, 0.0123)
    parsed = AccessRecord.model_validate(record)
    assert parsed.model_dump(by_alias=True) == record  # nothing dropped, nothing coerced
    assert record["httpRequest"]["latency"] == "0.012300s" and record["time"] == "2026-04-24T03:06:40.250Z"


def test_websocket_and_extras() -> None:
    record = http_record(ctx(websocket=True, extra={"close_code": "4001", "other": "x"}), "", (), NOW, 1)
    assert (
        record["kind"] == "websocket" and record["close_code"] == 4001 and record["extra"] == {"other": "x"}
    )
    assert http_record(ctx(extra={"close_code": "None"}), "", (), NOW, 1)["close_code"] is None


def test_trace_link_needs_a_project_and_a_trace() -> None:
    assert http_record(ctx(trace_id="a" * 32), "p", (), NOW, 0)["logging.googleapis.com/trace"] == (
        "projects/p/traces/" + "a" * 32
    )
    assert http_record(ctx(trace_id="a" * 32), "", (), NOW, 0)["logging.googleapis.com/trace"] is None
    assert http_record(ctx(), "p", (), NOW, 0)["logging.googleapis.com/trace"] is None


@pytest.mark.parametrize(
    "decision, status, expected",
    [("allow", 200, "INFO"), ("local", 503, "ERROR"), ("deny", 403, "WARNING"), ("deny", 401, "WARNING")]
    + [("allow", 502, "ERROR"), ("error", 400, "ERROR"), ("allow", 499, "INFO")],
)
def test_severity(decision: str, status: int, expected: str) -> None:
    assert severity(decision, status) == expected


@pytest.mark.parametrize(
    "peer, xff, trusted, per_hop, expected",
    [
        ("35.191.3.4", "203.0.113.9, 34.120.1.2", GFE, 2, "203.0.113.9"),  # GFE: `client, forwarding-rule`
        ("35.191.3.4", "6.6.6.6, 203.0.113.9, 34.120.1.2", GFE, 2, "203.0.113.9"),  # the client's own say
        ("35.191.3.4", "203.0.113.9, 34.120.1.2", LB, 1, "203.0.113.9"),  # or the LB's address listed
        ("35.191.3.4", "203.0.113.9, 34.120.1.2", GFE, 1, "34.120.1.2"),  # neither: the LB's address
        ("35.191.3.4", "203.0.113.9", (), 2, "35.191.3.4"),  # nothing trusted: the peer
        ("10.0.0.5", "203.0.113.9, 34.120.1.2", GFE, 2, "10.0.0.5"),  # an untrusted peer's header: ignored
        ("35.191.3.4", "", GFE, 2, "35.191.3.4"),
        ("35.191.3.4", "34.120.1.2", GFE, 2, "35.191.3.4"),  # fewer entries than the hop writes
        ("35.191.3.4", "not-an-ip, 34.120.1.2", GFE, 2, "35.191.3.4"),  # garbage: the last trusted hop
        ("35.191.3.4", "2001:db8::1, 34.120.1.2", GFE, 2, "2001:db8::1"),
        ("130.211.0.9", "198.51.100.1, 35.191.0.1, 130.211.0.8", GFE, 1, "198.51.100.1"),  # a chain of hops
    ],
)
def test_client_ip(
    peer: str, xff: str, trusted: tuple[ipaddress.IPv4Network, ...], per_hop: int, expected: str
) -> None:
    assert client_ip(peer, xff, trusted, per_hop) == expected


def test_rfc3339() -> None:
    assert rfc3339(0.0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(NOW + 0.999) == "2026-04-24T03:06:41.249Z"
    assert rfc3339(NOW) == "2026-04-24T03:06:40.250Z"


@pytest.mark.parametrize(
    "code, decision, severity_",
    [("OK", "allow", "INFO"), ("FAILED_PRECONDITION", "deny", "WARNING"), ("INTERNAL", "deny", "ERROR")]
    + [("UNAVAILABLE", "allow", "ERROR"), ("CANCELLED", "allow", "INFO")],
)
def test_grpc_record(code: str, decision: str, severity_: str) -> None:
    call = CallRecord(
        method="/ray.rpc.RayletDriver/GetObject",
        verb="client",
        principal="alice@example.com",
        decision=decision,  # type: ignore[arg-type]
        code=code,
        details="d",
        bytes_in=10,
        bytes_out=20,
        messages_in=1,
        messages_out=2,
        duration_s=0.5,
        client_id="c" * 32,
        peer="ipv6:[::1]:5050",
        credential="iap",
    )
    record = grpc_record(call, tenant="team-a", request_id="r" * 32, now=NOW)
    AccessRecord.model_validate(record)
    assert record["severity"] == severity_ and record["peer"] == "::1" and record["credential"] == "iap"
    assert record["httpRequest"]["requestSize"] == "10" and record["grpc"]["messages_out"] == 2
    assert record["aborted"] == ("cancelled" if code == "CANCELLED" else None)


@pytest.mark.parametrize(
    "text",
    ["plain", 'quote " and \\ backslash', "ünïcödé ✓ 🚀", "control \x00\x1f\n\t", "</script>", ""],
)
def test_the_line_is_what_json_would_write(text: str) -> None:
    """The hand-written line is byte for byte `json.dumps` of what it says, for any string value."""
    c = ctx(
        decision="deny",
        status=403,
        identity=ALICE,
        route=ROUTE,
        verb=Verb.VIEW,
        reason=text,
        user_agent=text,
        forwarded_for=text,
        target=f"/api/{text}?q={text}",
        job_id=text,
        upstream_status=502,
        trace_id="a" * 32,
        span_id="b" * 16,
        trace_sampled=True,
        extra={"close_code": "1000", "aborted": "client", "parser": text, "x": text},
    )
    line, kind, verb, decision = http_line(c, "p", (), NOW, 0.5)
    parsed = json.loads(line)
    assert line == json.dumps(parsed, separators=(",", ":"))
    assert (kind, verb, decision) == ("http", "view", "deny") and parsed["reason"] == text
    AccessRecord.model_validate(parsed)
