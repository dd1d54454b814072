"""Policy decisions, header hygiene and the cross-site rule: pure functions, tables of cases."""

from __future__ import annotations

import pytest
import yaml

from proxy.authz.csrf import cross_site_reason
from proxy.config import parse_policy
from proxy.model import Identity, Verb
from proxy.upstream.headers import filter_cookie, iap_headers, request_headers, response_headers
from tests.support import POLICY

P = parse_policy(yaml.safe_load(POLICY), problems := [])  # noqa: F841 - problems checked below


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
    assert d.allowed is allowed and reason in d.reason


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
    assert problems == []
    assert not pol.decide(ident("svc@p.iam.gserviceaccount.com.evil.com"), "t", Verb.VIEW).allowed
    assert pol.decide(ident("svc@p.iam.gserviceaccount.com"), "t", Verb.VIEW).allowed


# --- headers -------------------------------------------------------------------------------------

SPELLINGS = [
    "Authorization",
    "AUTHORIZATION",
    "authorization",
    "Proxy-Authorization",
    "X-Ray-Authorization",
    "x_ray_authorization",
    "X-RAY_AUTHORIZATION",
    "X-Goog-Iap-Jwt-Assertion",
    "x-goog-authenticated-user-email",
    "X_Goog_Authenticated_User_Id",
    "X-Forwarded-User",
    "X-Forwarded-For",
    "Forwarded",
    "X-Original-URL",
    "X-Rewrite-Url",
    "X-HTTP-Method-Override",
    "Connection",
    "Upgrade",
    "Transfer-Encoding",
    "TE",
    "Keep-Alive",
    "Host",
    "Content-Length",
    "X-Authenticated-User",
    "x-remote-user",
]


@pytest.mark.parametrize("name", SPELLINGS)
def test_credentials_identity_and_hop_by_hop_never_forwarded(name: str) -> None:
    out = request_headers([(name, "v"), ("Accept", "application/json")], ray_token=None)
    assert out == [("Accept", "application/json")]


def test_headers_named_in_connection_are_dropped() -> None:
    out = request_headers([("Connection", "close, X-Secret"), ("X-Secret", "1"), ("X-Keep", "2")], None)
    assert out == [("X-Keep", "2")]


def test_ray_token_is_injected_once() -> None:
    out = request_headers([("X-Ray-Authorization", "Bearer forged")], ray_token="t0k")
    assert out == [("X-Ray-Authorization", "Bearer t0k")]


@pytest.mark.parametrize(
    "cookie, kept",
    [
        ("ray-authentication-token=x", None),
        ("a=1; ray-authentication-token=x; b=2", "a=1; b=2"),
        ("GCP_IAP_UID=1; __Host-GCP_IAP_AUTH_TOKEN_ABC=2; GCP_IAP_XSRF_NONCE_x=3", None),
        ("Ray-Authentication-Token=x;theme=dark", "theme=dark"),
        ("theme=dark", "theme=dark"),
    ],
)
def test_credential_cookies_are_removed(cookie: str, kept: str | None) -> None:
    assert filter_cookie(cookie) == kept


def test_response_drops_hop_by_hop_and_ray_cookie() -> None:
    out = response_headers(
        [
            ("Content-Type", "text/plain"),
            ("Transfer-Encoding", "chunked"),
            ("Set-Cookie", "ray-authentication-token=abc; HttpOnly"),
            ("Set-Cookie", "theme=dark"),
            ("Connection", "keep-alive"),
        ]
    )
    assert out == [("Content-Type", "text/plain"), ("Set-Cookie", "theme=dark")]


def test_dev_iap_replaces_client_assertions_and_keeps_host() -> None:
    out = iap_headers(
        [
            ("Host", "ray.example.com"),
            ("X-Goog-Iap-Jwt-Assertion", "forged"),
            ("x_goog_iap_jwt_assertion", "forged2"),
        ],
        "signed",
    )
    assert out == [("Host", "ray.example.com"), ("x-goog-iap-jwt-assertion", "signed")]


# --- cross-site ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, headers, host, refused",
    [
        ("GET", {"Origin": "https://evil.example"}, "ray.example.com", False),
        ("POST", {}, "ray.example.com", False),  # CLI and SDK send no provenance
        ("POST", {"Origin": "https://ray.example.com"}, "ray.example.com", False),
        ("POST", {"Origin": "https://ray.example.com:443"}, "ray.example.com", False),
        ("POST", {"Origin": "https://evil.example"}, "ray.example.com", True),
        ("POST", {"Origin": "https://ray-team-b.example.com"}, "ray-team-a.example.com", True),
        ("POST", {"Origin": "null"}, "ray.example.com", True),
        ("DELETE", {"Sec-Fetch-Site": "cross-site"}, "ray.example.com", True),
        ("PUT", {"Sec-Fetch-Site": "same-site"}, "ray.example.com", True),
        (
            "POST",
            {"Sec-Fetch-Site": "same-origin", "Origin": "https://ray.example.com"},
            "ray.example.com",
            False,
        ),
        ("POST", {"Sec-Fetch-Site": "none"}, "ray.example.com", False),
        ("POST", {"Origin": "http://127.0.0.1:8080"}, "127.0.0.1:8080", False),
        ("POST", {"Origin": "http://127.0.0.1:8081"}, "127.0.0.1:8080", True),
        ("POST", {"Origin": "http://127.0.0.1:8080"}, "127.0.0.1", True),
        ("POST", {"Origin": "javascript:alert(1)"}, "ray.example.com", True),
    ],
)
def test_cross_site(method: str, headers: dict[str, str], host: str, refused: bool) -> None:
    assert (cross_site_reason(method, headers, host) is not None) is refused
