"""Admission, transport-free: each step's outcome, reason and deciding source, from plain facts."""

from __future__ import annotations

import asyncio

import pytest

from proxy.admit import Admission, Facts
from proxy.auth.extract import Credentials
from proxy.authz.authorizer import Answer, Opinion, Question, Union
from proxy.authz.csrf import BrowserFacts
from proxy.authz.policy import Binding, Member, MemberKind, Policy
from proxy.authz.routes import DEFAULT_TABLE
from proxy.authz.sources.static import StaticPolicy
from proxy.errors import Kind, Unauthenticated, Unavailable
from proxy.model import Identity, Outcome, Transport, Verb

ALICE = Identity("alice@example.com", "s1")
POLICY = Policy(
    roles={"viewer": frozenset({Verb.VIEW})},
    groups={},
    bindings=(Binding("team-a", "viewer", (Member(MemberKind.USER, "alice@example.com"),)),),
)


def admission(authenticate=None, sources=None) -> Admission:  # type: ignore[no-untyped-def]
    async def alice(_c: Credentials) -> Identity:
        return ALICE

    return Admission(
        tenant="team-a",
        authenticate=authenticate or alice,
        routes={Transport.HTTP: DEFAULT_TABLE},
        authorizer=Union(sources if sources is not None else [StaticPolicy(POLICY)]),
        max_target_length=4096,
    )


def admit(facts: Facts, adm: Admission | None = None):  # type: ignore[no-untyped-def]
    return asyncio.run((adm or admission()).admit(facts))


def http(method: str, target: str, **kw) -> Facts:  # type: ignore[no-untyped-def]
    return Facts(Transport.HTTP, method, target, **kw)


@pytest.mark.parametrize(
    "method, target, outcome, kind, source, reason",
    [
        ("GET", "/api/jobs/", Outcome.ALLOW, None, "static", "role viewer via user:alice@example.com"),
        ("POST", "/api/jobs/", Outcome.DENY, Kind.FORBIDDEN, "static", "verb submit is not granted"),
        ("GET", "/api/./jobs/", Outcome.MALFORMED, Kind.MALFORMED, "target", "dot segment"),
        ("GET", "/" + "a" * 5000, Outcome.MALFORMED, Kind.TARGET_TOO_LONG, "target", "longer than"),
        ("GET", "/nope", Outcome.DENY, Kind.FORBIDDEN, "routes", "not a known Ray route"),
        ("GET", "/test/dump", Outcome.DENY, Kind.FORBIDDEN, "routes", "internal to Ray"),
    ],
    ids=lambda v: str(v),
)
def test_each_step(
    method: str, target: str, outcome: Outcome, kind: Kind | None, source: str, reason: str
) -> None:
    v = admit(http(method, target))
    assert (v.outcome, v.kind, v.source) == (outcome, kind, source) and reason in v.reason


def test_a_refusal_says_what_was_known_so_far() -> None:
    v = admit(http("POST", "/api/jobs/?x=1"))
    assert v.identity == ALICE and v.route is not None and v.verb is Verb.SUBMIT
    assert v.target is not None and v.target.query == "x=1"
    malformed = admit(http("GET", "//x"))
    assert malformed.identity is None and malformed.route is None


@pytest.mark.parametrize(
    "error, outcome",
    [
        (Unauthenticated("invalid IAP assertion: expired"), Outcome.UNAUTHENTICATED),
        (Unavailable("IAP key set not loaded"), Outcome.UNAVAILABLE),
    ],
)
def test_authentication_failures(error: Exception, outcome: Outcome) -> None:
    async def fail(_c: Credentials) -> Identity:
        raise error

    v = admit(http("GET", "/api/jobs/"), admission(authenticate=fail))
    assert v.outcome is outcome and v.source == "authn" and v.reason == str(error)


def test_a_bug_refuses_and_never_allows() -> None:
    async def broken(_c: Credentials) -> Identity:
        raise KeyError("bug")

    v = admit(http("GET", "/api/jobs/"), admission(authenticate=broken))
    assert v.kind is Kind.INTERNAL and not v.allowed and "bug" not in v.reason


def test_cross_site_is_refused_with_a_hint_and_only_for_browsers() -> None:
    evil = BrowserFacts(None, "https://evil.example", "ray.example.com")
    v = admit(http("POST", "/api/jobs/", browser=evil))
    assert v.kind is Kind.FORBIDDEN and v.source == "cross-site" and v.hint
    assert admit(http("GET", "/api/jobs/", browser=evil)).allowed  # a navigation is fine
    tail = "/api/jobs/raysubmit_1/logs/tail"
    ws = admit(http("GET", tail, browser=evil, wants_upgrade=True))
    assert ws.kind is Kind.FORBIDDEN and ws.upgrade


def test_an_upgrade_counts_only_on_a_websocket_route() -> None:
    assert not admit(http("GET", "/api/jobs/", wants_upgrade=True)).upgrade


def test_no_source_grants_nothing() -> None:
    v = admit(http("GET", "/api/jobs/"), admission(sources=[]))
    assert v.kind is Kind.FORBIDDEN and "no policy source" in v.reason


class Failing:
    name, local = "broken", False

    async def decide(self, question: Question) -> Answer:
        raise ConnectionError("down")


class Granting:
    name, local = "rbac", False

    async def decide(self, question: Question) -> Answer:
        return Answer(self.name, Opinion.GRANT, f"rbac grants {question.verb}")


def test_union_any_grant_allows_and_errors_never_do() -> None:
    both = admit(http("POST", "/api/jobs/"), admission(sources=[StaticPolicy(POLICY), Granting()]))
    assert both.allowed and both.source == "rbac"
    failing = admit(http("POST", "/api/jobs/"), admission(sources=[StaticPolicy(POLICY), Failing()]))
    assert failing.kind is Kind.FORBIDDEN and "static: verb submit" in failing.reason
    assert "broken: broken failed (ConnectionError)" in failing.reason
    only_failing = admit(http("GET", "/api/jobs/"), admission(sources=[Failing()]))
    assert only_failing.kind is Kind.UNAVAILABLE  # nobody could decide: retry, still refused


def test_grpc_facts_never_match_the_http_table() -> None:
    v = admit(Facts(Transport.GRPC, "POST", "/api/jobs/"))
    assert v.kind is Kind.FORBIDDEN and v.source == "routes"
