"""Google Groups as a policy source, and the groups the proxy knows for an identity.

The policy file declares every group it uses under `groups:` (a list of static members, possibly
empty). With `google_groups` configured, membership is also asked of Cloud Identity (transitively):

- `GoogleGroupsPolicy` ("google-groups") grants a verb when the caller is, in Cloud Identity, a member
  of a group that a binding for this tenant gives a role holding the verb. When Cloud Identity cannot
  tell, it answers "error" for those group-based grants only: the static source (a user's own
  bindings, static members) is asked first and keeps working when the Groups API is down.
- `KnownGroups` is what the Kubernetes RBAC source sends as the review's `groups`: the identity's own,
  the policy's static lists, and Cloud Identity's answer for every group the policy declares.

Both read the policy the static source holds, so a reload changes what they ask about.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from ...model import Identity, Verb
from ..authorizer import Answer, Opinion, Question
from ..policy import MemberKind, Policy
from .cloud_identity import CloudIdentity, Resolution


class HoldsPolicy(Protocol):
    @property
    def policy(self) -> Policy: ...


def granting_groups(policy: Policy, tenant: str, verb: Verb) -> frozenset[str]:
    """The groups a binding for `tenant` gives a role holding `verb`."""
    return frozenset(
        m.value
        for b in policy.bindings_for(tenant)
        if verb in policy.roles.get(b.role, frozenset())
        for m in b.members
        if m.kind is MemberKind.GROUP
    )


class GoogleGroupsPolicy:
    name = "google-groups"
    local = False

    def __init__(self, holder: HoldsPolicy, directory: CloudIdentity) -> None:
        self.holder = holder
        self.directory = directory

    async def decide(self, question: Question) -> Answer:
        policy = self.holder.policy  # one version for the whole answer
        identity, tenant, verb = question.identity, question.tenant, question.verb
        candidates = granting_groups(policy, tenant, verb)
        if not candidates:
            return Answer(self.name, Opinion.NONE, f"no group binding in tenant {tenant} grants {verb}")
        found = await self.directory.resolve(identity.email, candidates)
        if found.member_of:
            member = dataclasses.replace(identity, groups=identity.groups | found.member_of)
            grant = policy.decide(member, tenant, verb)
            if grant.granted:
                return Answer(self.name, Opinion.GRANT, f"{grant.reason} (Cloud Identity membership)")
        if found.unresolved:
            return Answer(self.name, Opinion.ERROR, found.why_unresolved())
        names = ", ".join(f"group:{g}" for g in sorted(candidates))
        return Answer(
            self.name, Opinion.NONE, f"{identity.email} is not a member of {names} (Cloud Identity)"
        )


class KnownGroups:
    def __init__(self, holder: HoldsPolicy, directory: CloudIdentity | None = None) -> None:
        self.holder = holder
        self.directory = directory

    async def of(self, identity: Identity) -> Resolution:
        policy = self.holder.policy
        static = {g for g, members in policy.groups.items() if identity.email in members} | identity.groups
        if self.directory is None:
            return Resolution(frozenset(static))
        found = await self.directory.resolve(identity.email, set(policy.groups) - static)
        return Resolution(found.member_of | static, found.unresolved)
