"""Wiring only: build the services from the settings, own the long-lived resources (`cleanup_ctx`),
and run the listeners."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TextIO

from aiohttp import web
from aiohttp.typedefs import Handler

from .admit import Admission
from .auth.service import AuthService, FetchFactory
from .authz.csrf import Origin
from .authz.policy import Policy
from .authz.routes import CLIENT_TABLE, DEFAULT_TABLE, RouteTable
from .authz.sources.build import PolicySources, build_sources
from .grpc.listener import Listener
from .grpc.service import start_client_listener
from .http.listener import ProxyRunner
from .http.pipeline import PROXY, Proxy, handle
from .jobs.service import Jobs
from .model import Transport
from .settings import Settings
from .telemetry import Telemetry
from .telemetry.metrics import metrics_app
from .telemetry.project import resolve_project
from .telemetry.writer import AccessWriter
from .upstream.pool_upstream import make_upstream
from .upstream.ray_token import RayToken
from .workers import Worker, tune_gc

log = logging.getLogger("ray_iap_proxy")
SOURCES = web.AppKey("policy_sources", PolicySources)  # for metrics: reloads, reviews, cache counters
CUT_WAIT_SECONDS = 2.0  # after the grace period: how long cancelled requests get to unwind


@web.middleware
async def _unrouted_too(request: web.Request, handler: Handler) -> web.StreamResponse:
    """For the app under a plain `web.AppRunner` (`ProxyRunner`, which `serve` and the tests use,
    calls the pipeline directly): what aiohttp's router cannot place (a CONNECT, `*`, an absolute
    target without a path) goes through the pipeline as well, refused in its shape and recorded."""
    if request.match_info.http_exception is not None:
        return await handle(request)
    return await handler(request)


def build_app(
    settings: Settings,
    *,
    policy: Policy | None = None,
    routes: RouteTable = DEFAULT_TABLE,
    fetch: FetchFactory | None = None,
    clock: Callable[[], float] | None = None,
    access_log: TextIO | None = None,
    sources: PolicySources | None = None,
) -> web.Application:
    """The proxy as an aiohttp application. `policy` defaults to `settings.policy_file`'s; `fetch` and
    `clock` are seams for tests; `access_log` is where records go (default: stdout); `sources` the
    policy sources (default: built from the settings, the policy file watched)."""
    app = web.Application(client_max_size=1024, middlewares=[_unrouted_too])
    telemetry = Telemetry(
        settings.tracing.exporter,
        tenant=settings.tenant,
        trusted_proxies=settings.access_log.trusted_proxies,
        forwarded_for_per_hop=settings.access_log.forwarded_for_per_hop,
        upstream=settings.upstream,
        writer=AccessWriter(access_log),
    )
    if sources is None:
        sources = build_sources(settings, policy=policy)
    app[SOURCES] = sources

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        ray_token = RayToken(settings.ray_token_file)
        ray_token.load()
        auth = (
            AuthService(settings, ray_token, fetch, clock)
            if clock
            else AuthService(settings, ray_token, fetch)
        )
        upstream = make_upstream(settings.upstream, settings.limits)
        jobs = Jobs(
            settings.jobs,
            upstream.fetch,
            lambda: ray_token.value,
            lambda who: frozenset(role for role, _ in sources.static.policy.grants(who, settings.tenant)),
            settings.limits.client_read_timeout_seconds,
        )
        admission = Admission(
            tenant=settings.tenant,
            authenticate=auth.authenticator.authenticate,
            routes={Transport.HTTP: routes, Transport.GRPC: CLIENT_TABLE},
            authorizer=sources.union(),
            max_target_length=settings.limits.max_target_length,
            owners=jobs.owners.owner,
        )
        app[PROXY] = Proxy(
            tenant=settings.tenant,
            admission=admission,
            authenticator=auth.authenticator,
            iap=auth.iap,
            upstream=upstream,
            ray_token=ray_token,
            telemetry=telemetry,
            public_origin=Origin.parse(settings.public_url) if settings.public_url else None,
            jobs=jobs,
        )
        telemetry.project = await resolve_project(settings.access_log.project_id, os.environ)
        await auth.start()
        if ray_token.watch is not None:
            ray_token.watch.start()
        sources.start()
        try:
            yield
        finally:
            await sources.close()
            await auth.stop()
            if ray_token.watch is not None:
                await ray_token.watch.stop()
            await upstream.close()
            await telemetry.close()

    async def on_shutdown(app: web.Application) -> None:
        # The listener is closed and idle connections too; what is left is in flight.
        if PROXY in app:
            app[PROXY].draining = True
            await drain(app[PROXY].inflight, settings.shutdown_grace_seconds)

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(on_shutdown)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def drain(inflight: set[asyncio.Task[Any]], grace: float) -> None:
    """Let in-flight requests and streams finish for up to `grace` seconds, then cut the rest."""
    pending = {t for t in inflight if not t.done()}
    if pending:
        log.info("draining %d request(s) in flight for up to %g s", len(pending), grace)
        _, pending = await asyncio.wait(pending, timeout=grace)
    if pending:
        log.warning("grace period over: cutting %d request(s) still in flight", len(pending))
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=CUT_WAIT_SECONDS)


def runner_args(settings: Settings) -> dict[str, Any]:
    """How the listener runs: `ProxyRunner(app, **runner_args(settings))`. Limits that aiohttp's
    parser enforces itself are answered by `http.listener.ProxyRequestHandler` (414/431/400)."""
    limits = settings.limits
    line = limits.max_target_length + 64  # the parser counts the target; admission checks it exactly
    if line == limits.max_header_bytes:
        line += 1  # a line-too-long at the line limit must mean the target (414), never a header (431)
    return {
        "max_line_size": line,
        "max_field_size": limits.max_header_bytes,
        "max_headers": limits.max_headers,
        "keepalive_timeout": limits.client_idle_timeout_seconds,
        "max_connections": limits.max_connections,
        "handler_cancellation": True,  # a client that goes away cancels its request, and Ray's side
        "shutdown_timeout": settings.shutdown_grace_seconds,  # a backstop: `drain` does the waiting
        "access_log": None,  # ours is telemetry's
        # Bodies are relayed as they came, Content-Encoding and all: aiohttp would otherwise inflate a
        # gzip body and the proxy pass it on still labelled gzip (Ray answers 500), and inflate bombs.
        "auto_decompress": False,
    }


def serve(
    settings: Settings, ready: Callable[[], Awaitable[None]] | None = None, worker: Worker | None = None
) -> None:
    """Run until SIGTERM/SIGINT; then stop accepting, let in-flight requests and streams finish for
    `shutdown_grace_seconds`, cut what is left, and return (exit 0). As one of a supervisor's
    `worker`s: the port shared (SO_REUSEPORT), the Ray Client listener in worker 0 only, metrics on
    the supervisor's socket (proxy/workers.py)."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve(settings, ready, worker))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (a dependency on Linux): 20-30 % more requests per core."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - other platforms
        return None
    return uvloop.new_event_loop


async def _serve(
    settings: Settings, ready: Callable[[], Awaitable[None]] | None, worker: Worker | None = None
) -> None:
    app = build_app(settings)
    runner = ProxyRunner(app, **runner_args(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await runner.setup()
    metrics: web.AppRunner | None = None
    client: Listener | None = None
    try:
        listen = settings.listen
        await web.TCPSite(runner, listen.host, listen.port, reuse_port=worker is not None).start()
        if worker is None or worker.index == 0:
            client = await start_client_listener(settings, app[PROXY])
        if settings.metrics_listen is not None:
            metrics = web.AppRunner(metrics_app(app, runner), access_log=None)
            await metrics.setup()
            if worker is not None and worker.metrics_socket:  # the supervisor serves metrics_listen
                await web.UnixSite(metrics, worker.metrics_socket).start()
            else:
                await web.TCPSite(metrics, settings.metrics_listen.host, settings.metrics_listen.port).start()
        log.info(
            "ray-iap-proxy listening on %s, tenant %s, upstream %s%s%s",
            settings.listen,
            settings.tenant,
            settings.upstream,
            f", metrics on {settings.metrics_listen}" if settings.metrics_listen else "",
            f" ({worker})" if worker is not None else "",
        )
        if ready is not None:
            await ready()
        tune_gc()  # start-up is done: its heap frozen, the young generation collected less often
        await stop.wait()
        log.info("shutting down: no new connections; grace period %g s", settings.shutdown_grace_seconds)
    finally:
        # Both listeners stop taking calls at once and drain for the same grace period.
        draining = asyncio.create_task(client.stop(settings.shutdown_grace_seconds)) if client else None
        await runner.cleanup()
        if draining is not None:
            await draining
        if metrics is not None:
            await metrics.cleanup()
    log.info("stopped")
