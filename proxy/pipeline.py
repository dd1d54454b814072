"""THE request path. Read top to bottom:

    health? -> canonical target -> who (401) -> which route (403) -> cross-site? (403)
            -> may they (403) -> Ray's credentials swapped in -> stream (HTTP or WebSocket)

Every outcome is mapped to a status here and only here: malformed 400/414/431, no or bad credentials 401,
authenticated but not allowed 403, a stalled body 408, too large 413, our own or Ray's failure 5xx.
Nothing is allowed on error: an exception anywhere is a refusal. Requests aiohttp's parser refuses
before any handler runs come through `refuse_unparseable`, with the same shape of answer and record.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, BadStatusLine, InvalidURLError, LineTooLong
from opentelemetry.trace import Span
from yarl import URL

from . import answers
from .auth.tokens import TokenError
from .auth.verifier import ASSERTION_HEADER, KeysUnavailable, Verifier, assertion_from
from .authz.csrf import cross_site_reason
from .authz.routes import RouteTable
from .authz.target import BadTarget, parse_target
from .config import DEFAULT_HEALTH_PATH, DEFAULT_READY_PATH, Config
from .model import Action, RequestContext, Route
from .telemetry import Telemetry
from .upstream.errors import ClientFault, UpstreamError
from .upstream.headers import request_headers
from .upstream.http import forward_http
from .upstream.websocket import forward_websocket, is_upgrade

log = logging.getLogger("ray_iap_proxy")


class Refused(Exception):
    def __init__(self, status: int, reason: str, hint: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.hint = hint  # for a person reading the refusal page; None: the status's own advice


@dataclass
class Proxy:
    """Everything the request path needs, built once at start-up."""

    config: Config
    verifier: Verifier
    routes: RouteTable
    telemetry: Telemetry
    session: aiohttp.ClientSession
    ray_token: str | None
    draining: bool = False
    inflight: set[asyncio.Task[Any]] = field(default_factory=set)  # drained at shutdown
    upstream: URL = field(init=False)

    def __post_init__(self) -> None:
        self.upstream = URL(self.config.upstream)


PROXY = web.AppKey("proxy", Proxy)


def _begin(
    request: web.BaseRequest, proxy: Proxy, method: str, target: str, headers: Mapping[str, str]
) -> tuple[RequestContext, Span]:
    """The request's context and span: ids first, everything else filled in as the request goes."""
    ctx = RequestContext(
        request_id=secrets.token_hex(16),
        method=method,
        target=target,
        remote=request.remote or "",
        started=time.monotonic(),
        tenant=proxy.config.tenant,
    )
    span = proxy.telemetry.start_span(method, headers)
    sc = span.get_span_context()
    ctx.trace_id, ctx.span_id = f"{sc.trace_id:032x}", f"{sc.span_id:016x}"
    return ctx, span


async def handle(request: web.Request) -> web.StreamResponse:
    proxy = request.app[PROXY]
    ctx, span = _begin(request, proxy, request.method, request.raw_path, request.headers)
    fwd = request.headers.get("X-Forwarded-For")
    if fwd:
        ctx.extra["forwarded_for"] = fwd[:200]  # logged for the record, trusted for nothing
    response: web.StreamResponse | None = None
    task = asyncio.current_task()
    if task is not None:
        proxy.inflight.add(task)
    try:
        response = await _serve(request, proxy, ctx)
    except Refused as exc:
        response = _refuse(request, ctx, exc.status, exc.reason, hint=exc.hint)
    except UpstreamError as exc:
        response = _refuse(request, ctx, exc.status, exc.reason, decision=ctx.decision or "error")
    except ClientFault as exc:
        response = _refuse(request, ctx, exc.status, exc.reason)
    except asyncio.CancelledError:
        ctx.extra["aborted"] = "cancelled"
        ctx.status = ctx.status or 499
        raise
    except Exception:
        log.exception("request %s failed inside the proxy", ctx.request_id)
        response = _refuse(request, ctx, 500, "internal proxy error", decision="error")
    finally:
        if task is not None:
            proxy.inflight.discard(task)
        if response is not None:
            ctx.status = response.status
        proxy.telemetry.record(ctx, span, request.headers.get("User-Agent", ""))
    return response


def refuse_unparseable(
    request: web.BaseRequest, proxy: Proxy, status: int, exc: BaseException | None, line_limit: int
) -> web.Response:
    """aiohttp refused the request before any handler ran (its parser, or an error escaping it):
    answer like every other refusal and leave one access record. The parser's own message is never
    echoed or logged: it quotes the raw request, credentials included."""
    ctx, span = _begin(request, proxy, "-", "-", {})
    if status == 400:
        status, reason = parse_failure(exc, line_limit)
        ctx.extra["parser"] = type(exc).__name__
    else:
        reason = "request timed out inside the proxy" if status == 504 else "internal proxy error"
    response = _refuse(request, ctx, status, reason, decision="deny" if status < 500 else "error")
    response.force_close()
    ctx.status = status
    proxy.telemetry.record(ctx, span)
    return response


def parse_failure(exc: BaseException | None, line_limit: int) -> tuple[int, str]:
    """The status and a safe reason for one of aiohttp's parser errors. `line_limit` is the request
    line limit the parser was given: a line-too-long at that limit is the target (414), any other is
    a header (431)."""
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else None
        if limit == line_limit:
            return 414, "request target too long"
        return 431, f"a request header is longer than {limit} bytes"
    if isinstance(exc, BadHttpMessage) and exc.message.startswith("Too many headers"):
        return 431, "too many request headers"
    if isinstance(exc, BadHttpMethod):
        return 400, "malformed or unknown method"
    if isinstance(exc, BadStatusLine):
        return 400, "malformed request line"
    if isinstance(exc, InvalidURLError):
        return 400, "malformed request target"
    return 400, "malformed request (headers or framing)"


def _refuse(
    request: web.BaseRequest,
    ctx: RequestContext,
    status: int,
    reason: str,
    decision: str = "deny",
    hint: str | None = None,
) -> web.Response:
    if not (status >= 500 and ctx.decision == "allow"):  # an allowed request that Ray failed stays "allow"
        ctx.decision = decision
    ctx.reason = reason
    return answers.refusal(request, ctx, status, reason, hint)


async def _serve(request: web.Request, proxy: Proxy, ctx: RequestContext) -> web.StreamResponse:
    raw = request.raw_path
    if raw == DEFAULT_HEALTH_PATH and request.method in ("GET", "HEAD"):
        ctx.decision, ctx.reason = "local", "health"
        return answers.json_answer(ctx, {"status": "ok"})
    if raw == DEFAULT_READY_PATH and request.method in ("GET", "HEAD"):
        ctx.decision, ctx.reason = "local", "readiness"
        return await _readiness(proxy, ctx)

    try:
        target = parse_target(raw, proxy.config.limits.max_target_length)
    except BadTarget as exc:
        raise Refused(exc.status, exc.reason) from None

    try:
        token = assertion_from(request.headers.getall(ASSERTION_HEADER, []))
        ctx.identity = await proxy.verifier.identify(token)
    except TokenError as exc:
        raise Refused(401, f"invalid IAP assertion: {exc.reason}") from None
    except KeysUnavailable:
        raise Refused(503, "IAP key set not loaded: cannot verify identities") from None

    route = proxy.routes.classify(request.method, target.path)
    if route is None:
        raise Refused(403, f"{request.method} {target.path[:100]} is not a known Ray route")
    ctx.route, ctx.verb = route, route.verb
    if route.action is Action.DENY or route.verb is None:
        raise Refused(403, f"{route.pattern} is internal to Ray and never exposed")

    upgrade = route.websocket and is_upgrade(request)
    csrf = cross_site_reason(request.method, request.headers, request.host, upgrade=upgrade)
    if csrf is not None:
        raise Refused(403, csrf, hint=answers.CROSS_SITE_HINT)

    decision = proxy.config.policy.decide(ctx.identity, proxy.config.tenant, route.verb)
    if not decision.allowed:
        raise Refused(403, decision.reason)
    ctx.decision, ctx.reason = "allow", decision.reason

    if route.action is Action.LOCAL:
        return _local(route, ctx)
    headers = request_headers(request.headers.items(), proxy.ray_token)
    url = URL(proxy.config.upstream + target.raw, encoded=True)
    limits = proxy.config.limits
    if upgrade:
        return await forward_websocket(
            request, ctx, proxy.session, url, headers, limits.max_websocket_message_bytes
        )
    return await forward_http(
        request, ctx, proxy.session, url, headers, limits.max_body_bytes, limits.client_read_timeout_seconds
    )


def _local(route: Route, ctx: RequestContext) -> web.Response:
    """Routes the proxy answers itself. Clients never hold Ray's token: the proxy adds it.

    The mode is "disabled" because, seen from the browser, no Ray token is needed. Ray's UI opens its
    token prompt on any 401/403 when told "token", so a person refused by policy would be asked for
    the cluster's secret (docs/dashboard.md, tests/browser)."""
    if route.pattern == "/api/authentication_mode":
        return answers.json_answer(ctx, {"authentication_mode": "disabled"})
    if route.pattern == "/api/authenticate":
        return answers.json_answer(ctx, {"message": "signed in through IAP; no Ray token is needed"})
    raise AssertionError(f"no local answer for {route.name}")  # the route table and this must agree


async def _readiness(proxy: Proxy, ctx: RequestContext) -> web.Response:
    problems = []
    if proxy.draining:
        problems.append("shutting down")
    if not proxy.verifier.store.ready:
        problems.append("IAP key set not loaded")
    try:
        proxy.ray_token = proxy.config.read_ray_token()  # Kubernetes rotates Secrets in place
    except Exception as exc:
        problems.append(f"Ray token unreadable ({type(exc).__name__})")
    headers = {"X-Ray-Authorization": f"Bearer {proxy.ray_token}"} if proxy.ray_token else {}
    try:
        async with proxy.session.get(
            URL(proxy.config.upstream + "/api/gcs_healthz"),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=2),
        ) as r:
            if r.status != 200:
                problems.append(f"Ray answered {r.status}")
    except (aiohttp.ClientError, TimeoutError):
        problems.append("Ray not answering")
    if problems:
        ctx.reason = "; ".join(problems)
        return answers.json_answer(ctx, {"status": "not ready", "problems": problems}, status=503)
    return answers.json_answer(ctx, {"status": "ready"})
