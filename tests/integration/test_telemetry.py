"""The access record as written by the real app on its real listener: the exact fields for allowed,
denied, unauthenticated, errored, WebSocket and gRPC traffic; the client address behind a trusted load
balancer; the trace project from the metadata server; one line per request and nothing else on the
stream. Every record is validated against the schema's one definition (`AccessRecord`)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc import aio

from devkit.metadata_server import MetadataServer
from devkit.ray_double import ASSERTION, RayDouble
from devkit.records import AccessRecords
from devkit.util import wait_until
from proxy.errors import Kind
from proxy.grpc import CallAdmission, refusal
from proxy.grpc.listener import start_grpc_listener
from proxy.http.pipeline import PROXY
from proxy.telemetry.schema import AccessRecord
from proxy.upstream.grpc import Metadata, upstream_metadata

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
VOLATILE = {"time", "ts", "request_id", "duration_s"}


def stable(record: dict[str, Any]) -> dict[str, Any]:
    """The record with its clock- and random-dependent values checked for shape and taken out."""
    AccessRecord.model_validate(record)  # strict: every key known, every type right
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])
    assert re.fullmatch(r"[0-9a-f]{32}", record["request_id"])
    assert re.fullmatch(r"\d+\.\d{6}s", record["httpRequest"]["latency"])
    assert record["duration_s"] >= 0 and isinstance(record["ts"], float)
    out = {k: v for k, v in record.items() if k not in VOLATILE}
    out["httpRequest"] = {k: v for k, v in record["httpRequest"].items() if k != "latency"}
    return out


BASE = {
    "schema": "ray-iap-proxy/access/1",
    "kind": "http",
    "logging.googleapis.com/trace": None,
    "logging.googleapis.com/spanId": None,
    "logging.googleapis.com/trace_sampled": False,
    "trace_id": None,
    "tenant": "team-a",
    "job_id": None,
    "peer": "127.0.0.1",
    "forwarded_for": None,
    "query": None,
    "close_code": None,
    "grpc": None,
    "aborted": None,
    "parser": None,
    "extra": None,
}


def http(
    method: str, url: str, status: int, size_in: int, size_out: int, agent: str = "t/1"
) -> dict[str, Any]:
    return {
        "requestMethod": method,
        "requestUrl": url,
        "status": status,
        "requestSize": str(size_in),
        "responseSize": str(size_out),
        "remoteIp": "127.0.0.1",
        "userAgent": agent,
        "protocol": "HTTP/1.1",
    }


@pytest.fixture
async def proxy(make_client: Any, access_records: AccessRecords) -> Any:
    return await make_client(access_log=access_records)


async def test_allowed_record(proxy: Any, mint: Any, access_records: AccessRecords, stub_ray: Any) -> None:
    headers = {ASSERTION: mint(), "User-Agent": "t/1", "traceparent": TRACEPARENT}
    r = await proxy.get("/api/jobs/?limit=5", headers=headers)
    assert r.status == 200
    body = await r.read()
    (record,) = access_records.records()
    assert stable(record) == BASE | {
        "severity": "INFO",
        "message": "GET /api/jobs/ 200 allow alice@example.com",
        "httpRequest": http("GET", "/api/jobs/", 200, 0, len(body)),
        "logging.googleapis.com/spanId": "b7ad6b7169203331",  # not tracing: the caller's span
        "logging.googleapis.com/trace_sampled": True,
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "principal": "alice@example.com",
        "credential": "iap",
        "route": "/api/jobs/",
        "verb": "view",
        "decision": "allow",
        "reason": "role scientist via user:alice@example.com grants view",
        "source": "static",
        "upstream_status": 200,
        "query": "limit=5",
    }
    assert r.headers["X-Request-Id"] == record["request_id"]


async def test_denied_unauthenticated_and_wrong_audience(
    proxy: Any, mint: Any, access_records: AccessRecords
) -> None:
    r = await proxy.post(
        "/api/jobs/", headers={ASSERTION: mint("bob@example.com"), "User-Agent": "t/1"}, data=b"{}"
    )
    assert r.status == 403
    denied_size = len(await r.read())
    assert (await proxy.get("/api/jobs/", headers={"User-Agent": "t/1"})).status == 401
    r = await proxy.get(
        "/api/jobs/", headers={ASSERTION: mint(audience="/projects/9/apps/other"), "User-Agent": "t/1"}
    )
    assert r.status == 401
    assert "received '/projects/9/apps/other'" in (await r.json())["reason"]  # the answer says it too
    denied, anonymous, audience = (stable(r) for r in access_records.records())
    assert denied == BASE | {
        "severity": "WARNING",
        "message": "POST /api/jobs/ 403 deny bob@example.com",
        "httpRequest": http("POST", "/api/jobs/", 403, 0, denied_size),
        "principal": "bob@example.com",
        "credential": "iap",
        "route": "/api/jobs/",
        "verb": "submit",
        "decision": "deny",
        "reason": "verb submit is not granted by role(s) viewer in tenant team-a",
        "source": "static",
        "upstream_status": None,
    }
    assert anonymous["principal"] is None and anonymous["credential"] is None and anonymous["route"] is None
    assert anonymous["source"] == "authn" and anonymous["severity"] == "WARNING"
    assert anonymous["httpRequest"]["status"] == 401 and anonymous["decision"] == "deny"
    assert audience["reason"] == "invalid IAP assertion: wrong audience (received '/projects/9/apps/other')"


async def test_errored_record_when_ray_is_down(
    make_client: Any, mint: Any, access_records: AccessRecords
) -> None:
    proxy = await make_client(access_log=access_records, upstream="http://127.0.0.1:9")
    r = await proxy.get("/api/version", headers={ASSERTION: mint(), "User-Agent": "t/1"})
    assert r.status == 502, await r.text()
    record = stable(access_records.last())
    assert record["severity"] == "ERROR" and record["decision"] == "allow"  # allowed; Ray failed it
    assert record["httpRequest"]["status"] == 502 and record["upstream_status"] is None
    assert record["reason"] == "Ray is not reachable" or "Ray" in record["reason"]
    assert (
        proxy.server.app[PROXY].telemetry.metrics.registry.get_sample_value(
            "ray_iap_proxy_upstream_errors_total", {"kind": "unreachable"}
        )
        == 1
    )


async def test_websocket_session_is_one_record_at_close(
    proxy: Any, mint: Any, access_records: AccessRecords
) -> None:
    async with proxy.ws_connect(
        "/api/jobs/raysubmit_1/logs/tail", headers={ASSERTION: mint(), "User-Agent": "t/1"}
    ) as ws:
        assert (await ws.receive_str()) == "log line 1"
        assert access_records.records() == []  # nothing until it closes
        await ws.send_str("hello")
        assert (await ws.receive_str()) == "echo:hello"
        await ws.send_str("close-4001")  # Ray ends the session with its own code
        assert (await ws.receive()).data == 4001
        await wait_until(lambda: access_records.records() != [], 10)  # the session ends in the proxy
    assert proxy.server.app[PROXY].telemetry.metrics.open_websockets == 0
    (record,) = access_records.records()
    record = stable(record)
    assert record["kind"] == "websocket" and record["httpRequest"]["status"] == 101
    assert record["httpRequest"]["requestSize"] == str(len("hello") + len("close-4001"))
    assert record["httpRequest"]["responseSize"] == str(len("log line 1") + len("echo:hello"))
    assert record["close_code"] == 4001  # Ray's own code, as the client got it
    assert record["verb"] == "logs" and record["decision"] == "allow"
    assert record["route"] == "/api/jobs/{job_or_submission_id}/logs/tail"


async def test_client_address_from_a_trusted_load_balancer_only(
    make_client: Any, mint: Any, access_records: AccessRecords
) -> None:
    # 127.0.0.0/8 plays Google's front ends; the load balancer appends `client, load-balancer`
    xff = "10.9.9.9, 198.51.100.7, 127.0.0.9"  # the first is the client's own say: never believed
    trusting = await make_client(
        extra="access_log:\n  trusted_proxies: [127.0.0.0/8]\n", access_log=access_records
    )
    await trusting.get("/api/jobs/", headers={ASSERTION: mint(), "X-Forwarded-For": xff})
    assert access_records.last()["httpRequest"]["remoteIp"] == "198.51.100.7"
    assert access_records.last()["forwarded_for"] == xff
    others = AccessRecords()
    plain = await make_client(access_log=others)
    await plain.get("/api/jobs/", headers={ASSERTION: mint(), "X-Forwarded-For": xff})
    assert others.last()["httpRequest"]["remoteIp"] == "127.0.0.1"  # not configured: the TCP peer


async def test_trace_link_names_the_project_from_the_metadata_server(
    make_client: Any, mint: Any, access_records: AccessRecords, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with MetadataServer(project_id="my-project-42") as md:
        monkeypatch.setenv("GCE_METADATA_HOST", md.host)
        proxy = await make_client(access_log=access_records)
        assert md.requests == ["/computeMetadata/v1/project/project-id"]  # once, at start-up
    await proxy.get("/api/jobs/", headers={ASSERTION: mint(), "traceparent": TRACEPARENT})
    await proxy.get("/api/jobs/", headers={ASSERTION: mint()})
    linked, unlinked = access_records.records()
    assert (
        linked["logging.googleapis.com/trace"]
        == "projects/my-project-42/traces/0af7651916cd43dd8448eb211c80319c"
    )
    assert unlinked["logging.googleapis.com/trace"] is None  # no trace, no link


async def test_a_configured_project_is_not_asked(
    make_client: Any, mint: Any, access_records: AccessRecords, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with MetadataServer() as md:
        monkeypatch.setenv("GCE_METADATA_HOST", md.host)
        md.fail = True
        proxy = await make_client(extra="access_log:\n  project_id: fixed-proj\n", access_log=access_records)
        assert md.requests == []
    await proxy.get("/api/jobs/", headers={ASSERTION: mint(), "traceparent": TRACEPARENT})
    assert access_records.last()["logging.googleapis.com/trace"].startswith("projects/fixed-proj/traces/")


# ------------------------------------------------------------------------------------------------ gRPC
async def _echo(
    requests: AsyncIterator[bytes], ctx: aio.ServicerContext[bytes, bytes]
) -> AsyncIterator[bytes]:
    async for message in requests:
        yield message


class _Echo(grpc.GenericRpcHandler):
    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes]:
        return grpc.stream_stream_rpc_method_handler(_echo)


async def test_grpc_calls_share_the_schema(make_client: Any, access_records: AccessRecords) -> None:
    """The listener's `record` callback is `Telemetry.record_grpc`: allowed and refused calls."""
    proxy = await make_client(access_log=access_records)
    telemetry = proxy.server.app[PROXY].telemetry
    ray = aio.server()
    ray.add_generic_rpc_handlers([_Echo()])
    ray_port = ray.add_insecure_port("127.0.0.1:0")
    await ray.start()

    async def admit(method: str, md: Metadata) -> CallAdmission:
        if dict(md).get("x-test-user") != "alice@example.com":
            return refusal(Kind.FORBIDDEN, "not allowed to use Ray Client here", "eve@example.com", "client")
        metadata = upstream_metadata(md, "tok")
        return CallAdmission(True, grpc.StatusCode.OK, "", "alice@example.com", metadata, "client", "iap")

    listener = await start_grpc_listener(
        "127.0.0.1", 0, f"127.0.0.1:{ray_port}", admit, telemetry.record_grpc
    )
    method = "/ray.rpc.RayletDataStreamer/Datapath"
    try:
        async with aio.insecure_channel(f"127.0.0.1:{listener.port}") as channel:
            call = channel.stream_stream(method)(
                metadata=(
                    ("x-test-user", "alice@example.com"),
                    ("client_id", "0123456789abcdef0123456789abcdef"),
                )
            )
            await call.write(b"abc")
            assert await call.read() == b"abc"
            await call.done_writing()
            assert await call.code() == grpc.StatusCode.OK
            refused = channel.stream_stream(method)(
                metadata=(("client_id", "0123456789abcdef0123456789abcdef"),)
            )
            await refused.done_writing()
            assert await refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        await listener.stop(0)
        await ray.stop(0)
    allowed, denied = (stable(r) for r in access_records.records())
    assert allowed["kind"] == "grpc" and allowed["decision"] == "allow" and allowed["severity"] == "INFO"
    assert allowed["httpRequest"] == {
        "requestMethod": "POST",
        "requestUrl": method,
        "status": 200,
        "requestSize": "3",
        "responseSize": "3",
        "remoteIp": "127.0.0.1",
        "userAgent": "",
        "protocol": "HTTP/2",
    }
    assert allowed["grpc"] == {
        "method": method,
        "code": "OK",
        "client_id": "0123456789abcdef0123456789abcdef",
        "messages_in": 1,
        "messages_out": 1,
    }
    assert allowed["principal"] == "alice@example.com" and allowed["verb"] == "client"
    assert allowed["credential"] == "iap" and denied["credential"] is None
    assert denied["decision"] == "deny" and denied["severity"] == "WARNING"
    assert (
        denied["grpc"]["code"] == "FAILED_PRECONDITION"
        and denied["reason"] == "not allowed to use Ray Client here"
    )
    registry = telemetry.metrics.registry
    labels = {"transport": "grpc", "verb": "client", "decision": "allow", "status": "OK"}
    assert registry.get_sample_value("ray_iap_proxy_requests_total", labels) == 1


async def test_one_line_per_request_and_nothing_else(
    proxy: Any, mint: Any, access_records: AccessRecords, ray: RayDouble | None = None
) -> None:
    for path in ("/api/jobs/", "/healthz", "/nope", "/api/version"):
        await proxy.get(path, headers={ASSERTION: mint()})
    lines = access_records.lines()
    assert len(lines) == 4 and all(line.startswith('{"schema":"ray-iap-proxy/access/1"') for line in lines)
    for record in access_records.records():
        AccessRecord.model_validate(record)
