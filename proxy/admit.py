"""THE decision, transport-free. Every request — HTTP, WebSocket, gRPC, or `explain` — comes here as
plain facts and leaves with one frozen `Verdict`:

    canonical target (malformed) -> who (unauthenticated / unavailable) -> which route (deny)
        -> from another site? (deny) -> may they: the policy sources' union (deny / unavailable)

Nothing here knows a status code or a socket: each transport maps the verdict's kind to its own
answer in one table. An exception anywhere inside is a refusal, never an allow.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from .auth.extract import Credentials
from .authz.authorizer import Question, Union
from .authz.csrf import BrowserFacts, cross_site_reason
from .authz.routes import RouteTable
from .authz.target import parse_target
from .errors import Forbidden, Internal, Kind, ProxyError, Refused
from .jobs.ownership import JobRef, OwnerLookup
from .model import Action, Identity, Route, Target, Transport, Verdict

log = logging.getLogger("ray_iap_proxy.admit")

CROSS_SITE_HINT = (
    "The request came from a page on another site, so the proxy refused it whatever your permissions. "
    "Open the dashboard directly and try again."
)

Authenticate = Callable[[Credentials], Awaitable[Identity]]


@dataclass(frozen=True, slots=True)
class Facts:
    """What admission needs to know about one request, whatever carried it."""

    transport: Transport
    method: str  # HTTP method; for gRPC the call kind does not matter ("POST")
    target: str  # the raw request target (HTTP), or the full method name (gRPC)
    credentials: Credentials = ()
    browser: BrowserFacts | None = None  # None: no browser provenance to check (gRPC, explain)
    wants_upgrade: bool = False  # the request asks to become a WebSocket


class Admission:
    def __init__(
        self,
        *,
        tenant: str,
        authenticate: Authenticate,
        routes: Mapping[Transport, RouteTable],
        authorizer: Union,
        max_target_length: int,
        owners: OwnerLookup | None = None,
    ) -> None:
        self.tenant = tenant
        self.authenticate = authenticate
        self.routes = routes
        self.authorizer = authorizer
        self.max_target_length = max_target_length
        self.owners = owners  # a job's owner, for owner-scoped grants (`stop:own`); None: never known

    async def admit(self, facts: Facts, known: Identity | None = None) -> Verdict:
        """The verdict for `facts`. `known` is an identity verified earlier by the caller (a Ray Client
        session's credential, within its bound; `explain`'s given identity): authentication is then
        skipped, every other step is not."""
        step = _Step()
        try:
            return await self._admit(facts, step, known)
        except Refused as exc:
            return step.verdict(exc.kind, exc.reason, exc.hint)
        except ProxyError as exc:
            return step.verdict(exc.kind, exc.reason)
        except Exception:  # a bug must refuse, never allow
            log.exception("admission failed for %s", facts.method)
            err = Internal()
            return step.verdict(err.kind, err.reason)

    async def _admit(self, facts: Facts, step: _Step, known: Identity | None) -> Verdict:
        step.source = "target"
        if facts.transport is Transport.HTTP:
            step.target = parse_target(facts.target, self.max_target_length)
            path = step.target.path
        else:
            path = facts.target
        step.source = "authn"
        step.identity = known if known is not None else await self.authenticate(facts.credentials)

        step.source = "routes"
        table = self.routes.get(facts.transport)
        route = table.classify(facts.method, path) if table is not None else None
        if route is None:
            raise Forbidden(f"{facts.method} {path[:100]} is not a known Ray route")
        step.route = route
        if route.action is Action.DENY or route.verb is None:
            raise Forbidden(f"{route.pattern} is internal to Ray and never exposed")
        step.upgrade = route.websocket and facts.wants_upgrade
        job = None
        if route.job_param is not None and table is not None:
            raw_job = table.param(route, path, route.job_param)
            job = JobRef(raw_job, self.owners) if raw_job else None
            step.job_id = job.id if job is not None else ""

        step.source = "cross-site"
        if facts.browser is not None:
            why = cross_site_reason(
                facts.method, facts.browser, upgrade=step.upgrade, side_effects=route.side_effects
            )
            if why is not None:
                raise Forbidden(why, hint=CROSS_SITE_HINT)

        step.source = "policy"
        question = Question(step.identity, self.tenant, route.verb, route, step.target, job)
        decision = await self.authorizer.decide(question)
        step.source = decision.source or "policy"
        if decision.granted:
            return step.verdict(None, decision.reason)
        return step.verdict(Kind.UNAVAILABLE if decision.unavailable else Kind.FORBIDDEN, decision.reason)


@dataclass(slots=True)
class _Step:
    """What is known so far, so that a refusal at any step says as much as can be said."""

    source: str = ""
    identity: Identity | None = None
    target: Target | None = None
    route: Route | None = None
    upgrade: bool = False
    job_id: str = ""

    def verdict(self, kind: Kind | None, reason: str, hint: str | None = None) -> Verdict:
        return Verdict(
            kind=kind,
            reason=reason,
            source=self.source,
            identity=self.identity,
            target=self.target,
            route=self.route,
            upgrade=self.upgrade,
            hint=hint,
            job_id=self.job_id,
        )
