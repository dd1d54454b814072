"""The unauthenticated paths: `/healthz` (the process answers), `/readyz` (it could serve now: keys
loaded, Ray's token readable, Ray answering) and Ray's own `/api/gcs_healthz`, answered here from the
same check. Nothing else is answered without credentials, and none of them reaches Ray.

Anyone who reaches the pod may call them, so they say little and cost little:
- the answer is `ready` or `not ready`, nothing more; what is wrong goes to the access record's
  reason and, when it changes, to a WARNING log line (`Readiness.problems` holds it for metrics);
- Ray is asked at most once per `UPSTREAM_CHECK_SECONDS`, however many probes arrive: concurrent
  probes share one check, later ones reuse its answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from ..errors import Kind
from ..model import RequestContext
from . import answers
from .status import STATUS

if TYPE_CHECKING:
    from .pipeline import Proxy

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
# Ray answers its GCS health without a token (a PUBLIC path), and KubeRay's RayJob submitter polls it
# without one before it submits: the proxy answers it itself, from the same cached check of Ray as
# readiness, so nothing unauthenticated ever reaches Ray.
GCS_HEALTH_PATH = "/api/gcs_healthz"
UPSTREAM_CHECK_SECONDS = 2.0  # Kubernetes probes every 5-10 s: fresh enough, and a flood costs one call

log = logging.getLogger("ray_iap_proxy")


def is_probe(method: str, raw_path: str) -> bool:
    return raw_path in (HEALTH_PATH, READY_PATH, GCS_HEALTH_PATH) and method in ("GET", "HEAD")


class Readiness:
    """The last readiness verdict and Ray's last answer, per application. `clock` is a test seam."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, ttl: float = UPSTREAM_CHECK_SECONDS
    ) -> None:
        self.clock, self.ttl = clock, ttl
        self.problems: tuple[str, ...] = ()  # as of the last probe; () when ready
        self.upstream_checks = 0
        self._checked_at: float | None = None
        self._upstream: str | None = None
        self._running: asyncio.Task[str | None] | None = None

    async def upstream_problem(self, check: Callable[[], Awaitable[str | None]]) -> str | None:
        """Ray's problem, from a check at most `ttl` old; one check runs at a time."""
        now = self.clock()
        if self._checked_at is not None and now - self._checked_at < self.ttl:
            return self._upstream
        if self._running is None:
            self._running = asyncio.ensure_future(self._check(check))
        # shield: one caller going away must not cancel the check the others wait for
        return await asyncio.shield(self._running)

    async def _check(self, check: Callable[[], Awaitable[str | None]]) -> str | None:
        try:
            self.upstream_checks += 1
            self._upstream = await check()
            self._checked_at = self.clock()
            return self._upstream
        finally:
            self._running = None

    def settle(self, problems: list[str]) -> None:
        """Keep the verdict; log it when it changes (not on every probe)."""
        now = tuple(problems)
        if now != self.problems:
            if now:
                log.warning("not ready: %s", "; ".join(now))
            else:
                log.info("ready")
        self.problems = now


async def answer(proxy: Proxy, ctx: RequestContext, raw_path: str) -> web.Response:
    ctx.decision = "local"
    if raw_path == HEALTH_PATH:
        ctx.reason = "health"
        return answers.json_answer(ctx, {"status": "ok"})
    if raw_path == GCS_HEALTH_PATH:
        return await _gcs_health(proxy, ctx)
    ctx.reason = "readiness"
    problems = []
    if proxy.draining:
        problems.append("shutting down")
    problems += proxy.authenticator.problems()
    if proxy.ray_token.problem is not None:
        problems.append(f"Ray token unreadable ({proxy.ray_token.problem})")
    ray = await proxy.readiness.upstream_problem(lambda: proxy.upstream.problem(proxy.ray_token.value))
    if ray is not None:
        problems.append(ray)
    proxy.readiness.settle(problems)
    if problems:
        ctx.reason = "not ready: " + "; ".join(problems)  # the record says why; the caller does not
        return answers.json_answer(ctx, {"status": "not ready"}, status=STATUS[Kind.UNAVAILABLE])
    return answers.json_answer(ctx, {"status": "ready"})


async def _gcs_health(proxy: Proxy, ctx: RequestContext) -> web.Response:
    """Ray's own answer to `GET /api/gcs_healthz` (`success`), or 503 when Ray does not answer it."""
    problem = await proxy.readiness.upstream_problem(lambda: proxy.upstream.problem(proxy.ray_token.value))
    headers = {"X-Request-Id": ctx.request_id, "Cache-Control": "no-store"}
    if problem is None:
        ctx.reason = "Ray's GCS health, answered by the proxy"
        return web.Response(text="success", headers=headers)
    ctx.reason = f"Ray's GCS health, answered by the proxy: {problem}"
    return web.Response(status=STATUS[Kind.UNAVAILABLE], text="unhealthy", headers=headers)
