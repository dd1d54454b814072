"""The Ray Client listener as part of the running proxy: started beside the HTTP listener when
`client_listen` is set, admitting every call through the same admission as HTTP, recording each call
through the same telemetry, and drained with the same grace period at shutdown."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..settings import Settings
from .admission import grpc_admit
from .credentials import SessionCredentials
from .listener import Listener, start_grpc_listener
from .tls import server_credentials

if TYPE_CHECKING:
    from ..http.pipeline import Proxy

log = logging.getLogger("ray_iap_proxy")


async def start_client_listener(settings: Settings, proxy: Proxy) -> Listener | None:
    """The gRPC listener for `ray://` callers, or None when `client_listen` is not set."""
    if settings.client_listen is None:
        return None
    where, upstream = settings.client_listen, settings.client_upstream
    listener = await start_grpc_listener(
        where.host,
        where.port,
        f"{upstream.host}:{upstream.port}",
        grpc_admit(proxy.admission, proxy.ray_token, SessionCredentials(settings.client_session_max_seconds)),
        proxy.telemetry.record_grpc,
        credentials=server_credentials(settings.client_tls),
    )
    proxy.telemetry.grpc_open = lambda: listener.open_calls
    log.info("Ray Client (gRPC) listening on %s, upstream %s", where, upstream)
    return listener
