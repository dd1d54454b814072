"""The two unauthenticated paths: `/healthz` (the process answers) and `/readyz` (it could serve now:
keys loaded, Ray's token readable, Ray answering). Nothing else is answered without credentials."""

from __future__ import annotations

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


def is_probe(method: str, raw_path: str) -> bool:
    return raw_path in (HEALTH_PATH, READY_PATH) and method in ("GET", "HEAD")


async def answer(proxy: Proxy, ctx: RequestContext, raw_path: str) -> web.Response:
    ctx.decision = "local"
    if raw_path == HEALTH_PATH:
        ctx.reason = "health"
        return answers.json_answer(ctx, {"status": "ok"})
    ctx.reason = "readiness"
    problems = []
    if proxy.draining:
        problems.append("shutting down")
    problems += proxy.authenticator.problems()
    if proxy.ray_token.problem is not None:
        problems.append(f"Ray token unreadable ({proxy.ray_token.problem})")
    ray = await proxy.upstream.problem(proxy.ray_token.value)
    if ray is not None:
        problems.append(ray)
    if problems:
        ctx.reason = "; ".join(problems)
        body = {"status": "not ready", "problems": problems}
        return answers.json_answer(ctx, body, status=STATUS[Kind.UNAVAILABLE])
    return answers.json_answer(ctx, {"status": "ready"})
