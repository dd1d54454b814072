"""`explain`: what serve would answer one identity for one request, decided by the very same
admission, without any network. Only authentication differs: the identity is given, not verified."""

from __future__ import annotations

from ..admit import Admission, Facts
from ..auth.extract import Credentials
from ..auth.providers.ray_token import IDENTITY as RAY_TOKEN_IDENTITY
from ..authz.authorizer import Decision, Question, Union
from ..authz.policy import Policy
from ..authz.routes import CLIENT_TABLE, DEFAULT_TABLE
from ..authz.routes.ray_client import CALL_KINDS
from ..authz.routes.ray_client import METHOD as CLIENT_METHOD
from ..authz.sources.build import PolicySources, build_sources
from ..authz.sources.static import StaticPolicy
from ..errors import Kind
from ..grpc import STATUS as GRPC_STATUS
from ..http.status import status_for
from ..model import Action, CredentialKind, Identity, Transport, Verb, ascii_lower
from ..settings import Settings


class _Recording(Union):
    """The union serve runs, keeping its last decision: every source's answer, for the output."""

    last: Decision | None = None

    async def decide(self, question: Question) -> Decision:
        self.last = await super().decide(question)
        return self.last


def admission_for(
    settings: Settings,
    policy: Policy,
    identity: Identity,
    job_owner: str | None = None,
    sources: PolicySources | None = None,
) -> Admission:
    """`job_owner`: who submitted the job the request names (`--job-owner`); None: nobody recorded,
    as for a job submitted around the proxy. `sources`: the policy sources (default: the policy alone)."""

    async def given(_credentials: Credentials) -> Identity:
        return identity

    async def owner(_job: str) -> str | None:
        return job_owner

    return Admission(
        tenant=settings.tenant,
        authenticate=given,
        routes={Transport.HTTP: DEFAULT_TABLE, Transport.GRPC: CLIENT_TABLE},
        authorizer=_Recording((sources or PolicySources(StaticPolicy(policy))).sources),
        max_target_length=settings.limits.max_target_length,
        owners=owner,
    )


def given_identity(email: str, hd: str | None = None, credential: str = "iap") -> Identity:
    """The identity `explain` is asked about, as the credential kind's provider would verify it (the
    Ray token is always the principal `system:ray-token`, whatever the email says)."""
    kind = CredentialKind(credential)
    if kind is CredentialKind.RAY_TOKEN:
        return RAY_TOKEN_IDENTITY
    return Identity(
        email=ascii_lower(email),
        subject="explain",
        kind=kind,
        hosted_domain=ascii_lower(hd) if hd else None,
    )


def facts_for(method: str, target: str) -> Facts:
    """A Ray Client method (`/ray.rpc.…`) is asked as the gRPC listener asks it; anything else as HTTP."""
    if target in CALL_KINDS or target.startswith("/ray.rpc."):
        return Facts(transport=Transport.GRPC, method=CLIENT_METHOD, target=target)
    return Facts(transport=Transport.HTTP, method=method, target=target)


async def explain(
    settings: Settings,
    policy: Policy,
    email: str,
    method: str,
    target: str,
    hd: str | None = None,
    job_owner: str | None = None,
    live: bool = False,
    credential: str = "iap",
) -> dict[str, object]:
    """What `email` would get for `method target` (on a job submitted by `job_owner`). `live`: ask the
    remote policy sources too (the API server, Cloud Identity) with the config's credentials; without
    it they are named as not consulted."""
    identity = given_identity(email, hd, credential)
    job_owner = ascii_lower(job_owner) if job_owner else None  # recorded as principals are: lower-case
    sources = build_sources(settings, policy=policy, watch=False, live=live)
    admission = admission_for(settings, policy, identity, job_owner, sources)
    try:
        facts = facts_for(method, target)
        verdict = await admission.admit(facts)
    finally:
        await sources.close()
    out: dict[str, object] = {
        "identity": identity.email,
        "hosted_domain": identity.hosted_domain,
        "credential": str(identity.kind),
        "tenant": settings.tenant,
        "method": facts.method,
        "target": target,
        "transport": str(facts.transport),
        "route": verdict.route.pattern if verdict.route else None,
        "verb": str(verdict.verb) if verdict.verb else None,
        "decision": str(verdict.outcome),
        "status": _status(facts.transport, verdict.kind),
        "reason": verdict.reason,
        "source": verdict.source,
    }
    decision = admission.authorizer.last if isinstance(admission.authorizer, _Recording) else None
    if decision is not None:
        out["answers"] = [
            {"source": a.source, "opinion": a.opinion.value, "reason": a.reason} for a in decision.answers
        ]
    if sources.not_consulted():
        out["not_consulted"] = sources.not_consulted()
    if verdict.job_id:
        out["job"], out["job_owner"] = verdict.job_id, job_owner
    if verdict.target is not None:
        out["granted_verbs"] = sorted(
            [str(v) for v in policy.verbs_for(identity, settings.tenant)]
            + [f"{v}:own" for v in policy.owned_for(identity, settings.tenant)]
        )
    return out


def _status(transport: Transport, kind: Kind | None) -> int | str:
    """What serve would answer: an HTTP status, or the gRPC listener's status code."""
    if transport is Transport.GRPC:
        return "OK" if kind is None else GRPC_STATUS[kind].name
    return 200 if kind is None else status_for(kind)


async def verbs(
    settings: Settings, policy: Policy, email: str, hd: str | None = None
) -> list[dict[str, object]]:
    """Every verb, and whether `email` holds it in the tenant: asked of the same authorizer `serve`
    asks, so the list says what the requests would get (for routes that are not refused outright)."""
    identity = given_identity(email, hd)
    admission = admission_for(settings, policy, identity)
    table = admission.routes[Transport.HTTP]
    routes = [*table.literal.values(), *(route for _, _, route in table.dynamic)]
    out: list[dict[str, object]] = []
    for verb in Verb:
        decision = await admission.authorizer.decide(Question(identity, settings.tenant, verb))
        out.append(
            {
                "verb": str(verb),
                "allowed": decision.granted,
                "reason": decision.reason,
                "source": decision.source,
                "routes": sum(1 for r in routes if r.verb is verb and r.action is not Action.DENY),
            }
        )
    return out
