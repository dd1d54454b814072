"""The static policy (a file of roles and bindings) as a source. It holds the current `Policy`; a
reload swaps it whole, so each request is decided under one version of it."""

from __future__ import annotations

import hashlib

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
        self.digest = hashlib.sha256(text).hexdigest()[:12] if text else ""

    async def decide(self, question: Question) -> Answer:
        grant = self.policy.decide(question.identity, question.tenant, question.verb)
        return Answer(self.name, Opinion.GRANT if grant.granted else Opinion.NONE, grant.reason)
