"""Keeping the secrets a job was given (`runtime_env.env_vars` values) out of what is read back.

Ray 2.60 masks those values as `<redacted>` in every answer that carries a runtime env — the job
APIs (`/api/jobs/`), the state API (`/api/v0/jobs`, `actors`, `tasks`, `runtime_envs`) and Serve's
(`/api/serve/applications/`) — but only for requests that look like a browser's (`is_browser_request`
in ray/dashboard/optional_utils.py). So every GET and HEAD the proxy forwards carries one browser
header, `Sec-Fetch-Mode` (never a non-GET: Ray refuses browser-looking writes with 405). That covers
every route, Ray's own list included, without the proxy reading an answer.

Two things the marker cannot cover are handled here as well:
* Ray can be told not to redact (`RAY_DASHBOARD_REDACT_RUNTIME_ENV=0` on the head). The proxy asks
  Ray (`/api/v0/runtime_env_redaction`, cached) before forwarding a route that carries runtime envs,
  and refuses it (503, with the reason) when Ray says no; Ray unreachable is 502, as for any request.
* Ray's runtime-env agent logs each runtime env it creates, values included
  (`runtime_env_agent.log`, and the per-job `runtime_env_setup-*.log`). The log routes refuse those
  files, and any job-log lookup by a submission id that could name a path.
What a job prints itself (its own environment, say) is the job's output, not redacted.

A role may be let through (`jobs.reveal_secrets_to_roles`, empty by default): no marker, no check.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import time
from collections.abc import Callable
from urllib.parse import parse_qsl

from ..errors import Forbidden, Kind, Unavailable, UpstreamError
from ..model import Route
from ..upstream.errors import TIMEOUT
from ..upstream.headers import Headers, norm
from .owners import Fetch

# Routes whose answers carry runtime envs (read from Ray 2.60's handlers, checked on a real head).
RUNTIME_ENV_ROUTES = frozenset(
    {
        "/api/jobs/",
        "/api/jobs/{job_or_submission_id}",
        "/api/v0/jobs",
        "/api/v0/actors",
        "/api/v0/tasks",
        "/api/v0/runtime_envs",
        "/api/serve/applications/",
    }
)
LOG_FILE_ROUTES = frozenset({"/api/v0/logs/file", "/api/v0/logs/stream"})
SECRET_LOG_PREFIX = "runtime_env"  # runtime_env_agent.{log,out,err}[.N], runtime_env_setup-*.log
MARKER = ("Sec-Fetch-Mode", "same-origin")  # what makes Ray redact, as for its own dashboard
REDACTION_STATE_PATH = "/api/v0/runtime_env_redaction"
HINT = "Values of a job's runtime_env.env_vars are never shown through the proxy; the job still gets them."


def mark_for_redaction(headers: Headers) -> Headers:
    """`headers` with the browser marker that makes Ray redact (once; the caller's own is kept)."""
    if any(norm(name) == "sec-fetch-mode" for name, _ in headers):
        return headers
    return [*headers, MARKER]


def refuse_secret_logs(route: Route, query: str) -> None:
    """Raise Forbidden when a log route would read a file Ray writes runtime envs into."""
    if route.pattern not in LOG_FILE_ROUTES:
        return
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "filename":
            name = posixpath.basename(posixpath.normpath(value)) if value else ""
            if name.startswith(SECRET_LOG_PREFIX):
                raise Forbidden(f"{name[:80]} holds the values of job secrets: not readable", hint=HINT)
        elif key == "submission_id" and ("/" in value or "\\" in value):
            raise Forbidden("a submission id naming a path is not a job's log", hint=HINT)


class RedactionCheck:
    """Whether Ray redacts runtime envs for browser-looking reads, asked at most once per `ttl`."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        ttl_seconds: float = 60.0,
        timeout_seconds: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fetch, self.ttl, self.timeout, self.clock = fetch, ttl_seconds, timeout_seconds, clock
        self._until = float("-inf")
        self._problem: str | None = None

    async def ensure(self) -> None:
        """Return when Ray redacts; raise Unavailable (with why) when it says it does not, or its answer
        cannot be read; UpstreamError when Ray cannot be asked."""
        now = self.clock()
        if now >= self._until:
            self._problem = await self._ask()  # UpstreamError: Ray cannot be asked; nothing kept
            # A good answer is kept for `ttl`; a bad one is asked again soon, once Ray is back.
            self._until = now + (self.ttl if self._problem is None else min(self.ttl, 5.0))
        if self._problem is not None:
            raise Unavailable(f"refused: {self._problem}, and this route would show job secrets")

    async def _ask(self) -> str | None:
        """Why Ray does not redact, or None. Ray unreachable or slow raises UpstreamError, as the
        request itself would have (502, 504), and is not remembered."""
        try:
            async with asyncio.timeout(self.timeout):
                status, body = await self.fetch(REDACTION_STATE_PATH)
        except TimeoutError:
            raise UpstreamError(TIMEOUT, Kind.UPSTREAM_TIMEOUT) from None
        try:
            data = json.loads(body).get("data", {}) if status == 200 else None
        except (ValueError, AttributeError):
            data = None
        enabled = (
            data.get("redactionEnabled", data.get("redaction_enabled")) if isinstance(data, dict) else None
        )
        if enabled is True:
            return None
        if enabled is False:
            return "Ray's redaction of job secrets is off (RAY_DASHBOARD_REDACT_RUNTIME_ENV=0 on the head)"
        return f"Ray's answer about redacting job secrets is unreadable ({status})"
