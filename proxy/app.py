"""Wiring only: build the application from a Config, own the long-lived resources, run it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from .auth.keys import Fetch, KeyStore
from .auth.verifier import Verifier
from .authz.routes import DEFAULT_TABLE, RouteTable
from .config import Config
from .listener import ProxyRunner
from .metrics import metrics_app
from .pipeline import PROXY, Proxy, handle
from .telemetry import Telemetry
from .upstream.http import upstream_timeout

log = logging.getLogger("ray_iap_proxy")
KEY_RETRY_SECONDS = (2, 5, 10, 30, 60)
CUT_WAIT_SECONDS = 2.0  # after the grace period: how long cancelled requests get to unwind


def http_fetcher(session: aiohttp.ClientSession, timeout: float) -> Fetch:
    """The production key-set fetch: one GET, bounded in time and size."""

    async def fetch(url: str) -> bytes:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False) as r:
            if r.status != 200:
                raise OSError(f"key set URL answered {r.status}")
            body = await r.content.read(1 << 20)
            if not r.content.at_eof():
                raise OSError("key set larger than 1 MiB")
            return body

    return fetch


async def _refresh_keys_forever(store: KeyStore, every: float) -> None:
    failures = 0
    while True:
        if store.ready and failures == 0:
            await asyncio.sleep(every)
        else:
            await asyncio.sleep(KEY_RETRY_SECONDS[min(failures, len(KEY_RETRY_SECONDS) - 1)])
        failures = 0 if await store.refresh() else failures + 1


@web.middleware
async def _unrouted_too(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What aiohttp's router cannot place (a CONNECT, `*`, an absolute target without a path) goes
    through the pipeline as well, to be refused in its shape and leave its access record."""
    if request.match_info.http_exception is not None:
        return await handle(request)
    return await handler(request)


def build_app(
    config: Config,
    *,
    routes: RouteTable = DEFAULT_TABLE,
    fetch: Callable[[aiohttp.ClientSession], Fetch] | None = None,
    clock: Callable[[], float] | None = None,
) -> web.Application:
    """The proxy as an aiohttp application. `fetch` and `clock` are seams for tests."""
    app = web.Application(client_max_size=1024, middlewares=[_unrouted_too])
    telemetry = Telemetry(config.tracing_exporter)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        limits = config.limits
        session = aiohttp.ClientSession(
            timeout=upstream_timeout(
                limits.upstream_connect_timeout_seconds, limits.upstream_read_timeout_seconds
            ),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            connector=aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True),
        )
        keys_session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        fetcher = (fetch or (lambda s: http_fetcher(s, config.iap.key_fetch_timeout_seconds)))(keys_session)
        store = KeyStore(config.iap.jwks_url, fetcher, config.iap.key_min_refetch_seconds)
        verifier = Verifier(config.iap, store, clock=clock) if clock else Verifier(config.iap, store)
        store.on_removed = lambda _kids: verifier.forget_all()
        app[PROXY] = Proxy(
            config=config,
            verifier=verifier,
            routes=routes,
            telemetry=telemetry,
            session=session,
            ray_token=config.read_ray_token(),
        )
        await store.refresh()
        refresher = asyncio.get_running_loop().create_task(
            _refresh_keys_forever(store, config.iap.key_refresh_seconds), name="key-refresh"
        )
        try:
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            await session.close()
            await keys_session.close()
            telemetry.shutdown()

    async def on_shutdown(app: web.Application) -> None:
        # The listener is closed and idle connections too; what is left is in flight.
        if PROXY in app:
            app[PROXY].draining = True
            await drain(app[PROXY].inflight, config.shutdown_grace_seconds)

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


def runner_args(config: Config) -> dict[str, Any]:
    """How the listener runs: `ProxyRunner(app, **runner_args(config))`. Limits that aiohttp's parser
    enforces itself are answered by `listener.ProxyRequestHandler` (414/431/400)."""
    limits = config.limits
    line = limits.max_target_length + 64  # the parser counts the target; the pipeline checks it exactly
    if line == limits.max_header_bytes:
        line += 1  # a line-too-long at the line limit must mean the target (414), never a header (431)
    return {
        "max_line_size": line,
        "max_field_size": limits.max_header_bytes,
        "max_headers": limits.max_headers,
        "keepalive_timeout": limits.client_idle_timeout_seconds,
        "max_connections": limits.max_connections,
        "handler_cancellation": True,  # a client that goes away cancels its request, and Ray's side
        "shutdown_timeout": config.shutdown_grace_seconds,  # a backstop: `drain` does the waiting
        "access_log": None,  # ours is telemetry's
    }


def serve(config: Config, ready: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run until SIGTERM/SIGINT; then stop accepting, let in-flight requests and streams finish for
    `shutdown_grace_seconds`, cut what is left, and return (exit 0)."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve(config, ready))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (a dependency on Linux): 20-30 % more requests per core."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - other platforms
        return None
    return uvloop.new_event_loop


async def _serve(config: Config, ready: Callable[[], Awaitable[None]] | None) -> None:
    app = build_app(config)
    runner = ProxyRunner(app, **runner_args(config))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await runner.setup()
    metrics: web.AppRunner | None = None
    try:
        await web.TCPSite(runner, config.listen.host, config.listen.port).start()
        if config.metrics_listen is not None:
            metrics = web.AppRunner(metrics_app(app, runner), access_log=None)
            await metrics.setup()
            await web.TCPSite(metrics, config.metrics_listen.host, config.metrics_listen.port).start()
        log.info(
            "ray-iap-proxy listening on %s, tenant %s, upstream %s%s",
            config.listen,
            config.tenant,
            config.upstream,
            f", metrics on {config.metrics_listen}" if config.metrics_listen else "",
        )
        if ready is not None:
            await ready()
        await stop.wait()
        log.info("shutting down: no new connections; grace period %g s", config.shutdown_grace_seconds)
    finally:
        await runner.cleanup()
        if metrics is not None:
            await metrics.cleanup()
    log.info("stopped")
