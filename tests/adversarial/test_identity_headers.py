"""Identity headers: what the client says about who it is, or where it is going, never reaches Ray and
never changes a decision. Only the proxy's own `X-Ray-Authorization` arrives, exactly once."""

from __future__ import annotations

from typing import Any

import pytest

from devkit.config import AUDIENCE
from devkit.http import get_request, raw_http
from devkit.ray_double import ASSERTION, MAY_PASS, PASS, RayDouble
from proxy import dev

FORGED = [
    "X-Goog-Authenticated-User-Email",
    "x-goog-authenticated-user-email",
    "X_GOOG_AUTHENTICATED_USER_EMAIL",
    "X-Goog-Authenticated-User-Id",
    "x-goog-iap-jwt-assertion-alt",
    "X-Goog-Iap-Jwt-Assertion_",
    "Authorization",
    "AUTHORIZATION",
    "authorization",
    "Proxy-Authorization",
    "proxy_authorization",
    "X-Ray-Authorization",
    "x_ray_authorization",
    "X-RAY-AUTHORIZATION",
    "X-Ray_Authorization",
    "X-Forwarded-User",
    "X-Forwarded-Email",
    "X_Forwarded_Email",
    "X-Remote-User",
    "X-Remote-Groups",
    "X-Authenticated-User",
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Forwarded-Prefix",
    "X-Original-URL",
    "X-Original-URI",
    "X-Rewrite-URL",
    "X-HTTP-Method-Override",
    "X-Method-Override",
    "X-HTTP-Method",
    "Forwarded",
]


def _norm(name: str) -> str:
    return name.lower().replace("_", "-")


async def test_forged_identity_and_credential_headers_never_reach_ray(
    proxy: Any, ray: RayDouble, mint: Any
) -> None:
    extra = "".join(f"{name}: forged-{i}\r\n" for i, name in enumerate(FORGED))
    extra += f"{MAY_PASS}: yes\r\n"
    request = get_request("/api/jobs/", mint("bob@example.com"), extra=extra)
    status, answer = await raw_http(proxy.port, request)
    assert status == 200, answer
    seen = ray.only().headers
    leaked = [(k, v) for k, v in seen if v.startswith("forged-")]
    assert leaked == []
    assert [v for k, v in seen if _norm(k) == "x-ray-authorization"] == ["Bearer ray-secret-token"]
    assert not any(_norm(k).startswith("x-goog-") for k, _ in seen)


@pytest.mark.parametrize(
    "cookie",
    [
        "ray-authentication-token=forged",
        "Ray-Authentication-Token=forged",
        "RAY-AUTHENTICATION-TOKEN=forged",
        " ray-authentication-token = forged",
        "GCP_IAP_UID=forged",
        "gcp_iap_uid=forged",
        "__Host-GCP_IAP_AUTH_TOKEN_0123=forged",
        "__host-gcp_iap_auth_token_x=forged",
    ],
    ids=lambda c: c.strip().split("=")[0],
)
async def test_credential_cookies_never_reach_ray(proxy: Any, ray: RayDouble, mint: Any, cookie: str) -> None:
    extra = f"Cookie: theme=dark; {cookie}; lang=en\r\nCookie: {cookie}\r\n{MAY_PASS}: yes\r\n"
    status, _ = await raw_http(proxy.port, get_request("/api/jobs/", mint(), extra=extra))
    assert status == 200
    cookies = [v for k, v in ray.only().headers if k.lower() == "cookie"]
    assert cookies == ["theme=dark; lang=en"]


async def test_connection_header_cannot_strip_the_proxys_own_credential(
    proxy: Any, ray: RayDouble, mint: Any
) -> None:
    """A client names headers as hop-by-hop to have them dropped: ours is added after that filter."""
    extra = f"Connection: X-Ray-Authorization, Host\r\nX-Ray-Authorization: forged\r\n{MAY_PASS}: yes\r\n"
    status, _ = await raw_http(proxy.port, get_request("/api/jobs/", mint(), extra=extra))
    assert status == 200
    hit = ray.only()
    assert [v for k, v in hit.headers if _norm(k) == "x-ray-authorization"] == ["Bearer ray-secret-token"]
    assert [v for k, v in hit.headers if k.lower() == "host"] == [ray.url.split("//")[1]]


@pytest.mark.parametrize(
    "header, value",
    [
        ("X-Original-URL", "/api/jobs/"),
        ("X-Rewrite-URL", "/api/jobs/"),
        ("X-Original-URI", "/api/jobs/"),
        ("X-Forwarded-Prefix", "/api"),
        ("X-Forwarded-Host", "team-b.example.com"),
        ("X-HTTP-Method-Override", "GET"),
        ("Forwarded", "for=127.0.0.1;host=admin"),
    ],
)
async def test_rewrite_headers_do_not_change_the_decision(
    proxy: Any, ray: RayDouble, mint: Any, header: str, value: str
) -> None:
    """bob (viewer) may not submit, whatever the request claims its real path or method is."""
    r = await proxy.post(
        "/api/jobs/", headers={ASSERTION: mint("bob@example.com"), header: value}, json={"entrypoint": "id"}
    )
    assert r.status == 403 and "verb submit" in (await r.json())["reason"]
    r = await proxy.get("/test/dump", headers={ASSERTION: mint(), header: value})
    assert r.status == 403
    assert ray.hits == []


@pytest.mark.parametrize(
    "host",
    ["team-b.example.com", "evil.example.com:443", "127.0.0.1:1", "ray-head.team-b.svc:8265", "localhost"],
)
async def test_host_header_changes_neither_tenant_nor_upstream(
    proxy: Any, ray: RayDouble, mint: Any, host: str
) -> None:
    token = mint("mallory@example.com")  # admin of team-b, nothing in team-a
    r = await proxy.get("/api/jobs/", headers={ASSERTION: token, "Host": host})
    assert r.status == 403 and "no role in tenant team-a" in (await r.json())["reason"]
    r = await proxy.get("/api/jobs/", headers={ASSERTION: mint(), "Host": host, **PASS})
    assert r.status == 200  # and it arrived at the configured upstream, not at `host`
    assert ray.only().raw_path == "/api/jobs/"


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1/api/jobs/",
        "http://team-b.example.com/api/jobs/",
        "https://evil/api/jobs/",
        "//evil.example.com/api/jobs/",
        "127.0.0.1:8265",
        "*",
    ],
)
async def test_absolute_and_authority_form_targets_are_400(
    proxy: Any, ray: RayDouble, signing_key: Any, target: str
) -> None:
    token = dev.mint(signing_key, "alice@example.com", AUDIENCE)
    status, answer = await raw_http(proxy.port, get_request(target, token, extra=f"{MAY_PASS}: no\r\n"))
    assert status == 400, answer
    assert ray.hits == []
