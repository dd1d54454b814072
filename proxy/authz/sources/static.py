"""The static policy (a file of roles and bindings) as a source. It holds the current `Policy`; a
reload swaps it whole, so each request is decided under one version of it."""

from __future__ import annotations

import hashlib

from ...jobs.ownership import OwnerUnknown, owned_grant, principal
from ..authorizer import Answer, Opinion, Question
from ..policy import EMPTY_POLICY, Policy


class StaticPolicy:
    name = "static"
    local = True

    def __init__(self, policy: Policy = EMPTY_POLICY, digest: str = "") -> None:
        self.policy = policy
        self.digest = digest  # short hash of the text it came from, for logs and metrics

    def replace(self, policy: Policy, text: bytes = b"") -> None:
        self.policy = policy
        self.digest = short_digest(text) if text else ""

    async def decide(self, question: Question) -> Answer:
        grant = self.policy.decide(question.identity, question.tenant, question.verb)
        if grant.if_owner:  # `stop:own` and the like: only the job's submitter (asks Ray, once)
            try:
                grant = await owned_grant(grant, principal(question.identity), question.job)
            except OwnerUnknown as exc:
                return Answer(self.name, Opinion.ERROR, f"{grant.reason}, but {exc.reason}")
        return Answer(self.name, Opinion.GRANT if grant.granted else Opinion.NONE, grant.reason)


def short_digest(text: bytes) -> str:
    """The version of a policy text, for logs and metrics: the first 12 hex digits of its SHA-256."""
    return hashlib.sha256(text).hexdigest()[:12]
