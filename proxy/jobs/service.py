"""What the request path asks of jobs, built once at start-up: after admission allowed a request and
before it is relayed, `prepare` records the submitter in a submission, or makes a read one Ray
redacts secrets in; `finished` drops a deleted job's cached owner. The owner lookup admission uses
(`owners.owner`) goes through the same upstream, with Ray's token and the redaction marker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from ..model import Identity, RequestContext, Verdict
from ..settings.jobs import Jobs as JobsSettings
from ..upstream.headers import RAY_TOKEN_HEADER, Headers, norm
from .owners import JOB_INFO_MAX_BYTES, OwnerCache
from .ownership import MAX_ID_SHOWN, principal
from .secrets import MARKER, RUNTIME_ENV_ROUTES, RedactionCheck, mark_for_redaction, refuse_secret_logs
from .submission import decode_body, read_body, rewrite

# The proxy's own questions to Ray say who asks (Ray's logs, the test double's tripwire).
OWN_USER_AGENT = "ray-iap-proxy"
SUBMIT = ("POST", "/api/jobs/")
_BODY_HEADERS = frozenset({"content-type", "content-encoding"})  # the rewritten body is plain JSON

RawFetch = Callable[[str, Headers, int], Awaitable[tuple[int, bytes]]]  # Upstream.fetch


class Jobs:
    def __init__(
        self,
        settings: JobsSettings,
        fetch: RawFetch,
        ray_token: Callable[[], str | None],
        roles_of: Callable[[Identity], frozenset[str]],
        client_timeout_seconds: float,
    ) -> None:
        self.settings = settings
        self._fetch_raw, self._ray_token, self._roles_of = fetch, ray_token, roles_of
        self.client_timeout = client_timeout_seconds
        self.reveal_roles = frozenset(settings.reveal_secrets_to_roles)
        self.owners = OwnerCache(
            self._fetch,
            ttl_seconds=settings.owner_cache_seconds,
            size=settings.owner_cache_size,
            timeout_seconds=settings.owner_lookup_timeout_seconds,
        )
        self.redaction = RedactionCheck(self._fetch, timeout_seconds=settings.owner_lookup_timeout_seconds)

    async def _fetch(self, target: str) -> tuple[int, bytes]:
        token = self._ray_token()
        headers: Headers = [("User-Agent", OWN_USER_AGENT), ("Accept", "application/json"), MARKER]
        if token:
            headers.append((RAY_TOKEN_HEADER, f"Bearer {token}"))
        return await self._fetch_raw(target, headers, JOB_INFO_MAX_BYTES)

    def reveals(self, identity: Identity | None) -> bool:
        """Whether this caller reads secrets back (a role in `jobs.reveal_secrets_to_roles`)."""
        return (
            bool(self.reveal_roles)
            and identity is not None
            and bool(self._roles_of(identity) & self.reveal_roles)
        )

    async def prepare(
        self, request: web.Request, ctx: RequestContext, verdict: Verdict, headers: Headers
    ) -> tuple[Headers, bytes | None]:
        """The headers (and, for a submission, the body) to send Ray for an allowed request. Raises a
        refusal (BadSubmission, BodyTooLarge, Forbidden, Unavailable) instead when it must not go."""
        route, target = verdict.route, verdict.target
        if route is None or target is None or verdict.identity is None:
            return headers, None
        if (route.method, route.pattern) == SUBMIT:
            limit = self.settings.max_submission_bytes
            raw = await read_body(request, limit, self.client_timeout)
            ctx.bytes_in = len(raw)
            raw = decode_body(raw, request.headers.get("Content-Encoding"), limit)
            submission = rewrite(raw, request.charset, principal(verdict.identity))
            ctx.job_id = submission.submission_id[:MAX_ID_SHOWN]
            self.owners.forget(submission.submission_id)  # a reused id must be asked again
            kept = [(k, v) for k, v in headers if norm(k) not in _BODY_HEADERS]
            return [*kept, ("Content-Type", "application/json")], submission.body
        if request.method not in ("GET", "HEAD") or verdict.upgrade or self.reveals(verdict.identity):
            return headers, None
        refuse_secret_logs(route, target.query)
        if route.pattern in RUNTIME_ENV_ROUTES:
            await self.redaction.ensure()
        return mark_for_redaction(headers), None

    def finished(self, verdict: Verdict) -> None:
        """After a request was relayed (or failed): a job deleted through the proxy is forgotten."""
        if verdict.route is not None and verdict.route.method == "DELETE" and verdict.job_id:
            self.owners.forget(verdict.job_id)
