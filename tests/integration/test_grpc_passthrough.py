"""The gRPC listener on loopback in front of a raw-bytes stub of Ray's client server
(devkit/grpc_ray.py), with a stand-in admission (`x-test-user` metadata) so that the transport itself
is what is tested: every call kind, sizes, deadlines, cancellation, sessions, refusals, shutdown.
The real admission over gRPC is tests/integration/test_grpc_admission.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from grpc import aio

from devkit.grpc_ray import GrpcRayStub, start_stub
from proxy.authz.routes import CLIENT_TABLE
from proxy.errors import Kind
from proxy.grpc import methods
from proxy.grpc.listener import CallAdmission, CallRecord, Listener, refusal, start_grpc_listener
from proxy.upstream.grpc import GRPC_OPTIONS, Metadata, upstream_metadata

RAY_TOKEN = "ray-token-0123456789"
DATAPATH = "/ray.rpc.RayletDataStreamer/Datapath"
CLUSTER_INFO = "/ray.rpc.RayletDriver/ClusterInfo"
GET_OBJECT = "/ray.rpc.RayletDriver/GetObject"
PUT_OBJECT = "/ray.rpc.RayletDriver/PutObject"
SCHEDULE = "/ray.rpc.RayletDriver/Schedule"
FINAL_REFUSAL = grpc.StatusCode.FAILED_PRECONDITION  # what STATUS maps unauthenticated and forbidden to
MIB = 1024 * 1024


# ---------------------------------------------------------------------------------------- fixtures
async def test_admit(method: str, md: Metadata) -> CallAdmission:
    """alice and bob are allowed, eve is authenticated but forbidden, no x-test-user is anonymous."""
    user = dict(md).get("x-test-user")
    if not isinstance(user, str):
        return refusal(Kind.UNAUTHENTICATED, "no credentials: sign in first")
    route = CLIENT_TABLE.classify("POST", method)
    if route is None:
        return refusal(Kind.FORBIDDEN, f"POST {method} is not a known Ray route", principal=user)
    if user == "eve":
        return refusal(Kind.FORBIDDEN, "eve may not use Ray Client here", principal=user, verb="client")
    return CallAdmission(True, grpc.StatusCode.OK, "", user, upstream_metadata(md, RAY_TOKEN), "client")


test_admit.__test__ = False  # type: ignore[attr-defined]


@dataclass
class Stack:
    stub: GrpcRayStub
    listener: Listener
    records: list[CallRecord]
    channel: aio.Channel

    def md(self, user: str | None = "alice", client_id: str = "c0ffee", **extra: str) -> Metadata:
        out: list[tuple[str, str | bytes]] = [("client_id", client_id)]
        if user is not None:
            out.append(("x-test-user", user))
        out.extend((k.replace("_", "-"), v) for k, v in extra.items())
        return tuple(out)

    async def wait_records(self, n: int) -> list[CallRecord]:
        for _ in range(200):
            if len(self.records) >= n:
                break
            await asyncio.sleep(0.01)
        return self.records


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    stub, upstream, up_port = await start_stub()
    records: list[CallRecord] = []
    listener = await start_grpc_listener("127.0.0.1", 0, f"127.0.0.1:{up_port}", test_admit, records.append)
    channel = aio.insecure_channel(f"127.0.0.1:{listener.port}", options=GRPC_OPTIONS)
    yield Stack(stub, listener, records, channel)
    await channel.close()
    await listener.stop(0)
    await upstream.stop(0)


def unary(s: Stack, method: str) -> aio.UnaryUnaryMultiCallable[bytes, bytes]:
    return s.channel.unary_unary(method, request_serializer=None, response_deserializer=None)


def bidi(s: Stack, method: str = DATAPATH) -> aio.StreamStreamMultiCallable[bytes, bytes]:
    return s.channel.stream_stream(method, request_serializer=None, response_deserializer=None)


async def expect_code(call: Any, code: grpc.StatusCode) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as e:
        await call
    assert e.value.code() == code, e.value
    return e.value


# ----------------------------------------------------------------------------------- pass-through
async def test_unary_metadata_reaches_ray_rewritten(stack: Stack) -> None:
    md = (
        *stack.md(),
        ("authorization", "Bearer callers-own"),
        ("proxy-authorization", "Bearer iap-oidc"),
        ("x-goog-iap-jwt-assertion", "iap.jwt.here"),
        ("reconnecting", "False"),
        ("thread_id", "3"),
        ("req_id", "4"),
        ("x-blob-bin", b"\x00\x01\xfe"),
    )
    call = unary(stack, CLUSTER_INFO)(b"ping", metadata=md)
    got = json.loads(await call)
    assert await call.code() == grpc.StatusCode.OK
    assert ("x-stub-initial", "hello") in tuple(await call.initial_metadata() or ())
    auth = [v for k, v in got if k == "authorization"]
    assert auth == [f"Bearer {RAY_TOKEN}"]
    keys = [k for k, _ in got]
    assert "proxy-authorization" not in keys and "x-goog-iap-jwt-assertion" not in keys
    assert ["client_id", "c0ffee"] in got and ["reconnecting", "False"] in got
    assert ["thread_id", "3"] in got and ["req_id", "4"] in got
    assert ["x-blob-bin", "0001fe"] in got
    assert "callers-own" not in json.dumps(got) and "iap" not in json.dumps(got)


async def test_server_streaming_relays_every_message(stack: Stack) -> None:
    call = stack.channel.unary_stream(GET_OBJECT, request_serializer=None, response_deserializer=None)(
        b"get", metadata=stack.md(x_stub="stream:25")
    )
    got = [m async for m in call]
    assert got == [f"m{i}".encode() for i in range(25)]
    (rec,) = await stack.wait_records(1)
    assert (rec.messages_in, rec.messages_out, rec.verb, rec.decision, rec.code) == (
        1,
        25,
        "client",
        "allow",
        "OK",
    )


async def test_bidi_is_streamed_not_buffered(stack: Stack) -> None:
    call = bidi(stack)(metadata=stack.md(x_stub="echo"))
    for i in range(5):  # ping-pong: each answer arrives before the next request is sent
        await call.write(f"q{i}".encode())
        assert await asyncio.wait_for(call.read(), 5) == f"q{i}".encode()
    await call.done_writing()
    assert await call.read() is aio.EOF
    assert await call.code() == grpc.StatusCode.OK


async def test_fifty_mib_in_five_mib_messages_both_ways(stack: Stack) -> None:
    chunks = [bytes([i]) * (5 * MIB) for i in range(10)]
    call = bidi(stack, PUT_OBJECT)(metadata=stack.md(x_stub="sizes"))
    for chunk in chunks:
        await call.write(chunk)
    await call.done_writing()
    assert json.loads(await call.read()) == [5 * MIB] * 10
    back = [await call.read() for _ in chunks]
    assert back == chunks and await call.read() is aio.EOF
    (rec,) = await stack.wait_records(1)
    assert rec.bytes_in == 50 * MIB and rec.bytes_out >= 50 * MIB and rec.messages_in == 10


async def test_error_status_details_and_trailing_metadata_come_back(stack: Stack) -> None:
    err = await expect_code(
        unary(stack, CLUSTER_INFO)(b"", metadata=stack.md(x_stub="fail")), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert err.details() == "the stub says no"
    trailing = tuple(err.trailing_metadata() or ())
    assert ("x-ray-trailer", "t1") in trailing and ("x-detail-bin", b"\x00\xff") in trailing
    (rec,) = await stack.wait_records(1)
    assert rec.decision == "allow" and rec.code == "FAILED_PRECONDITION" and rec.details == "the stub says no"


async def test_caller_deadline_becomes_the_upstream_deadline(stack: Stack) -> None:
    await unary(stack, CLUSTER_INFO)(b"", metadata=stack.md(), timeout=3)
    remaining = stack.stub.seen[0].time_remaining
    assert remaining is not None and 1.5 < remaining <= 3
    call = unary(stack, CLUSTER_INFO)(b"", metadata=stack.md(x_stub="hang"), timeout=0.5)
    await expect_code(call, grpc.StatusCode.DEADLINE_EXCEEDED)
    await asyncio.wait_for(stack.stub.seen[1].ended.wait(), 5)


async def test_caller_cancel_cancels_upstream(stack: Stack) -> None:
    call = bidi(stack)(metadata=stack.md(x_stub="hang"))
    await call.write(b"x")
    for _ in range(100):
        if stack.stub.seen:
            break
        await asyncio.sleep(0.01)
    call.cancel()
    await asyncio.wait_for(stack.stub.seen[0].cancelled.wait(), 5)
    (rec,) = await stack.wait_records(1)
    assert rec.code == "CANCELLED" and rec.decision == "allow"


async def test_upstream_end_ends_the_caller(stack: Stack) -> None:
    call = bidi(stack)(metadata=stack.md(x_stub="first-then-end"))
    await call.write(b"one")
    assert await call.read() == b"one"
    assert await asyncio.wait_for(call.read(), 5) is aio.EOF  # the caller never half-closed
    assert await call.code() == grpc.StatusCode.OK


async def test_frequent_keepalive_pings_are_not_answered_with_goaway(stack: Stack) -> None:
    # Ray's client pings every 30 s; a default grpc server allows one ping per 5 min without data and
    # sends GOAWAY too_many_pings on the third strike. Pinging once a second (grpc's floor) on an idle
    # stream reaches that strike within about 4 s, so 6 s idle would end the stream on a default server.
    options = (("grpc.keepalive_time_ms", 1000), ("grpc.http2.max_pings_without_data", 0))
    async with aio.insecure_channel(f"127.0.0.1:{stack.listener.port}", options=options) as ch:
        call = ch.stream_stream(DATAPATH, request_serializer=None, response_deserializer=None)(
            metadata=stack.md(x_stub="echo")
        )
        await call.write(b"a")
        assert await call.read() == b"a"
        await asyncio.sleep(6)  # idle, pinging
        await call.write(b"b")
        assert await call.read() == b"b"
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK


# --------------------------------------------------------------------------------------- refusals
UNKNOWN = "/grpc.health.v1.Health/Check"


@pytest.mark.parametrize(
    ("user", "method", "code"),
    [
        pytest.param(None, SCHEDULE, FINAL_REFUSAL, id="anonymous"),
        pytest.param("eve", DATAPATH, FINAL_REFUSAL, id="forbidden"),
        pytest.param(None, UNKNOWN, FINAL_REFUSAL, id="anonymous-unknown-method"),
        pytest.param("alice", UNKNOWN, FINAL_REFUSAL, id="unknown-method"),
        pytest.param("alice", "/ray.rpc.RayletDriver/Nope", FINAL_REFUSAL, id="unknown-ray"),
    ],
)
async def test_refused_calls_never_reach_ray(
    stack: Stack, user: str | None, method: str, code: grpc.StatusCode
) -> None:
    err = await expect_code(unary(stack, method)(b"", metadata=stack.md(user)), code)
    assert err.details() and RAY_TOKEN not in err.details()
    call = bidi(stack, method)(metadata=stack.md(user))
    with contextlib.suppress(aio.AioRpcError):  # the refusal may come before the write
        await call.write(b"payload")
    with pytest.raises(aio.AioRpcError):
        await call.read()
    assert stack.stub.seen == []
    records = await stack.wait_records(2)
    assert {(r.decision, r.code, r.bytes_in, r.principal) for r in records} == {
        ("deny", code.name, 0, user or "")
    }


@pytest.mark.parametrize("user", [None, "eve"])
async def test_a_finally_refused_ping_is_answered_locally_so_the_refusal_shows(
    stack: Stack, user: str | None
) -> None:
    # Ray's client hides the error of its first ClusterInfo; the Datapath refusal is what it reports.
    assert await unary(stack, CLUSTER_INFO)(b"\x08\x06", metadata=stack.md(user)) == b"\x12\x02{}"
    err = await expect_code(bidi(stack)(iter([b"init"]), metadata=stack.md(user)).read(), FINAL_REFUSAL)
    assert "sign in" in (err.details() or "") or "may not" in (err.details() or "")
    assert stack.stub.seen == []
    ping, datapath = await stack.wait_records(2)
    assert (ping.decision, ping.code, datapath.decision, datapath.code) == (
        "deny",
        "OK",
        "deny",
        FINAL_REFUSAL.name,
    )
    assert ping.details.startswith("answered as a ping; refused: ")


async def test_a_transient_refusal_refuses_the_ping_too(stack: Stack) -> None:
    # UNAVAILABLE past an answered ping would make Ray's client reconnect for ever: let it retry connecting.
    async def down(method: str, md: Metadata) -> CallAdmission:
        return refusal(Kind.UNAVAILABLE, "the proxy cannot check credentials now; try again")

    listener = await start_grpc_listener("127.0.0.1", 0, "127.0.0.1:9", down, stack.records.append)
    try:
        async with aio.insecure_channel(f"127.0.0.1:{listener.port}") as ch:
            ping = ch.unary_unary(CLUSTER_INFO)(b"\x08\x06", metadata=stack.md())
            await expect_code(ping, grpc.StatusCode.UNAVAILABLE)
    finally:
        await listener.stop(0)


@pytest.mark.parametrize(
    "md",
    [
        pytest.param((("x-test-user", "alice"),), id="no-client-id"),
        pytest.param((("x-test-user", "alice"), ("client_id", "")), id="empty"),
        pytest.param((("x-test-user", "alice"), ("client_id", "a"), ("client_id", "b")), id="two"),
        pytest.param((("x-test-user", "alice"), ("client_id", "../x")), id="bad-chars"),
        pytest.param((("x-test-user", "alice"), ("client_id", "x" * 65)), id="too-long"),
    ],
)
async def test_calls_without_exactly_one_valid_client_id_are_refused(stack: Stack, md: Metadata) -> None:
    await expect_code(unary(stack, SCHEDULE)(b"", metadata=md), grpc.StatusCode.INVALID_ARGUMENT)
    assert stack.stub.seen == []


async def test_another_principal_cannot_take_a_live_session(stack: Stack) -> None:
    owner = bidi(stack)(metadata=stack.md("alice", "sess1", x_stub="echo", reconnecting="False"))
    await owner.write(b"1")
    assert await owner.read() == b"1"
    # A refused ping gets Ray's constant ping answer (nothing from Ray), so that bob's client goes on
    # to Datapath and shows the refusal; every other call is refused with a final code.
    assert await unary(stack, CLUSTER_INFO)(b"", metadata=stack.md("bob", "sess1")) == methods.PING_ANSWER
    for method in (GET_OBJECT, "/ray.rpc.RayletLogStreamer/Logstream"):
        err = await expect_code(unary(stack, method)(b"", metadata=stack.md("bob", "sess1")), FINAL_REFUSAL)
        assert "someone else" in (err.details() or "")
    hijack = bidi(stack)(metadata=stack.md("bob", "sess1", x_stub="echo", reconnecting="True"))
    with contextlib.suppress(aio.AioRpcError):
        await hijack.write(b"steal")
    with pytest.raises(aio.AioRpcError) as e:
        await hijack.read()
    assert e.value.code() == FINAL_REFUSAL and "someone else" in (e.value.details() or "")
    await owner.write(b"2")  # the owner's session goes on
    assert await owner.read() == b"2"
    assert json.loads(await unary(stack, CLUSTER_INFO)(b"", metadata=stack.md("alice", "sess1")))
    await owner.done_writing()
    assert await owner.code() == grpc.StatusCode.OK
    # After the owner's stream closed the id still lingers as alice's: a reconnect by bob is refused.
    await expect_code(unary(stack, GET_OBJECT)(b"", metadata=stack.md("bob", "sess1")), FINAL_REFUSAL)
    assert {dict(s.metadata)["client_id"] for s in stack.stub.seen} == {"sess1"}
    assert all(dict(s.metadata)["x-test-user"] == "alice" for s in stack.stub.seen)
    refused = [r for r in stack.records if r.decision == "deny"]
    assert len(refused) == 5 and {(r.principal, r.client_id) for r in refused} == {("bob", "sess1")}


# ----------------------------------------------------------------------------------- ends and stop
async def test_upstream_unreachable_is_unavailable_with_our_message() -> None:
    records: list[CallRecord] = []
    listener = await start_grpc_listener("127.0.0.1", 0, "127.0.0.1:9", test_admit, records.append)
    try:
        async with aio.insecure_channel(f"127.0.0.1:{listener.port}") as ch:
            call = ch.unary_unary(CLUSTER_INFO)(b"", metadata=(("x-test-user", "alice"), ("client_id", "c")))
            err = await expect_code(call, grpc.StatusCode.UNAVAILABLE)
            assert err.details() == "Ray's client server is not reachable; try again"
    finally:
        await listener.stop(0)
    assert [r.code for r in records] == ["UNAVAILABLE"]


async def test_graceful_stop_drains_then_cancels(stack: Stack) -> None:
    quick = bidi(stack)(metadata=stack.md(x_stub="echo"))
    slow = bidi(stack)(metadata=stack.md(x_stub="hang", client_id="other"))
    await quick.write(b"q")
    assert await quick.read() == b"q"
    await slow.write(b"s")
    for _ in range(100):
        if len(stack.stub.seen) == 2:
            break
        await asyncio.sleep(0.01)
    t0 = time.monotonic()
    stopping = asyncio.create_task(stack.listener.stop(1.0))
    await asyncio.sleep(0.2)
    # Not accepting any more, while the open calls go on.
    await expect_code(
        unary(stack, CLUSTER_INFO)(b"", metadata=stack.md(), timeout=2), grpc.StatusCode.UNAVAILABLE
    )
    await quick.write(b"r")
    assert await quick.read() == b"r"
    await quick.done_writing()
    assert await quick.code() == grpc.StatusCode.OK
    await asyncio.wait_for(stopping, 10)
    assert 0.9 < time.monotonic() - t0 < 5
    (hung,) = [x for x in stack.stub.seen if dict(x.metadata)["x-stub"] == "hang"]
    await asyncio.wait_for(hung.cancelled.wait(), 5)  # Ray saw the cancel
    assert (await slow.code()) != grpc.StatusCode.OK
    assert sorted(r.code for r in stack.records) == ["CANCELLED", "OK"]  # written before stop() returned


async def test_admission_that_raises_is_internal_and_never_allows(stack: Stack) -> None:
    async def broken(method: str, md: Metadata) -> CallAdmission:
        raise RuntimeError("key store exploded")

    listener = await start_grpc_listener("127.0.0.1", 0, "127.0.0.1:9", broken, stack.records.append)
    try:
        async with aio.insecure_channel(f"127.0.0.1:{listener.port}") as ch:
            err = await expect_code(
                ch.unary_unary(CLUSTER_INFO)(b"", metadata=stack.md()), grpc.StatusCode.INTERNAL
            )
            assert err.details() == "internal error in the proxy"
    finally:
        await listener.stop(0)
    assert [(r.decision, r.code) for r in stack.records] == [("deny", "INTERNAL")]


def test_every_record_field_is_named() -> None:
    names = set(CallRecord.__dataclass_fields__)
    assert names >= {"method", "verb", "principal", "decision", "code", "details", "bytes_in", "bytes_out"}
    assert names >= {"messages_in", "messages_out", "duration_s", "client_id", "peer"}
