"""Owner-scoped grants: the policy file's `VERB:own`, the compiled policy, and the decision on a job."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from proxy.authz.authorizer import Opinion, Question
from proxy.authz.policy import Grant
from proxy.authz.policy_file import parse_policy
from proxy.authz.sources.static import StaticPolicy
from proxy.jobs.ownership import (
    RAY_TOKEN_PRINCIPAL,
    JobRef,
    OwnerUnknown,
    owned_grant,
    owner_from_answer,
    principal,
)
from proxy.model import CredentialKind, Identity, Verb

POLICY = yaml.safe_load(
    """
roles:
  scientist: [view, submit, logs:own, stop:own, delete:own]
  lead: [view, submit, logs, stop, delete]
  both: [stop, stop:own]
bindings:
  - {tenant: team-a, role: scientist, members: ["user:ana@example.com", "user:ben@example.com"]}
  - {tenant: team-a, role: lead, members: ["user:lea@example.com"]}
  - {tenant: team-a, role: both, members: ["user:bo@example.com"]}
"""
)


def policy() -> Any:
    problems: list[str] = []
    compiled = parse_policy(POLICY, problems)
    assert compiled is not None, problems
    return compiled


def who(email: str, **kw: Any) -> Identity:
    return Identity(email=email, subject="s", **kw)


def test_scoped_verbs_compile_apart_from_unscoped_ones() -> None:
    p = policy()
    assert p.roles["scientist"] == {Verb.VIEW, Verb.SUBMIT}
    assert p.owned["scientist"] == {Verb.LOGS, Verb.STOP, Verb.DELETE}
    assert p.owned["lead"] == frozenset() and Verb.STOP in p.roles["lead"]
    assert p.owned_for(who("ana@example.com"), "team-a") == {Verb.LOGS, Verb.STOP, Verb.DELETE}


@pytest.mark.parametrize(
    "verbs, problem",
    [
        (["view:own"], "roles.r[0]: 'view:own' cannot be scoped to the caller's own jobs (only delete:own"),
        (["submit:own"], "roles.r[0]: 'submit:own' cannot be scoped"),
        (["stop:mine"], "roles.r[0]: 'stop:mine' is not a verb (known: view"),
        (["view", "*:own"], "roles.r[1]: '*:own' cannot be scoped"),
    ],
)
def test_bad_scopes_are_named(verbs: list[str], problem: str) -> None:
    problems: list[str] = []
    assert parse_policy({"roles": {"r": verbs}}, problems) is None
    assert any(p.startswith(problem) for p in problems), problems


@pytest.mark.parametrize(
    "email, verb, granted, if_owner, reason",
    [
        (
            "ana@example.com",
            Verb.STOP,
            False,
            True,
            "role scientist via user:ana@example.com grants stop:own",
        ),
        ("ana@example.com", Verb.LOGS, False, True, "grants logs:own"),
        ("ana@example.com", Verb.SUBMIT, True, False, "grants submit"),
        ("lea@example.com", Verb.STOP, True, False, "role lead via user:lea@example.com grants stop"),
        ("bo@example.com", Verb.STOP, True, False, "grants stop"),  # the unscoped grant wins
        ("nobody@example.com", Verb.STOP, False, False, "has no role"),
    ],
)
def test_decide_says_when_only_the_owner_may(
    email: str, verb: Verb, granted: bool, if_owner: bool, reason: str
) -> None:
    g = policy().decide(who(email), "team-a", verb)
    assert (g.granted, g.if_owner) == (granted, if_owner) and reason in g.reason


def fixed(owner: str | None) -> Any:
    async def lookup(_raw: str) -> str | None:
        return owner

    return lookup


SCOPED = Grant(False, "role scientist via user:ana@example.com grants stop:own", "scientist", if_owner=True)


@pytest.mark.parametrize(
    "owner, caller, granted, reason",
    [
        (
            "ana@example.com",
            "ana@example.com",
            True,
            "grants stop:own: job j1 was submitted by ana@example.com",
        ),
        ("ben@example.com", "ana@example.com", False, "but job j1 was submitted by ben@example.com"),
        (None, "ana@example.com", False, "but job j1 has no recorded submitter"),
        ("Ana@example.com", "ana@example.com", False, "submitted by Ana@example.com"),  # exact, no folding
        ("ana@exampl\u212a.com", "ana@example.com", False, "submitted by"),
        (RAY_TOKEN_PRINCIPAL, RAY_TOKEN_PRINCIPAL, True, "by system:ray-token"),
    ],
    ids=["own", "colleague", "no-owner", "case", "kelvin", "ray-token"],
)
async def test_owned_grant(owner: str | None, caller: str, granted: bool, reason: str) -> None:
    g = await owned_grant(SCOPED, caller, JobRef("j1", fixed(owner)))
    assert g.granted is granted and reason in g.reason


async def test_a_scoped_grant_on_a_route_naming_no_job_grants_nothing() -> None:
    g = await owned_grant(SCOPED, "ana@example.com", None)
    assert not g.granted and "no job is named" in g.reason


async def test_the_owner_is_asked_once_per_request_and_only_when_needed() -> None:
    asked: list[str] = []

    async def lookup(raw: str) -> str | None:
        asked.append(raw)
        return "ana@example.com"

    job = JobRef("my%20run", lookup)
    assert job.id == "my run"
    source = StaticPolicy(policy())
    lea = await source.decide(Question(who("lea@example.com"), "team-a", Verb.STOP, job=job))
    assert lea.opinion is Opinion.GRANT and asked == []  # the unscoped grant needs no owner
    for _ in range(2):
        ana = await source.decide(Question(who("ana@example.com"), "team-a", Verb.STOP, job=job))
        assert ana.opinion is Opinion.GRANT
    assert asked == ["my%20run"]


async def test_an_owner_ray_cannot_tell_is_an_error_with_the_reason() -> None:
    async def down(_raw: str) -> str | None:
        raise OwnerUnknown("Ray could not be asked who submitted job j1 (Ray is not reachable)")

    answer = await StaticPolicy(policy()).decide(
        Question(who("ana@example.com"), "team-a", Verb.STOP, job=JobRef("j1", down))
    )
    assert answer.opinion is Opinion.ERROR
    assert answer.reason == (
        "role scientist via user:ana@example.com grants stop:own, but Ray could not be asked who "
        "submitted job j1 (Ray is not reachable)"
    )
    none = await StaticPolicy(policy()).decide(
        Question(who("ana@example.com"), "team-a", Verb.STOP, job=JobRef("j1", None))
    )
    assert none.opinion is Opinion.ERROR and "cannot be looked up here" in none.reason


def job(type_: str = "SUBMISSION", **metadata: object) -> bytes:
    return json.dumps({"type": type_, "submission_id": "j1", "metadata": metadata}).encode()


@pytest.mark.parametrize(
    "status, body, expected",
    [
        (200, job(submitted_by="ana@example.com", team="x"), (True, "ana@example.com")),
        (200, job(), (True, None)),
        (200, job(submitted_by=""), (True, None)),
        (200, job(submitted_by=7), (True, None)),
        (200, job("DRIVER", submitted_by="ana@example.com"), (True, None)),  # a script's own claim
        (200, json.dumps({"type": "SUBMISSION", "metadata": None}).encode(), (True, None)),
        (404, b"Job j1 does not exist", (False, None)),
    ],
    ids=["owner", "none", "empty", "not-a-string", "driver-job", "null-metadata", "missing"],
)
def test_owner_from_answer(status: int, body: bytes, expected: tuple[bool, str | None]) -> None:
    assert owner_from_answer("j1", status, body) == expected


@pytest.mark.parametrize(
    "status, body, why",
    [
        (500, b"Traceback ...", "Ray answered 500 when asked who submitted job j1"),
        (401, b"", "Ray answered 401"),
        (200, b"<html>", "is not a job"),
        (200, b"[]", "is not a job"),
    ],
)
def test_answers_that_are_not_a_job_are_unknown(status: int, body: bytes, why: str) -> None:
    with pytest.raises(OwnerUnknown) as err:
        owner_from_answer("j1", status, body)
    assert why in err.value.reason


@pytest.mark.parametrize(
    "identity, expected",
    [
        (who("ana@example.com"), "ana@example.com"),
        (who("ci@p.iam.gserviceaccount.com"), "ci@p.iam.gserviceaccount.com"),
        (who("ray", kind=CredentialKind.RAY_TOKEN), "system:ray-token"),
        (
            who("securetoken.google.com/p:ana@example.com", identity_source="GCIP"),
            "securetoken.google.com/p:ana@example.com",
        ),
        (
            who("securetoken.google.com/p:ana@example.com", identity_source="GCIP", email_verified=False),
            "unverified:securetoken.google.com/p:ana@example.com:s",
        ),
    ],
    ids=["user", "service-account", "ray-token", "external", "external-unverified"],
)
def test_principal(identity: Identity, expected: str) -> None:
    assert principal(identity) == expected
