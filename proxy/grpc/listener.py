"""The gRPC listener for Ray Client (ray://): metadata -> admit -> session owner -> raw pass-through.

One catch-all handler serves every method as stream-to-stream raw bytes. Per call, in this order and
before anything is sent to Ray: admission (`admit`, the proxy's one decision), the method table
(unknown -> not served), the session owner (`client_id`, sessions.py). A refused call gets its code and
details and never reaches Ray. Every call, refused or not, leaves exactly one CallRecord.

The types at the seam and the one status table are in the package (`proxy/grpc/__init__.py`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal

import grpc
from grpc import aio

from proxy.errors import Kind
from proxy.grpc import FINAL, STATUS, Admit, CallAdmission, CallRecord, Record, methods, refusal
from proxy.grpc.sessions import Claim, Sessions, client_id_of
from proxy.upstream.grpc import GRPC_OPTIONS, GrpcUpstream, Metadata, Tally

__all__ = [
    "Admit",
    "CallAdmission",
    "CallRecord",
    "Listener",
    "Record",
    "refusal",
    "start_grpc_listener",
]

log = logging.getLogger(__name__)


@dataclass
class _Call:
    """One call as it goes, and as its access record will tell it."""

    method: str
    peer: str
    started: float
    tally: Tally = field(default_factory=Tally)
    verb: str = ""
    principal: str = ""
    credential: str = ""
    client_id: str = ""
    claimed: bool = False
    decision: Literal["allow", "deny"] = "deny"
    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    details: str = ""

    def finish(self, context: aio.ServicerContext[bytes, bytes], code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        context.set_code(code)
        if code != grpc.StatusCode.OK:  # an OK answer carries no details; the record keeps them
            context.set_details(details)

    def record(self, now: float) -> CallRecord:
        t = self.tally
        return CallRecord(
            *(self.method, self.verb, self.principal, self.decision, self.code.name, self.details),
            *(t.bytes_in, t.bytes_out, t.messages_in, t.messages_out),
            *(now - self.started, self.client_id, self.peer, self.credential),
        )


_CLAIM_REFUSED = {
    Claim.TAKEN: (Kind.FORBIDDEN, "this Ray client session belongs to someone else"),
    Claim.TOO_MANY: (Kind.BUSY, "too many open Ray client sessions; close some"),
}
_INTERNAL = "internal error in the proxy"


class _Handler(grpc.GenericRpcHandler):
    """Catch-all: every method becomes one raw stream-stream handler bound to its method name."""

    def __init__(
        self,
        admit: Admit,
        record: Record,
        upstream: GrpcUpstream,
        sessions: Sessions,
        clock: Callable[[], float],
    ) -> None:
        self._admit, self._record, self._upstream = admit, record, upstream
        self._sessions, self._clock = sessions, clock
        self.tasks: set[asyncio.Task[object]] = set()  # the calls being served, for Listener.stop()

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes]:
        return grpc.stream_stream_rpc_method_handler(functools.partial(self._serve, details.method))

    async def _serve(
        self, method: str, requests: AsyncIterator[bytes], context: aio.ServicerContext[bytes, bytes]
    ) -> None:
        call = _Call(method, context.peer(), self._clock())
        task = asyncio.current_task()
        if task is not None:  # a handler always runs in a task
            self.tasks.add(task)
        try:
            verdict = await self._decide(call, tuple(context.invocation_metadata() or ()))
            if verdict.allowed:
                await self._relay(call, requests, context, verdict.upstream_metadata)
            elif method == methods.CLUSTER_INFO and verdict.code in FINAL:
                await context.write(methods.PING_ANSWER)
                call.finish(context, grpc.StatusCode.OK, f"answered as a ping; refused: {verdict.details}")
            else:
                call.finish(context, verdict.code, verdict.details)
        except asyncio.CancelledError:
            call.code, call.details = grpc.StatusCode.CANCELLED, "cancelled"
            raise
        except Exception:
            log.exception("gRPC call %s failed in the proxy", method)
            call.finish(context, STATUS[Kind.INTERNAL], _INTERNAL)
        finally:
            try:
                self._record(call.record(self._clock()))
            except Exception:
                log.exception("access record for gRPC call %s failed", method)
            self.tasks.discard(task)

    async def _decide(self, call: _Call, metadata: Metadata) -> CallAdmission:
        """Admission, then the method table, then the session owner; claims the session when allowed."""
        try:
            admission = await self._admit(call.method, metadata)
        except Exception:
            log.exception("gRPC admission failed for %s", call.method)
            return refusal(Kind.INTERNAL, _INTERNAL)
        who, call.verb, call.credential = admission.principal, admission.verb, admission.credential
        call.principal = who
        if not admission.allowed:  # an unknown method is refused there: the route table says so
            return admission
        client_id = client_id_of(admission.upstream_metadata)
        if client_id is None:
            return refusal(Kind.MALFORMED, "a Ray client call carries exactly one valid client_id", who)
        call.client_id = client_id
        claim = self._sessions.claim(client_id, who, self._clock())
        if claim is not Claim.GRANTED:
            return refusal(*_CLAIM_REFUSED[claim], who, call.verb)
        call.claimed = True
        return admission

    async def _relay(
        self,
        call: _Call,
        requests: AsyncIterator[bytes],
        context: aio.ServicerContext[bytes, bytes],
        metadata: Metadata,
    ) -> None:
        call.decision = "allow"
        try:
            end = await self._upstream.relay(call.method, requests, context, metadata, call.tally)
        finally:
            self._sessions.release(call.client_id, self._clock())
        if not end.reached_ray:
            gone = refusal(Kind.UPSTREAM_UNREACHABLE, "Ray's client server is not reachable; try again")
            call.finish(context, gone.code, gone.details)
        else:
            context.set_trailing_metadata(end.trailing)
            call.finish(context, end.code, end.details)


@dataclass
class Listener:
    """A started listener; `port` is the bound one (useful with port 0)."""

    port: int
    _server: aio.Server
    _handler: _Handler
    _upstream: GrpcUpstream

    @property
    def open_calls(self) -> int:
        """Calls being served now (admitted, relayed, or being refused)."""
        return len(self._handler.tasks)

    async def stop(self, grace: float) -> None:
        """Stop accepting calls at once, let open calls run for `grace` seconds, then cancel them.

        Returns when every call has ended: its record written and its upstream call cancelled.
        """
        try:
            await self._server.stop(grace)
            # grpc has cancelled the calls still open; wait for their handlers, cancel stragglers.
            if pending := set(self._handler.tasks):
                _, pending = await asyncio.wait(pending, timeout=5.0)
                for task in pending:
                    task.cancel()
        finally:
            await self._upstream.close()


async def start_grpc_listener(
    host: str,
    port: int,
    upstream: str,
    admit: Admit,
    record: Record,
    *,
    sessions: Sessions | None = None,
    clock: Callable[[], float] = time.monotonic,
    credentials: grpc.ServerCredentials | None = None,
) -> Listener:
    """Listen on host:port (0 = any free port) and relay admitted calls to Ray at `upstream` (host:port).
    `credentials`: TLS on the port (None: plaintext HTTP/2)."""
    channel = GrpcUpstream(upstream)
    # so_reuseport off: grpc turns it on by default, which would let a second process share our port.
    server = aio.server(options=(*GRPC_OPTIONS, ("grpc.so_reuseport", 0)))
    handler = _Handler(admit, record, channel, sessions or Sessions(), clock)
    server.add_generic_rpc_handlers([handler])
    try:
        address = f"{host}:{port}"
        if credentials is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, credentials)
        await server.start()
    except BaseException:
        await channel.close()
        raise
    return Listener(bound, server, handler, channel)
