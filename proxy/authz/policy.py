"""The static policy, compiled: roles -> verbs, bindings per tenant. Pure: no I/O, no clock. A verb
is granted only when a binding for the tenant names the identity and its role holds the verb."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..model import CredentialKind, Identity, Verb


class MemberKind(enum.Enum):
    USER = "user"
    GROUP = "group"
    DOMAIN = "domain"
    SERVICE_ACCOUNT = "serviceAccount"
    EXTERNAL = "external"  # IAP external identities: an email another provider vouches for, verified
    SYSTEM = "system"  # the proxy's own principals: `system:ray-token`


@dataclass(frozen=True, slots=True)
class Member:
    kind: MemberKind
    value: str  # email, group email or domain, lower-cased in A-Z only

    def matches(self, identity: Identity, groups: Mapping[str, frozenset[str]]) -> bool:
        # `user:`, `serviceAccount:`, `group:` and `domain:` name Google accounts: an external identity
        # (Identity Platform behind IAP) with the same email is someone else's word for it, and
        # matches only `external:` members, with an email its provider verified.
        match self.kind:
            case MemberKind.USER:
                return (
                    not identity.is_external
                    and not identity.is_service_account
                    and identity.email == self.value
                )
            case MemberKind.SERVICE_ACCOUNT:
                return identity.is_service_account and identity.email == self.value
            case MemberKind.EXTERNAL:  # `NAMESPACE:EMAIL` exactly, or `EMAIL` from any namespace
                principal = identity.email if ":" in self.value else identity.email.rpartition(":")[2]
                return identity.is_external and identity.email_verified and principal == self.value
            case MemberKind.GROUP:
                if identity.is_external:
                    return False
                return self.value in identity.groups or identity.email in groups.get(self.value, frozenset())
            case MemberKind.SYSTEM:
                return identity.kind is CredentialKind.RAY_TOKEN and self.value == "ray-token"
            case MemberKind.DOMAIN:
                # The verified hosted-domain claim, never the email's suffix: anyone can own a Google
                # account whose email ends in someone else's domain.
                return not identity.is_external and identity.hosted_domain == self.value
        raise AssertionError(self.kind)  # pragma: no cover - the enum is exhaustive

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.value}"


@dataclass(frozen=True, slots=True)
class Binding:
    tenant: str
    role: str
    members: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class Grant:
    """Whether the policy grants a verb, and why (or why not)."""

    granted: bool
    reason: str
    role: str | None = None
    if_owner: bool = False  # granted only on a job the caller submitted (`stop:own`): see proxy/jobs


# Verbs a role may grant on the caller's own jobs only, as `VERB:own`.
OWNABLE = frozenset({Verb.STOP, Verb.DELETE, Verb.LOGS})


@dataclass(frozen=True, slots=True)
class Policy:
    roles: Mapping[str, frozenset[Verb]]
    groups: Mapping[str, frozenset[str]]
    bindings: tuple[Binding, ...]
    owned: Mapping[str, frozenset[Verb]] = field(default_factory=dict)  # role -> `VERB:own` grants

    def grants(self, identity: Identity, tenant: str) -> list[tuple[str, Member]]:
        """The (role, member) pairs through which `identity` holds a role in `tenant`."""
        return [
            (b.role, m)
            for b in self.bindings
            if b.tenant == tenant
            for m in b.members
            if m.matches(identity, self.groups)
        ]

    def verbs_for(self, identity: Identity, tenant: str) -> frozenset[Verb]:
        verbs: frozenset[Verb] = frozenset()
        for role, _ in self.grants(identity, tenant):
            verbs |= self.roles.get(role, frozenset())
        return verbs

    def owned_for(self, identity: Identity, tenant: str) -> frozenset[Verb]:
        """The verbs `identity` holds only on jobs it submitted (`VERB:own`)."""
        verbs: frozenset[Verb] = frozenset()
        for role, _ in self.grants(identity, tenant):
            verbs |= self.owned.get(role, frozenset())
        return verbs

    def decide(self, identity: Identity, tenant: str, verb: Verb) -> Grant:
        grants = self.grants(identity, tenant)
        for role, member in grants:
            if verb in self.roles.get(role, frozenset()):
                return Grant(True, f"role {role} via {member} grants {verb}", role)
        for role, member in grants:
            if verb in self.owned.get(role, frozenset()):
                return Grant(False, f"role {role} via {member} grants {verb}:own", role, if_owner=True)
        if not grants:
            return Grant(False, f"{identity.email} has no role in tenant {tenant}")
        held = ", ".join(sorted({role for role, _ in grants}))
        return Grant(False, f"verb {verb} is not granted by role(s) {held} in tenant {tenant}")

    def bindings_for(self, tenant: str) -> list[Binding]:
        return [b for b in self.bindings if b.tenant == tenant]


EMPTY_POLICY = Policy(roles={}, groups={}, bindings=())
