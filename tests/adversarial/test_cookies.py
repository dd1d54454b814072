"""Credential cookies in every form: IAP's whole sign-in family (`GCP_IAP_UID`, `GCP_IAP_XSRF_NONCE_*`,
`__Host-GCP_IAP_AUTH_TOKEN_*`, the legacy `GCP_IAAP_AUTH_TOKEN[_*]`) and Ray's `ray-authentication-token`
never reach Ray, however the Cookie header is written (`;` or `,`, `$` attributes, quotes, spaces,
case, `_` for `-`), never come back from Ray, and never reach a log, opaque values included."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import web

from devkit.http import get_request, raw_http
from devkit.ray_double import MAY_PASS, RayDouble
from devkit.records import AccessRecords
from proxy.telemetry.redaction import RedactingFilter, redact
from proxy.upstream.headers import filter_cookie, response_headers

# Values as IAP and Ray really set them: IAP's are opaque (not JWTs), `GCP_IAP_UID` a principal.
OPAQUE = "AeEuYjgI7nPMrMMwztt5rtJ6K8lZZdDMEboJRUiEi5RqQVfRerYkfRog"
UID = "securetoken.google.com/iap-external-ids:MWhfgdkelqbZFaO5CNtpt2eiY682"
RAY_SESSION = "ray-session-2f9c1e7d8b"

# (Cookie header as a client, an extension or a hostile page may write it, what may reach Ray)
COOKIES = {
    "iap-uid": (f"GCP_IAP_UID={UID}; theme=dark", "theme=dark"),
    "iap-xsrf-nonce": ("GCP_IAP_XSRF_NONCE_WPa7-IVSEwg20IWmxpCJ5Q=1; theme=dark", "theme=dark"),
    "iap-host-token": (f"__Host-GCP_IAP_AUTH_TOKEN_4230143DB71CD3D1={OPAQUE}; theme=dark", "theme=dark"),
    "iaap-legacy-suffixed": (f"GCP_IAAP_AUTH_TOKEN_7978BFF0652DFB0={OPAQUE}; theme=dark", "theme=dark"),
    "iaap-legacy": (f"theme=dark; GCP_IAAP_AUTH_TOKEN={OPAQUE}", "theme=dark"),
    "secure-prefix": (f"__Secure-GCP_IAP_AUTH_TOKEN_1={OPAQUE}; theme=dark", "theme=dark"),
    "lower-case": (f"__host-gcp_iap_auth_token_abc={OPAQUE}; theme=dark", "theme=dark"),
    "dashes": (f"GCP-IAP-UID={UID}; theme=dark", "theme=dark"),
    "ray-token": (f"ray-authentication-token={RAY_SESSION}; theme=dark", "theme=dark"),
    "ray-token-underscores": (f"RAY_AUTHENTICATION_TOKEN={RAY_SESSION}; theme=dark", "theme=dark"),
    "after-a-comma": (f"theme=dark, ray-authentication-token={RAY_SESSION}; lang=en", "lang=en"),
    "comma-separated-iap": (f"lang=en, __Host-GCP_IAP_AUTH_TOKEN_1={OPAQUE}", None),
    "dollar-prefixed": (f"$Version=1; $ray-authentication-token={RAY_SESSION}; theme=dark", "theme=dark"),
    "dollar-attributes-dropped": ('$Version="1"; theme=dark; $Path="/"', "theme=dark"),
    "quoted-name": (f'"ray-authentication-token"={RAY_SESSION}; theme=dark', "theme=dark"),
    "quoted-value": (f'ray-authentication-token="{RAY_SESSION}"; theme=dark', "theme=dark"),
    "spaces": (f"  ray-authentication-token  =  {RAY_SESSION} ;theme=dark", "theme=dark"),
    "tab": (f"\tGCP_IAP_UID={UID};theme=dark", "theme=dark"),
    "hidden-in-a-quoted-value": (
        f'a="x; ray-authentication-token={RAY_SESSION}"; theme=dark',
        'a="x; theme=dark',
    ),
    "nothing-else": (f"GCP_IAP_UID={UID}; ray-authentication-token={RAY_SESSION}", None),
    "innocent-comma-kept": ("prefs=a,b; theme=dark", "prefs=a,b; theme=dark"),
}
SECRETS = (OPAQUE, UID, RAY_SESSION)


@pytest.mark.parametrize("cookie, kept", COOKIES.values(), ids=COOKIES.keys())
def test_the_cookie_filter_reads_every_spelling(cookie: str, kept: str | None) -> None:
    assert filter_cookie(cookie) == kept


@pytest.mark.parametrize("cookie, kept", COOKIES.values(), ids=COOKIES.keys())
async def test_credential_cookies_never_reach_ray(
    make_proxy: Any, ray: RayDouble, mint: Any, access_records: AccessRecords, cookie: str, kept: str | None
) -> None:
    proxy = await make_proxy(access_log=access_records)
    extra = f"Cookie: {cookie}\r\nCookie2: $Version=1; GCP_IAP_UID={UID}\r\n{MAY_PASS}: yes\r\n"
    status, _ = await raw_http(proxy.port, get_request("/api/jobs/", mint(), extra=extra))
    assert status == 200
    cookies = [v for k, v in ray.only().headers if k.lower() in ("cookie", "cookie2")]
    assert cookies == ([kept] if kept else [])
    assert not any(s in str(ray.only().headers) for s in SECRETS)
    assert not any(s in access_records.getvalue() for s in SECRETS)


SET_COOKIES = [
    f"ray-authentication-token={RAY_SESSION}; HttpOnly; SameSite=Strict",
    f"Ray-Authentication-Token={RAY_SESSION}; Path=/",
    f"ray_authentication_token={RAY_SESSION}",
    f"theme=dark, ray-authentication-token={RAY_SESSION}",
    f"__Host-GCP_IAP_AUTH_TOKEN_1={OPAQUE}; Secure; Path=/",
    f"GCP_IAAP_AUTH_TOKEN={OPAQUE}",
    f'"ray-authentication-token"={RAY_SESSION}',
]


@pytest.mark.parametrize("set_cookie", SET_COOKIES)
def test_a_credential_cookie_from_ray_never_reaches_the_client(set_cookie: str) -> None:
    out = response_headers([("Set-Cookie", set_cookie), ("Set-Cookie", "theme=dark; Path=/")])
    assert out == [("Set-Cookie", "theme=dark; Path=/")]
    assert response_headers([("Set-Cookie2", "theme=dark")]) == []


async def test_rays_credential_cookies_are_stripped_from_its_answers(
    proxy: Any, ray: RayDouble, mint: Any
) -> None:
    async def setting(request: web.Request) -> web.StreamResponse:
        response = web.json_response({})
        for i, value in enumerate(SET_COOKIES):
            response.headers.add("Set-Cookie", value.replace(RAY_SESSION, f"{RAY_SESSION}-{i}"))
        response.headers.add("Set-Cookie", "theme=dark")
        return response

    ray.overrides["/api/version"] = setting
    status, answer = await raw_http(
        proxy.port, get_request("/api/version", mint(), extra=f"{MAY_PASS}: yes\r\n")
    )
    assert status == 200
    assert b"Set-Cookie: theme=dark" in answer
    assert RAY_SESSION.encode() not in answer and OPAQUE.encode() not in answer


LOGGED = [
    f"Cookie: GCP_IAP_UID={UID}; theme=dark",
    f"__Host-GCP_IAP_AUTH_TOKEN_4230143DB71CD3D1={OPAQUE}",
    f"GCP_IAAP_AUTH_TOKEN_7978BFF0652DFB0={OPAQUE}, GCP_IAP_XSRF_NONCE_x=1",
    f'$Ray-Authentication-Token="{RAY_SESSION}; more"',
    f"{{'ray-authentication-token': '{RAY_SESSION}', 'theme': 'dark'}}",
    f'{{"cookies": {{"GCP_IAP_UID": "{UID}"}}}}',
    f"ray_authentication_token={RAY_SESSION}",
    f"x-goog-iap-jwt-assertion: {OPAQUE}",
    f"'Authorization': 'Basic {OPAQUE}'",
    f"Proxy-Authorization: {OPAQUE}",
    f"X-Ray-Authorization: Bearer {RAY_SESSION}",
    f"GET /api/jobs/?ray-authentication-token={RAY_SESSION}&x=1",
]


@pytest.mark.parametrize("line", LOGGED)
def test_redaction_catches_opaque_credentials_in_any_form(line: str) -> None:
    cleaned = redact(line)
    assert not any(s in cleaned for s in SECRETS), cleaned
    assert "[redacted]" in cleaned


@pytest.mark.parametrize(
    "line",
    [
        '"reason":"invalid IAP assertion: no IAP assertion (x-goog-iap-jwt-assertion)"',
        "GET /api/authentication_mode 200",
        "theme=dark; lang=en",
    ],
)
def test_redaction_leaves_ordinary_text_alone(line: str) -> None:
    assert redact(line) == line


def test_the_filter_redacts_cookies_in_messages_and_tracebacks() -> None:
    try:
        raise ValueError(f"Invalid header: b'Cookie: __Host-GCP_IAP_AUTH_TOKEN_1={OPAQUE}'")
    except ValueError:
        record = logging.LogRecord(
            "aiohttp.server",
            logging.ERROR,
            __file__,
            1,
            "cookie %s",
            (f"GCP_IAP_UID={UID}",),
            exc_info=__import__("sys").exc_info(),
        )
    RedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "ValueError" in text and not any(s in text for s in SECRETS)


async def test_opaque_session_cookies_stay_out_of_the_records_of_refused_requests(
    make_proxy: Any, ray: RayDouble, access_records: AccessRecords
) -> None:
    """Refused by authentication, by the parser, with the cookie in the query too: no record holds it."""
    proxy = await make_proxy(access_log=access_records)
    cookie = f"Cookie: __Host-GCP_IAP_AUTH_TOKEN_1={OPAQUE}; GCP_IAP_UID={UID}\r\n"
    requests = [
        get_request("/api/jobs/", extra=cookie),
        get_request(f"/api/jobs/?GCP_IAP_UID={UID}&ray-authentication-token={RAY_SESSION}", extra=cookie),
        get_request("/api/jobs/", extra=cookie + "X Bad: 1\r\n"),
    ]
    statuses = [(await raw_http(proxy.port, r))[0] for r in requests]
    assert statuses == [401, 401, 400]
    assert len(access_records.records()) == 3
    assert not any(s in access_records.getvalue() for s in SECRETS)
    assert ray.hits == []
