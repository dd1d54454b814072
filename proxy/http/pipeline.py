"""THE HTTP request path. Read top to bottom:

    probe? -> the request's facts -> admission (admit.py) -> the one status table -> local answer,
           or Ray's credentials swapped in -> stream (HTTP or WebSocket)

Every refusal gets its status from `status.STATUS` and nowhere else. Nothing is allowed on error: an
exception anywhere is a refusal. Requests aiohttp's parser refuses before any handler runs come
through `refuse_unparseable`, with the same shape of answer and record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from aiohttp import web
from opentelemetry.trace import Span

from ..admit import Admission, Facts
from ..auth.authenticate import Authenticator
from ..auth.extract import credentials
from ..auth.providers.iap import IapProvider
from ..authz.csrf import BrowserFacts, Origin
from ..errors import Kind, ProxyError, UpstreamError
from ..ids import request_id
from ..jobs.service import Jobs
from ..model import Action, RequestContext, Route, Transport, Verdict
from ..telemetry import Telemetry
from ..upstream.base import Upstream
from ..upstream.headers import request_headers
from ..upstream.ray_token import RayToken
from ..upstream.websocket import handshake_problem, is_upgrade
from . import answers, probes, protocol
from .status import status_for

log = logging.getLogger("ray_iap_proxy")


@dataclass
class Proxy:
    """Everything the request path needs, built once at start-up."""

    tenant: str
    admission: Admission
    authenticator: Authenticator
    iap: IapProvider
    upstream: Upstream
    ray_token: RayToken
    telemetry: Telemetry
    draining: bool = False
    inflight: set[asyncio.Task[Any]] = field(default_factory=set)  # drained at shutdown
    public_origin: Origin | None = None  # `public_url`; None: derived from each request's Host
    readiness: probes.Readiness = field(default_factory=probes.Readiness)
    jobs: Jobs | None = None  # job submitters, owners and secrets; None: requests pass unchanged


PROXY = web.AppKey("proxy", Proxy)


def begin(
    request: web.BaseRequest, proxy: Proxy, method: str, target: str, headers: Mapping[str, str]
) -> tuple[RequestContext, Span | None]:
    """The request's context and span (None when not tracing): ids first, everything else filled in
    as the request goes."""
    ctx = RequestContext(
        request_id=request_id(),  # no system call per request (proxy/ids.py)
        method=method,
        target=target,
        remote=request.remote or "",
        started=time.monotonic(),
        tenant=proxy.tenant,
        user_agent=headers.get("User-Agent", ""),
        forwarded_for=headers.get("X-Forwarded-For", ""),  # believed only from a trusted proxy
        protocol=f"HTTP/{request.version.major}.{request.version.minor}",
    )
    return ctx, proxy.telemetry.begin(ctx, headers)


def facts(request: web.Request, proxy: Proxy) -> Facts:
    """What admission needs to know, read off the request once."""
    return Facts(
        transport=Transport.HTTP,
        method=request.method,
        target=request.raw_path,
        credentials=credentials(request.headers.items()),
        browser=BrowserFacts.from_headers(request.headers, request.host, proxy.public_origin),
        wants_upgrade=is_upgrade(request),
    )


async def handle(request: web.Request) -> web.StreamResponse:
    """The application's one handler (aiohttp's router sends every request here)."""
    return await serve_with(request, request.app[PROXY])


def handler_for(proxy: Proxy) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """The listener's handler: every request straight to the pipeline, without aiohttp's router,
    middlewares and per-request application lookup (`listener.ProxyRunner`; ~5 % of a request's CPU)."""

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        return await serve_with(cast(web.Request, request), proxy)

    return handler


async def serve_with(request: web.Request, proxy: Proxy) -> web.StreamResponse:
    ctx, span = begin(request, proxy, request.method, request.raw_path, request.headers)
    response: web.StreamResponse | None = None
    task = asyncio.current_task()
    if task is not None:
        proxy.inflight.add(task)
    try:
        response = await _serve(request, proxy, ctx, span)
    except ProxyError as exc:
        upstream_status = exc.upstream_status if isinstance(exc, UpstreamError) else None
        decision = (ctx.decision or "error") if isinstance(exc, UpstreamError) else "deny"
        response = refuse(
            request, ctx, exc.kind, exc.reason, decision=decision, upstream_status=upstream_status
        )
    except asyncio.CancelledError:
        ctx.extra.setdefault("aborted", "cancelled")  # unless the stream knew which side went away
        ctx.status = ctx.status or 499
        raise
    except Exception:
        log.exception("request %s failed inside the proxy", ctx.request_id)
        response = refuse(request, ctx, Kind.INTERNAL, "internal proxy error", decision="error")
    finally:
        if task is not None:
            proxy.inflight.discard(task)
        if response is not None:
            if protocol.must_close(request):  # a body never invited, a protocol we do not speak
                await protocol.answer_and_close(request, response)
            ctx.status = response.status
            if not ctx.bytes_out and isinstance(response, web.Response):  # our own answer's body
                ctx.bytes_out = response.content_length or 0
        proxy.telemetry.record(ctx, span)
    return response


async def _serve(
    request: web.Request, proxy: Proxy, ctx: RequestContext, span: Span | None = None
) -> web.StreamResponse:
    if (unspoken := protocol.refusal(request)) is not None:  # a version or an expectation
        ctx.protocol = protocol.requested_protocol(request) or ctx.protocol
        return refuse(request, ctx, *unspoken)  # answered, then closed, by `handle`
    if probes.is_probe(request.method, request.raw_path):
        return await probes.answer(proxy, ctx, request.raw_path)
    verdict = await proxy.admission.admit(facts(request, proxy))
    ctx.apply(verdict)
    if verdict.kind is not None:
        return refuse(request, ctx, verdict.kind, verdict.reason, hint=verdict.hint)
    return await forward(request, proxy, ctx, verdict, span)


async def forward(
    request: web.Request, proxy: Proxy, ctx: RequestContext, verdict: Verdict, span: Span | None = None
) -> web.StreamResponse:
    """An allowed request: answered here (LOCAL routes) or relayed with Ray's credentials swapped in."""
    route, target = verdict.route, verdict.target
    if route is None or target is None:  # pragma: no cover - an allowed HTTP verdict names both
        raise ProxyError("allowed without a route", Kind.INTERNAL)
    if route.action is Action.LOCAL:
        return _local(route, ctx)
    if route.websocket and (bad := handshake_problem(request.method, request.headers)) is not None:
        response = refuse(request, ctx, bad.kind, bad.reason)  # before Ray is dialled
        response.headers.update(bad.headers)
        return response
    if not verdict.upgrade:
        await protocol.send_continue(request)  # allowed: now the body may come
    headers = request_headers(request.headers.items(), proxy.ray_token.value)
    body = None
    if proxy.jobs is not None:  # the submitter recorded; reads made ones Ray redacts secrets in
        headers, body = await proxy.jobs.prepare(request, ctx, verdict, headers)
    # the client span and Ray's `traceparent`; upstream latency, errors and open WebSockets
    with proxy.telemetry.upstream(ctx, headers, span, request.headers, verdict.upgrade) as headers:
        if verdict.upgrade:
            return await proxy.upstream.websocket(request, ctx, target.raw, headers)
        try:
            return await proxy.upstream.http(request, ctx, target.raw, headers, body)
        finally:
            if proxy.jobs is not None:
                proxy.jobs.finished(verdict)


def refuse(
    request: web.BaseRequest,
    ctx: RequestContext,
    kind: Kind,
    reason: str,
    *,
    decision: str = "deny",
    hint: str | None = None,
    upstream_status: int | None = None,
) -> web.Response:
    status = status_for(kind, upstream_status)
    if not (status >= 500 and ctx.decision == "allow"):  # an allowed request that Ray failed stays "allow"
        ctx.decision = decision
    ctx.reason = reason
    return answers.refusal(request, ctx, status, reason, hint)


def refuse_unparseable(
    request: web.BaseRequest, proxy: Proxy, kind: Kind, reason: str, parser: str | None = None
) -> web.Response:
    """aiohttp refused the request before any handler ran (its parser, or an error escaping it):
    answer like every other refusal and leave one access record. `parser` names aiohttp's error."""
    ctx, span = begin(request, proxy, "-", "-", {})
    ctx.protocol = ""  # unknown: the request line itself may be what failed
    if parser is not None:
        ctx.extra["parser"] = parser
    status = status_for(kind)
    response = refuse(request, ctx, kind, reason, decision="deny" if status < 500 else "error")
    response.force_close()
    ctx.status = status
    proxy.telemetry.record(ctx, span)
    return response


def _local(route: Route, ctx: RequestContext) -> web.Response:
    """Routes the proxy answers itself. Clients never hold Ray's token: the proxy adds it.

    The mode is "disabled" because, seen from the browser, no Ray token is needed. Ray's UI opens its
    token prompt on any 401/403 when told "token", so a person refused by policy would be asked for
    the cluster's secret (docs/dashboard.md, tests/browser)."""
    if route.pattern == "/api/authentication_mode":
        return answers.json_answer(ctx, {"authentication_mode": "disabled"})
    if route.pattern == "/api/authenticate":
        return answers.json_answer(ctx, {"message": "signed in through IAP; no Ray token is needed"})
    raise ProxyError(f"no local answer for {route.name}", Kind.INTERNAL)  # the table and this must agree
