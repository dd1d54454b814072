"""`explain`: what serve would answer one identity for one request, decided by the very same
admission, without any network. Only authentication differs: the identity is given, not verified."""

from __future__ import annotations

from ..admit import Admission, Facts
from ..auth.extract import Credentials
from ..authz.authorizer import Union
from ..authz.policy import Policy
from ..authz.routes import DEFAULT_TABLE
from ..authz.sources.static import StaticPolicy
from ..http.status import status_for
from ..model import CredentialKind, Identity, Transport
from ..settings import Settings


def admission_for(settings: Settings, policy: Policy, identity: Identity) -> Admission:
    async def given(_credentials: Credentials) -> Identity:
        return identity

    return Admission(
        tenant=settings.tenant,
        authenticate=given,
        routes={Transport.HTTP: DEFAULT_TABLE},
        authorizer=Union([StaticPolicy(policy)]),
        max_target_length=settings.limits.max_target_length,
    )


async def explain(
    settings: Settings, policy: Policy, email: str, method: str, target: str, hd: str | None = None
) -> dict[str, object]:
    """What `email` would get for `method target`."""
    identity = Identity(
        email=email.lower(),
        subject="explain",
        kind=CredentialKind.IAP,
        hosted_domain=hd.lower() if hd else None,
    )
    verdict = await admission_for(settings, policy, identity).admit(
        Facts(transport=Transport.HTTP, method=method, target=target)
    )
    out: dict[str, object] = {
        "identity": identity.email,
        "hosted_domain": identity.hosted_domain,
        "credential": str(identity.kind),
        "tenant": settings.tenant,
        "method": method,
        "target": target,
        "route": verdict.route.pattern if verdict.route else None,
        "verb": str(verdict.verb) if verdict.verb else None,
        "decision": str(verdict.outcome),
        "status": 200 if verdict.kind is None else status_for(verdict.kind),
        "reason": verdict.reason,
        "source": verdict.source,
    }
    if verdict.target is not None:
        out["granted_verbs"] = sorted(str(v) for v in policy.verbs_for(identity, settings.tenant))
    return out
