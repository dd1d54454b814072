"""Whose identity: an IAP external identity (Identity Platform) carries an email another provider
vouches for; it never passes for the Google account of the same address (`user:`, `group:`,
`domain:`, `serviceAccount:`), only for the policy's `external:` members, and only when verified.
Emails are compared without Unicode case folding, and refused when not plain ASCII unless allowed."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
import yaml

from devkit.config import POLICY, ROOT
from devkit.ray_double import ASSERTION, PASS, RayDouble
from devkit.records import AccessRecords
from proxy import dev
from proxy.auth.verify import Rules, identity_from_claims
from proxy.authz.policy import Policy
from proxy.authz.policy_file import parse_policy
from proxy.errors import ConfigError
from proxy.model import CredentialKind, Verb

PROJECT = "securetoken.google.com/iap-external-ids"


def policy(text: str) -> Policy:
    problems: list[str] = []
    compiled = parse_policy(yaml.safe_load(text), problems)
    if compiled is None:
        raise ConfigError(problems)
    return compiled


def gcip(email: str, verified: bool = True, project: str = PROJECT, **over: Any) -> dict[str, Any]:
    """The claims IAP signs for an Identity Platform user (shape of a real decoded assertion)."""
    claims: dict[str, Any] = {
        "identity_source": "GCIP",
        "email": f"{project}:{email}",
        "sub": f"{project}:MWhfgdkelqbZFaO5CNtpt2eiY682",
        "gcip": {
            "email": email,
            "email_verified": verified,
            "firebase": {"sign_in_provider": "oidc.okta", "tenant": "t-1"},
            "sub": "MWhfgdkelqbZFaO5CNtpt2eiY682",
        },
    }
    claims.update(over)
    return claims


def test_dev_mint_signs_what_iap_signs_for_a_google_account(signing_key: Any) -> None:
    claims = jwt.decode(dev.mint(signing_key, "alice@example.com"), options={"verify_signature": False})
    assert claims["identity_source"] == "GOOGLE" and "gcip" not in claims
    assert claims["sub"].startswith("accounts.google.com:") and claims["email"] == "alice@example.com"


# Every way an assertion can say "not a Google account": none may match a Google binding.
EXTERNAL = {
    "gcip-user": lambda email: gcip(email),
    "gcip-claim-only": lambda email: {"gcip": {"email": email, "email_verified": True}},
    "identity-source-only": lambda email: {"identity_source": "GCIP"},
    "workforce": lambda email: {"identity_source": "WORKFORCE_IDENTITY"},
    "email-prefix-only": lambda email: {"email": f"{PROJECT}:{email}"},
    "sub-prefix-only": lambda email: {"sub": f"{PROJECT}:uid"},
    "google-source-with-gcip-claim": lambda email: {**gcip(email), "identity_source": "GOOGLE"},
}


@pytest.mark.parametrize("claims", EXTERNAL.values(), ids=EXTERNAL.keys())
@pytest.mark.parametrize(
    "email, binding",
    [
        ("alice@example.com", "user:alice@example.com"),
        ("carol@example.com", "group:ml-team@example.com"),
        ("ci@p.iam.gserviceaccount.com", "serviceAccount:ci@p.iam.gserviceaccount.com"),
        (ROOT, "user:root@example.com (admin)"),
    ],
)
async def test_an_external_identity_never_matches_a_google_binding(
    proxy: Any, ray: RayDouble, mint: Any, claims: Any, email: str, binding: str
) -> None:
    r = await proxy.get("/api/jobs/", headers={ASSERTION: mint(email, claims=claims(email))})
    assert r.status == 403, binding
    assert "has no role in tenant team-a" in (await r.json())["reason"]
    assert ray.hits == []


async def test_an_external_identity_never_matches_a_domain_binding(
    proxy: Any, ray: RayDouble, mint: Any
) -> None:
    """`domain:example.org` is the verified hosted domain of a Google account; not an external user's."""
    r = await proxy.get(
        "/api/jobs/",
        headers={ASSERTION: mint("eve@example.org", hd="example.org", claims=gcip("eve@example.org"))},
    )
    assert r.status == 403
    r = await proxy.get(
        "/api/jobs/", headers={ASSERTION: mint("eve@example.org", hd="example.org", **{}), **PASS}
    )
    assert r.status == 200  # the Google account of the domain does match
    assert len(ray.hits) == 1


EXTERNAL_POLICY = (
    POLICY
    + """\
  - tenant: team-a
    role: scientist
    members:
      - "external:dave@partner.example"
      - "external:securetoken.google.com/other-project:erin@partner.example"
"""
)


async def test_external_members_grant_verified_external_identities_only(
    make_proxy: Any, ray: RayDouble, mint: Any, access_records: AccessRecords
) -> None:
    proxy = await make_proxy(policy=policy(EXTERNAL_POLICY), access_log=access_records)

    async def status(email: str, claims: dict[str, Any] | None, mark: bool = False) -> int:
        headers = {ASSERTION: mint(email, claims=claims), **(PASS if mark else {})}
        return (await proxy.get("/api/jobs/", headers=headers)).status

    assert await status("dave@partner.example", gcip("dave@partner.example"), mark=True) == 200
    assert access_records.last()["principal"] == f"{PROJECT}:dave@partner.example"
    assert await status("dave@partner.example", gcip("dave@partner.example", verified=False)) == 403
    assert await status("dave@partner.example", None) == 403  # the Google account of that address
    assert (
        await status("dave@partner.example", {"identity_source": "WORKFORCE_IDENTITY"}) == 403
    )  # unverified
    # a namespaced member names one Identity Platform project only
    erin_other = gcip("erin@partner.example", project="securetoken.google.com/other-project")
    assert await status("erin@partner.example", erin_other, mark=True) == 200
    assert await status("erin@partner.example", gcip("erin@partner.example")) == 403
    assert len(ray.hits) == 2


@pytest.mark.parametrize(
    "member, problem",
    [
        ("external:not-an-email", "is not an email address, or NAMESPACE:EMAIL"),
        ("external:Bad Namespace:x@y.example", "is not an email address, or NAMESPACE:EMAIL"),
        ("externals:x@y.example", "has unknown kind"),
    ],
)
def test_bad_external_members_are_refused(member: str, problem: str) -> None:
    text = POLICY + f'  - tenant: team-a\n    role: viewer\n    members: ["{member}"]\n'
    with pytest.raises(ConfigError) as err:
        policy(text)
    assert any(problem in p for p in err.value.problems), err.value.problems


@pytest.mark.parametrize(
    "claims, reason",
    [
        ({"identity_source": 7}, "claim identity_source is not a string"),
        ({"identity_source": ""}, "claim identity_source is not a string"),
        (
            {"identity_source": "GCIP", "gcip": {"email": "no-at-sign", "email_verified": True}},
            "external identity without a usable email",
        ),
        (
            {"email": "evil:alice@example.com"},
            "claim email missing or malformed",
        ),  # a Google address never has a `:`
    ],
)
async def test_malformed_identity_claims_are_401(
    proxy: Any, ray: RayDouble, mint: Any, claims: dict[str, Any], reason: str
) -> None:
    r = await proxy.get("/api/jobs/", headers={ASSERTION: mint("alice@example.com", claims=claims)})
    assert r.status == 401 and reason in (await r.json())["reason"]
    assert ray.hits == []


# -- no Unicode folding; ASCII unless allowed --------------------------------------------------------

KELVIN = "\u212a"  # KELVIN SIGN: str.lower() makes it "k"


@pytest.mark.parametrize(
    "email",
    [
        f"{KELVIN}ate@example.com",  # would fold to kate@example.com
        "ALİCE@example.com",  # U+0130: would fold to "ali̇ce"
        "alice@ex\u0430mple.com",  # a Cyrillic a
        "alice@example.com\u200b",  # a zero-width space
        f"alice@{PROJECT}.ex{KELVIN}",
    ],
)
async def test_an_email_that_is_not_plain_ascii_is_401_by_default(
    proxy: Any, ray: RayDouble, mint: Any, email: str
) -> None:
    for claims in (None, gcip(email)):
        r = await proxy.get("/api/jobs/", headers={ASSERTION: mint(email, claims=claims)})
        assert r.status == 401 and "not plain ASCII" in (await r.json())["reason"]
    assert ray.hits == []


KATE_POLICY = (
    POLICY
    + f"""\
  - tenant: team-a
    role: viewer
    members: ["user:{KELVIN}ate@example.com", "user:Kate@Example.com"]
"""
)


def test_emails_are_compared_without_unicode_folding() -> None:
    """With non-ASCII emails allowed, the look-alike stays itself: it neither becomes kate nor
    matches her binding, and kate does not match the look-alike's."""
    rules = Rules(
        kind=CredentialKind.IAP,
        algorithm="ES256",
        issuers=frozenset({"https://cloud.google.com/iap"}),
        audiences=frozenset({"aud"}),
        leeway_seconds=30,
        max_lifetime_seconds=600,
        allow_non_ascii_email=True,
    )

    def who(email: str) -> Any:
        claims = {"iss": "https://cloud.google.com/iap", "aud": "aud", "iat": 1000, "exp": 1600}
        return identity_from_claims({**claims, "email": email, "sub": "accounts.google.com:1"}, rules, 1100)

    look_alike = policy(KATE_POLICY.replace("user:Kate@Example.com", "user:zed@example.com"))
    assert who(f"{KELVIN}ATE@example.com").email == f"{KELVIN}ate@example.com"
    assert not look_alike.decide(who("kate@example.com"), "team-a", Verb.VIEW).granted
    assert look_alike.decide(who(f"{KELVIN}ate@EXAMPLE.com"), "team-a", Verb.VIEW).granted
    kate = policy(KATE_POLICY.replace(f"user:{KELVIN}ate@example.com", "user:zed@example.com"))
    assert not kate.decide(who(f"{KELVIN}ate@example.com"), "team-a", Verb.VIEW).granted


async def test_ascii_case_still_does_not_matter(make_proxy: Any, ray: RayDouble, mint: Any) -> None:
    proxy = await make_proxy(policy=policy(KATE_POLICY))
    for email in ("KATE@EXAMPLE.COM", "kate@example.com", "Kate@Example.Com"):
        assert (await proxy.get("/api/jobs/", headers={ASSERTION: mint(email), **PASS})).status == 200
    assert len(ray.hits) == 3


def test_allow_non_ascii_emails_is_a_boolean(tmp_path: Any) -> None:
    from devkit.config import write_hardening_config
    from proxy.settings import load

    cfg = write_hardening_config(tmp_path, "http://127.0.0.1:1/j", "http://127.0.0.1:2")
    cfg.write_text(
        cfg.read_text().replace(
            "  key_min_refetch_seconds: 1\n",
            '  key_min_refetch_seconds: 1\n  allow_non_ascii_emails: "yes"\n',
        )
    )
    with pytest.raises(ConfigError) as err:
        load(cfg)
    assert any(p.startswith("iap.allow_non_ascii_emails: ") for p in err.value.problems), err.value.problems
