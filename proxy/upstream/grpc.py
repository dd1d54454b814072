"""Talking gRPC to Ray's client server: the metadata rewrite (pure) and the raw-bytes relay.

Nothing is decoded: every method, whatever its kind, is relayed as a stream of byte strings in each
direction, as the wire sees it (unary is a stream of one). One channel is shared by all calls.

Message size and keepalive follow Ray's own `util/client/common.py` GRPC_OPTIONS, on the listener and
on this channel alike: puts travel as 5 MiB messages (over gRPC's 4 MiB default), and Ray's client
pings every 30 s, which a server with default settings answers with GOAWAY `too_many_pings`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import cast

import grpc
from grpc import aio

log = logging.getLogger(__name__)

Metadata = tuple[tuple[str, str | bytes], ...]

MAX_MESSAGE_BYTES = 2 * 1024 * 1024 * 1024 - 1  # Ray's GRPC_MAX_MESSAGE_SIZE
KEEPALIVE_TIME_MS = 30_000
GRPC_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", 600_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_TIME_MS - 50),
    ("grpc.http2.max_ping_strikes", 0),
)
# The channel to Ray must not wander off through an HTTP proxy from the environment.
CHANNEL_OPTIONS = (*GRPC_OPTIONS, ("grpc.enable_http_proxy", 0))

# The caller's credentials, in any spelling (`_` and `-` alike): Ray must see only its own token.
# `x-ray-authorization` is Ray's HTTP fallback header (not read over gRPC) and `cookie` may hold the
# IAP session: both are credentials, so neither is passed on.
CREDENTIALS = frozenset(
    {"authorization", "proxy-authorization", "x-goog-iap-jwt-assertion", "x-ray-authorization", "cookie"}
)
# Set by the transport itself on each hop (doc/PROTOCOL-HTTP2.md). `user-agent` is among them: grpc
# core writes its own on the upstream channel, a second one from the metadata would be merged into or
# clash with it, and Ray does not read it. The access record has the peer address instead.
TRANSPORT = frozenset(
    {
        "te",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-type",
        "content-length",
        "user-agent",
    }
)


def _dropped(key: str) -> bool:
    k = key.lower()
    return k.startswith(("grpc-", ":")) or k in TRANSPORT or k.replace("_", "-") in CREDENTIALS


def upstream_metadata(incoming: Iterable[tuple[str, str | bytes]], ray_token: str | None) -> Metadata:
    """What Ray receives: the caller's metadata without credentials or transport keys, then Ray's token.

    Everything else is kept as it came, in order, duplicates and underscores included (`client_id`,
    `reconnecting`, `thread_id`, `req_id`), binary `-bin` values as bytes. Ray's gRPC server reads the
    first `authorization` key (`_private/grpc_utils.py`); after the drop ours is the only one.
    """
    kept = tuple((k, v) for k, v in incoming if not _dropped(k))
    return (*kept, ("authorization", f"Bearer {ray_token}")) if ray_token else kept


def response_metadata(md: Iterable[tuple[str, str | bytes]] | None) -> Metadata:
    """Ray's initial or trailing metadata as the caller gets it: reserved and transport keys dropped."""
    return tuple((k, v) for k, v in md or () if not _dropped(k))


@dataclass
class Tally:
    """What crossed the proxy, updated as it goes (read for the access record)."""

    messages_in: int = 0
    bytes_in: int = 0
    messages_out: int = 0
    bytes_out: int = 0


@dataclass(frozen=True)
class RelayEnd:
    """How the upstream call ended, as the caller is to see it."""

    code: grpc.StatusCode
    details: str
    trailing: Metadata
    reached_ray: bool  # False: no answer from Ray at all (it is down or unreachable)


class GrpcUpstream:
    """One shared channel to Ray's client server (`host:port`)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._channel = aio.insecure_channel(target, options=CHANNEL_OPTIONS)

    async def close(self) -> None:
        await self._channel.close()

    async def relay(
        self,
        method: str,
        requests: AsyncIterator[bytes],
        context: aio.ServicerContext[bytes, bytes],
        metadata: Metadata,
        tally: Tally,
    ) -> RelayEnd:
        """Relay one call both ways until either side ends it; cancel upstream if we are cancelled.

        The caller's remaining time becomes the upstream deadline. Ray's initial metadata is sent on
        before its first message; its status, details and trailing metadata are returned.
        """
        multicallable = _raw_stream(self._channel, method)
        call = multicallable(metadata=metadata, timeout=context.time_remaining())
        up = asyncio.create_task(_pump_up(requests, call, tally), name=f"grpc-up {method}")
        initial: Metadata = ()
        try:
            initial = response_metadata(await call.initial_metadata())
            if initial:
                await context.send_initial_metadata(initial)
            while (message := await call.read()) is not aio.EOF:
                message = cast(bytes, message)  # no deserializer: raw bytes
                tally.messages_out += 1
                tally.bytes_out += len(message)
                await context.write(message)
        except aio.AioRpcError:
            pass  # the status is read from the call below
        finally:
            up.cancel()
            call.cancel()  # no-op if it has ended; otherwise Ray sees the cancel
            await asyncio.gather(up, return_exceptions=True)
        code = await call.code()
        trailing = response_metadata(await call.trailing_metadata())
        reached = bool(initial or trailing) or code != grpc.StatusCode.UNAVAILABLE
        return RelayEnd(code, await call.details() or "", trailing, reached)


def _raw_stream(channel: aio.Channel, method: str) -> aio.StreamStreamMultiCallable[bytes, bytes]:
    # No (de)serializers: messages are bytes in, bytes out.
    return channel.stream_stream(method, request_serializer=None, response_deserializer=None)


async def _pump_up(
    requests: AsyncIterator[bytes], call: aio.StreamStreamCall[bytes, bytes], tally: Tally
) -> None:
    """Caller -> Ray, until the caller half-closes; a broken caller stream cancels the upstream call."""
    try:
        async for message in requests:
            tally.messages_in += 1
            tally.bytes_in += len(message)
            await call.write(message)
        await call.done_writing()
    except (asyncio.InvalidStateError, aio.AioRpcError):
        pass  # the upstream call has ended: its status reaches the caller through relay()
    except Exception:  # the caller's stream broke: do not leave Ray waiting for more
        log.debug("caller stream ended abnormally", exc_info=True)
        with contextlib.suppress(Exception):
            call.cancel()
