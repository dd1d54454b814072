"""The static policy's decisions: a table of identities, tenants and verbs."""

from __future__ import annotations

import pytest
import yaml

from devkit.config import POLICY
from proxy.authz.policy import Policy
from proxy.authz.policy_file import parse_policy
from proxy.model import Identity, Verb

problems: list[str] = []
_P = parse_policy(yaml.safe_load(POLICY), problems)
assert _P is not None, problems
P: Policy = _P


def ident(email: str, hd: str | None = None) -> Identity:
    return Identity(email=email, subject="s", hosted_domain=hd)


def test_fixture_policy_is_valid() -> None:
    assert problems == []


@pytest.mark.parametrize(
    "who, tenant, verb, allowed, reason",
    [
        (
            ident("alice@example.com"),
            "team-a",
            Verb.SUBMIT,
            True,
            "role scientist via user:alice@example.com",
        ),
        (ident("alice@example.com"), "team-a", Verb.DEBUG, False, "not granted by role(s) scientist"),
        (ident("alice@example.com"), "team-b", Verb.VIEW, False, "no role in tenant team-b"),
        (ident("bob@example.com"), "team-a", Verb.VIEW, True, "role viewer"),
        (ident("bob@example.com"), "team-a", Verb.LOGS, False, "viewer"),
        (ident("carol@example.com"), "team-a", Verb.STOP, True, "group:ml-team@example.com"),
        (ident("x@example.org", "example.org"), "team-a", Verb.SUBMIT, True, "domain:example.org"),
        (ident("x@example.org"), "team-a", Verb.VIEW, False, "no role"),
        (ident("ci@p.iam.gserviceaccount.com"), "team-a", Verb.SUBMIT, True, "serviceAccount:"),
        (ident("mallory@example.com"), "team-b", Verb.CLIENT, True, "role admin"),
        (ident("mallory@example.com"), "team-a", Verb.VIEW, False, "no role in tenant team-a"),
        (ident("nobody@example.com"), "team-a", Verb.VIEW, False, "no role"),
    ],
    ids=lambda v: str(v) if not isinstance(v, Identity) else v.email,
)
def test_decisions(who: Identity, tenant: str, verb: Verb, allowed: bool, reason: str) -> None:
    d = P.decide(who, tenant, verb)
    assert d.granted is allowed and reason in d.reason


def test_admin_star_grants_every_verb() -> None:
    assert P.verbs_for(ident("mallory@example.com"), "team-b") == frozenset(Verb)


def test_user_binding_does_not_match_a_service_account_of_the_same_name() -> None:
    problems: list[str] = []
    pol = parse_policy(
        {
            "roles": {"r": ["view"]},
            "bindings": [
                {"tenant": "t", "role": "r", "members": ["serviceAccount:svc@p.iam.gserviceaccount.com"]}
            ],
        },
        problems,
    )
    assert problems == [] and pol is not None
    assert not pol.decide(ident("svc@p.iam.gserviceaccount.com.evil.com"), "t", Verb.VIEW).granted
    assert pol.decide(ident("svc@p.iam.gserviceaccount.com"), "t", Verb.VIEW).granted


def test_the_ray_token_principal_matches_only_its_own_member() -> None:
    from proxy.auth.providers.ray_token import IDENTITY

    assert P.decide(IDENTITY, "team-a", Verb.SUBMIT).granted
    assert "system:ray-token" in P.decide(IDENTITY, "team-a", Verb.SUBMIT).reason
    assert not P.decide(IDENTITY, "team-b", Verb.VIEW).granted
    impostor = Identity(email="system:ray-token", subject="s")  # any other credential kind
    assert not P.decide(impostor, "team-a", Verb.VIEW).granted


@pytest.mark.parametrize("member", ["system:root", "system:", "system:ray_token"])
def test_unknown_system_principals_are_refused(member: str) -> None:
    problems: list[str] = []
    doc = {"roles": {"r": ["view"]}, "bindings": [{"tenant": "t", "role": "r", "members": [member]}]}
    assert parse_policy(doc, problems) is None
    assert any("is not a system principal" in p for p in problems), problems
