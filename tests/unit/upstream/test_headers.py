"""Header hygiene, pure: what reaches Ray, what reaches the client, what dev-iap passes on."""

from __future__ import annotations

import pytest

from proxy.upstream.headers import filter_cookie, iap_headers, request_headers, response_headers

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


def test_names_a_client_invents_do_not_grow_the_normalized_memo() -> None:
    from proxy.upstream import headers

    for i in range(2 * headers._NORMS_MAX):
        assert headers.norm(f" X_Made_Up_{i} ") == f"x-made-up-{i}"
    long_name = "X_" + "a" * 200
    assert headers.norm(long_name) == "x-" + "a" * 200
    assert len(headers._NORMS) <= headers._NORMS_MAX and long_name not in headers._NORMS
    assert headers.norm("Authorization") == "authorization"  # still right once the memo is full
