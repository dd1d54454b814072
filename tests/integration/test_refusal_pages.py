"""What a person and what a program get when the proxy refuses: the page for a browser's navigation,
JSON for the dashboard's own XHRs, and no Ray answer at all. (The browser itself: tests/browser.)"""

from __future__ import annotations

import time
from typing import Any

import pytest

from proxy.admit import CROSS_SITE_HINT
from proxy.http.answers import PAGE_POLICY

H = "x-goog-iap-jwt-assertion"
NAVIGATION = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
DASHBOARD_XHR = "application/json, text/plain, */*"  # axios, as Ray's dashboard sends it
ROLE_HINT = "Ask your platform team for a role"


async def test_cross_site_page_says_why_and_does_not_blame_the_role(
    proxy_client: Any, mint: Any, stub_ray: Any
) -> None:
    token = mint("alice@example.com")
    r = await proxy_client.post(
        "/api/jobs/",
        data="{}",
        headers={
            H: token,
            "Accept": NAVIGATION,
            "Origin": "http://localhost:8000",
            "Sec-Fetch-Site": "cross-site",
        },
    )
    assert r.status == 403 and r.content_type == "text/html"
    page = await r.text()
    assert "cross-origin POST refused" in page and CROSS_SITE_HINT in page and ROLE_HINT not in page
    assert "alice@example.com" in page and token not in page
    assert r.headers["Content-Security-Policy"] == PAGE_POLICY
    assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["Cache-Control"] == "no-store"
    assert stub_ray[0].seen == []


async def test_policy_refusal_page_keeps_the_role_hint(proxy_client: Any, mint: Any) -> None:
    r = await proxy_client.get(
        "/api/v0/logs/file?node_id=n&filename=f", headers={H: mint("bob@example.com"), "Accept": NAVIGATION}
    )
    page = await r.text()
    assert r.status == 403 and ROLE_HINT in page and CROSS_SITE_HINT not in page


async def test_never_exposed_route_page_names_no_permission(proxy_client: Any, mint: Any) -> None:
    r = await proxy_client.get("/test/dump", headers={H: mint(), "Accept": NAVIGATION})
    page = await r.text()
    assert r.status == 403 and "Permission needed" not in page and ROLE_HINT not in page
    assert "does not expose this address" in page


@pytest.mark.parametrize(
    "accept",
    [DASHBOARD_XHR, "*/*", "", "application/json"],
    ids=["dashboard-axios", "fetch-default", "none", "json"],
)
async def test_programs_and_the_dashboards_xhr_get_json(proxy_client: Any, mint: Any, accept: str) -> None:
    headers = {H: mint("bob@example.com"), "Sec-Fetch-Site": "same-origin"}
    if accept:
        headers["Accept"] = accept
    r = await proxy_client.get("/api/v0/logs/file?node_id=n&filename=f", headers=headers)
    assert r.status == 403 and r.content_type == "application/json"
    body = await r.json()
    assert body["error"] == "forbidden" and "verb logs" in body["reason"]
    assert body["request_id"] == r.headers["X-Request-Id"] and "Content-Security-Policy" not in r.headers


async def test_expired_session_in_a_browser_is_an_uncached_401_page(
    proxy_client: Any, mint: Any, stub_ray: Any
) -> None:
    token = mint("alice@example.com", now=time.time() - 3600)
    r = await proxy_client.get("/", headers={H: token, "Accept": NAVIGATION})
    assert r.status == 401 and r.content_type == "text/html"
    assert r.headers["Cache-Control"] == "no-store" and r.headers["WWW-Authenticate"].startswith("IAP")
    page = await r.text()
    assert "Sign-in required" in page and "expired" in page and "Reload the page" in page
    assert "not signed in" in page and token not in page
    assert stub_ray[0].seen == []
