"""Warnings about a config that loads but will not do what its author wants: `check-config` prints
them, `serve` logs them at start-up. Problems that make a config unusable are errors in
`settings/load.py`; these are the cases a person may mean (a placeholder audience before the load
balancer exists, a policy that binds nobody here yet)."""

from __future__ import annotations

from ..authz.policy import Policy
from ..settings import Settings
from ..settings.audiences import HOW_TO_FIND, placeholder_reason
from ..settings.load import POLICY_SOURCES


def warnings(settings: Settings, policy: Policy) -> list[str]:
    out = []
    for i, audience in enumerate(settings.iap.audiences):
        if why := placeholder_reason(audience):
            out.append(
                f"iap.audiences[{i}]: {audience!r} {why}: until it is this load balancer's backend "
                f"service, every request through IAP gets 401 wrong audience; {HOW_TO_FIND}"
            )
    others = [key for key in POLICY_SOURCES if key != "policy_file" and getattr(settings, key, None)]
    if settings.policy_file is not None and not policy.bindings_for(settings.tenant) and not others:
        out.append(f"no binding names tenant {settings.tenant}: every request will be refused")
    for i, role in enumerate(settings.jobs.reveal_secrets_to_roles):
        if role not in policy.roles:
            out.append(
                f"jobs.reveal_secrets_to_roles[{i}]: {role!r} is not a role of the policy file: "
                "nobody reads job secrets back through it"
            )
    return out
