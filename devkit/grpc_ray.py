"""A raw-bytes stand-in for Ray's client server (gRPC), for the gRPC listener's tests.

A catch-all grpc.aio handler (no protobuf): what it does is chosen by the caller's `x-stub` metadata,
so the real Ray method names (which the route table requires) can exercise every call kind. It records
every call it sees, the metadata it received and whether it was cancelled.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
from grpc import aio

from proxy.upstream.grpc import GRPC_OPTIONS, Metadata


@dataclass
class Seen:
    method: str
    metadata: Metadata
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    time_remaining: float | None = None


class GrpcRayStub(grpc.GenericRpcHandler):
    def __init__(self) -> None:
        self.seen: list[Seen] = []

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes]:
        async def serve(requests: AsyncIterator[bytes], ctx: aio.ServicerContext[bytes, bytes]) -> None:
            seen = Seen(
                details.method, tuple(ctx.invocation_metadata() or ()), time_remaining=ctx.time_remaining()
            )
            self.seen.append(seen)
            behaviour = dict(seen.metadata).get("x-stub", "echo-metadata")
            try:
                await self._behave(str(behaviour), requests, ctx, seen)
            except asyncio.CancelledError:
                seen.cancelled.set()
                raise
            finally:
                seen.ended.set()

        return grpc.stream_stream_rpc_method_handler(serve)

    async def _behave(
        self,
        behaviour: str,
        requests: AsyncIterator[bytes],
        ctx: aio.ServicerContext[bytes, bytes],
        seen: Seen,
    ) -> None:
        name, _, arg = behaviour.partition(":")
        await ctx.send_initial_metadata((("x-stub-initial", "hello"),))
        if name == "echo-metadata":
            md = [[k, v.hex() if isinstance(v, bytes) else v] for k, v in seen.metadata]
            await ctx.write(json.dumps(md).encode())
        elif name == "stream":  # server-streaming: n numbered messages
            async for _ in requests:
                break
            for i in range(int(arg)):
                await ctx.write(f"m{i}".encode())
        elif name == "echo":  # bidi: every message back, as it comes
            async for message in requests:
                await ctx.write(message)
        elif name == "sizes":  # read everything, then answer the sizes and the chunks back
            chunks = [m async for m in requests]
            await ctx.write(json.dumps([len(c) for c in chunks]).encode())
            for chunk in chunks:
                await ctx.write(chunk)
        elif name == "fail":
            ctx.set_trailing_metadata((("x-ray-trailer", "t1"), ("x-detail-bin", b"\x00\xff")))
            ctx.set_code(grpc.StatusCode.FAILED_PRECONDITION)
            ctx.set_details("the stub says no")
        elif name == "first-then-end":  # answer once and end while the caller still streams
            async for message in requests:
                await ctx.write(message)
                return
        elif name == "hang":
            await asyncio.sleep(60)


async def start_stub() -> tuple[GrpcRayStub, aio.Server, int]:
    """The stub on a free loopback port: (stub, server to stop, port)."""
    stub = GrpcRayStub()
    server = aio.server(options=GRPC_OPTIONS)
    server.add_generic_rpc_handlers([stub])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return stub, server, port
