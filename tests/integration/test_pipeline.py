"""The real app on loopback in front of a recording stub of Ray: statuses, bodies, what Ray sees."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest

from devkit.http import get_request, raw_http
from devkit.ray_double import RayDouble
from proxy.http.pipeline import PROXY

H = "x-goog-iap-jwt-assertion"


async def test_health_needs_no_credentials_and_never_touches_ray(proxy_client: Any, stub_ray: Any) -> None:
    r = await proxy_client.get("/healthz")
    assert r.status == 200 and (await r.json()) == {"status": "ok"}
    assert stub_ray[0].seen == []


async def test_ready_when_keys_loaded_and_ray_answers(proxy_client: Any, stub_ray: Any) -> None:
    r = await proxy_client.get("/readyz")
    assert r.status == 200, await r.text()
    assert stub_ray[0].seen[-1].raw_path == "/api/gcs_healthz"
    assert ("X-Ray-Authorization", "Bearer ray-secret-token") in stub_ray[0].seen[-1].headers


async def test_not_ready_when_ray_is_down(make_client: Any) -> None:
    client = await make_client(upstream="http://127.0.0.1:9")
    r = await client.get("/readyz")
    assert r.status == 503
    assert await r.json() == {"status": "not ready"}  # the reason is for the log, not the caller
    assert client.server.app[PROXY].readiness.problems == ("Ray not answering",)


@pytest.mark.parametrize(
    "headers, reason",
    [
        ({}, "no IAP assertion"),
        ({H: ""}, "empty assertion"),
        ({H: "not.a.jwt!"}, "malformed"),
        ({"Authorization": "Bearer whatever"}, "no IAP assertion"),
        ({"X-Goog-Authenticated-User-Email": "accounts.google.com:alice@example.com"}, "no IAP assertion"),
    ],
    ids=["none", "empty", "garbage", "bearer-only", "unsigned-iap-headers"],
)
async def test_no_valid_assertion_is_401_json(
    proxy_client: Any, stub_ray: Any, headers: dict[str, str], reason: str
) -> None:
    r = await proxy_client.get("/api/jobs/", headers=headers)
    assert r.status == 401
    body = await r.json()
    assert body["error"] == "unauthenticated" and reason in body["reason"]
    assert len(body["request_id"]) == 32 and r.headers["X-Request-Id"] == body["request_id"]
    assert stub_ray[0].seen == []


async def test_several_assertion_headers_are_refused(proxy_client: Any, mint: Any, stub_ray: Any) -> None:
    r = await proxy_client.get("/api/jobs/", headers=[(H, mint()), (H, mint("bob@example.com"))])
    assert r.status == 401 and "several" in (await r.json())["reason"]
    assert stub_ray[0].seen == []


async def test_viewer_lists_but_cannot_submit(proxy_client: Any, mint: Any, stub_ray: Any) -> None:
    token = mint("bob@example.com")
    r = await proxy_client.get("/api/jobs/", headers={H: token})
    assert r.status == 200
    assert len(r.headers.getall("X-Request-Id")) == 1 and len(r.headers["X-Request-Id"]) == 32
    r = await proxy_client.post("/api/jobs/", headers={H: token}, json={"entrypoint": "id"})
    assert r.status == 403
    body = await r.json()
    assert body == {
        "error": "forbidden",
        "request_id": body["request_id"],
        "reason": "verb submit is not granted by role(s) viewer in tenant team-a",
    }
    assert [s.method for s in stub_ray[0].seen] == ["GET"]


async def test_binding_for_another_tenant_grants_nothing(proxy_client: Any, mint: Any, stub_ray: Any) -> None:
    r = await proxy_client.get("/api/version", headers={H: mint("mallory@example.com")})
    assert r.status == 403 and "no role in tenant team-a" in (await r.json())["reason"]
    assert stub_ray[0].seen == []


@pytest.mark.parametrize(
    "email, hd, status",
    [
        ("carol@example.com", None, 200),  # group member
        ("dan@example.org", "example.org", 200),  # hosted domain claim
        ("dan@example.org", None, 403),  # the email suffix alone is not the domain
        ("ci@p.iam.gserviceaccount.com", None, 200),
    ],
    ids=["group", "domain-hd", "domain-suffix-only", "service-account"],
)
async def test_member_kinds(proxy_client: Any, mint: Any, email: str, hd: str | None, status: int) -> None:
    r = await proxy_client.post("/api/jobs/", headers={H: mint(email, hd=hd)}, json={"entrypoint": "id"})
    assert r.status == status


async def test_credentials_are_swapped_for_rays_token(proxy_client: Any, mint: Any, stub_ray: Any) -> None:
    r = await proxy_client.get(
        "/api/jobs/",
        headers={
            H: mint(),
            "Authorization": "Bearer iap-oidc",
            "Proxy-Authorization": "Basic x",
            "x-ray-authorization": "Bearer forged",
            "X_Ray_Authorization": "Bearer forged2",
            "X-Goog-Authenticated-User-Email": "accounts.google.com:admin@example.com",
            "X-Forwarded-User": "admin",
            "X-HTTP-Method-Override": "DELETE",
            "X-Original-URL": "/api/jobs/x",
            "Cookie": "ray-authentication-token=forged; theme=dark; GCP_IAP_UID=123; "
            "__Host-GCP_IAP_AUTH_TOKEN_1=z",
            "User-Agent": "ray-cli/2.60",
        },
    )
    assert r.status == 200
    seen = stub_ray[0].seen[-1].headers
    lowered = [(k.lower(), v) for k, v in seen]
    assert [v for k, v in lowered if k == "x-ray-authorization"] == ["Bearer ray-secret-token"]
    names = {k for k, _ in lowered}
    for gone in (
        "authorization",
        "proxy-authorization",
        "x_ray_authorization",
        "x-forwarded-user",
        "x-http-method-override",
        "x-original-url",
        H,
        "x-goog-authenticated-user-email",
    ):
        assert gone not in names
    assert dict(lowered)["cookie"] == "theme=dark"
    assert dict(lowered)["user-agent"] == "ray-cli/2.60"
    # and Ray's credential cookie never reaches the client
    assert "ray-authentication-token" not in r.headers.getall("Set-Cookie", [""])[0]


async def test_proxy_adds_no_browser_like_headers(proxy_client: Any, mint: Any, stub_ray: Any) -> None:
    r = await proxy_client.post(
        "/api/jobs/", headers={H: mint()}, json={"entrypoint": "id"}, skip_auto_headers=["User-Agent"]
    )
    assert r.status == 200
    names = {k.lower() for k, _ in stub_ray[0].seen[-1].headers}
    assert not names & {"user-agent", "origin", "referer", "sec-fetch-mode", "sec-fetch-site"}


@pytest.mark.parametrize(
    "target",
    [
        "/api/jobs/../jobs/",
        "/api/./jobs/",
        "//api/jobs/",
        "/api/jobs/%2e%2e/x",
        "/api%2fjobs/",
        "/api/jobs/%00",
        "/api/jobs/a%5cb",
        "/api/%6aobs/",
        "/api/jobs/%zz",
        "/api/jobs/a\\b",
        "/api/jobs/#x",
    ],
    ids=lambda t: t,
)
async def test_non_canonical_targets_are_400_before_auth(
    proxy_client: Any, stub_ray: Any, target: str
) -> None:
    status, answer = await raw_http(proxy_client.port, get_request(target))  # no credentials
    assert status == 400, answer
    assert b'"error": "bad_request"' in answer
    assert stub_ray[0].seen == []


async def test_ray_receives_exactly_the_classified_target(
    proxy_client: Any, mint: Any, stub_ray: Any
) -> None:
    target = "/api/v0/logs/file?node_id=abc&filename=worker%2Fout.log&lines=10"
    status, _ = await raw_http(proxy_client.port, get_request(target, mint()))
    assert status == 200
    assert stub_ray[0].seen[-1].raw_path == target


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("GET", "/test/dump", 403),
        ("POST", "/report_events", 403),
        ("GET", "/api/v0/delay/5", 403),
        ("GET", "/no/such/route", 403),
        ("get", "/api/jobs/", 400),
        ("GeT", "/api/jobs/", 400),
        ("OPTIONS", "/api/jobs/", 403),
        ("PATCH", "/api/jobs/", 403),
        ("GET", "/API/JOBS/", 403),
        ("GET", "/api/jobs", 403),
        ("HEAD", "/api/jobs/", 200),
        ("FOO", "/api/jobs/", 400),
    ],
    ids=lambda v: str(v),
)
async def test_unknown_internal_and_odd_methods_denied(
    proxy_client: Any, mint: Any, stub_ray: Any, method: str, path: str, status: int
) -> None:
    status_seen, _ = await raw_http(proxy_client.port, get_request(path, mint(), method))
    assert status_seen == status  # 400: refused by the HTTP parser itself
    if status == 403:
        assert stub_ray[0].seen == []


async def test_state_changing_get_routes_need_their_verb(proxy_client: Any, mint: Any, stub_ray: Any) -> None:
    r = await proxy_client.get("/worker/gpu_profile?pid=1&node_id=x", headers={H: mint()})
    assert r.status == 403 and "verb debug" in (await r.json())["reason"]
    r = await proxy_client.get("/api/packages/gcs/_ray_pkg_x.zip", headers={H: mint("bob@example.com")})
    assert r.status == 403 and "verb submit" in (await r.json())["reason"]
    assert stub_ray[0].seen == []


async def test_cross_site_write_refused_same_origin_allowed(
    proxy_client: Any, mint: Any, stub_ray: Any
) -> None:
    host = f"127.0.0.1:{proxy_client.port}"
    r = await proxy_client.post(
        "/api/jobs/", headers={H: mint(), "Origin": "https://evil.example.net"}, json={"entrypoint": "id"}
    )
    assert r.status == 403 and "cross-origin" in (await r.json())["reason"]
    r = await proxy_client.post("/api/jobs/a/stop", headers={H: mint(), "Sec-Fetch-Site": "same-site"})
    assert r.status == 403
    assert stub_ray[0].seen == []
    r = await proxy_client.post(
        "/api/jobs/a/stop", headers={H: mint(), "Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}
    )
    assert r.status == 200
    r = await proxy_client.get("/api/jobs/", headers={H: mint(), "Sec-Fetch-Site": "cross-site"})
    assert r.status == 200


async def test_browser_gets_a_readable_refusal_page(proxy_client: Any, mint: Any) -> None:
    token = mint("bob@example.com")
    r = await proxy_client.get(
        "/api/v0/logs/file?node_id=x&filename=a",
        headers={H: token, "Accept": "text/html,application/xhtml+xml"},
    )
    assert r.status == 403 and r.content_type == "text/html"
    page = await r.text()
    for expected in ("bob@example.com", "team-a", "logs", r.headers["X-Request-Id"]):
        assert expected in page
    assert token not in page and "Traceback" not in page


async def test_local_answers_never_reach_ray(proxy_client: Any, mint: Any, stub_ray: Any) -> None:
    r = await proxy_client.get("/api/authentication_mode", headers={H: mint("bob@example.com")})
    assert (await r.json()) == {"authentication_mode": "disabled"}
    r = await proxy_client.post("/api/authenticate", headers={H: mint(), "Authorization": "Bearer guess"})
    assert r.status == 200
    assert stub_ray[0].seen == []


async def test_upload_streams_byte_identical(proxy_client: Any, mint: Any, stub_ray: Any) -> None:
    blob = os.urandom(8 * 1024 * 1024 + 7)

    async def chunks() -> Any:
        for i in range(0, len(blob), 1 << 20):
            yield blob[i : i + (1 << 20)]

    r = await proxy_client.put("/api/packages/gcs/_ray_pkg_abc.zip", headers={H: mint()}, data=chunks())
    assert r.status == 200
    body = await r.json()
    assert body["sha256"] == hashlib.sha256(blob).hexdigest() and body["bytes"] == len(blob)
    r = await proxy_client.put("/api/packages/gcs/_ray_pkg_abd.zip", headers={H: mint()}, data=blob)
    assert (await r.json())["sha256"] == hashlib.sha256(blob).hexdigest()
    assert stub_ray[0].last_headers()["content-length"] == str(len(blob))


async def test_body_over_limit_is_413(make_client: Any, mint: Any, stub_ray: Any) -> None:
    client = await make_client(extra="limits:\n  max_body_bytes: 1000\n")
    r = await client.put("/api/packages/gcs/p.zip", headers={H: mint()}, data=b"x" * 1001)
    assert r.status == 413
    assert stub_ray[0].seen == []


async def test_chunked_response_streams_through(proxy_client: Any, mint: Any) -> None:
    r = await proxy_client.get("/api/v0/logs/stream?node_id=x&filename=f&n=5", headers={H: mint()})
    assert r.status == 200 and r.headers.get("Transfer-Encoding") == "chunked"
    assert len(r.headers["X-Request-Id"]) == 32
    assert await r.text() == "".join(f"line {i}\n" for i in range(5))


async def test_head_gets_headers_and_no_body(proxy_client: Any, mint: Any) -> None:
    r = await proxy_client.head("/api/jobs/", headers={H: mint()})
    assert r.status == 200 and await r.read() == b""


async def test_upstream_down_is_502_json(make_client: Any, mint: Any) -> None:
    client = await make_client(upstream="http://127.0.0.1:9")
    r = await client.get("/api/jobs/", headers={H: mint()})
    assert r.status == 502
    body = await r.json()
    assert body["error"] == "bad_gateway" and body["reason"] == "Ray is not reachable"


async def test_websocket_tail_passes_frames_and_close_code(
    proxy_client: Any, mint: Any, stub_ray: Any
) -> None:
    ws = await proxy_client.ws_connect("/api/jobs/raysubmit_1/logs/tail", headers={H: mint()})
    assert len(ws._response.headers["X-Request-Id"]) == 32
    assert (await ws.receive_str()) == "log line 1"
    await ws.send_str("hi")
    assert (await ws.receive_str()) == "echo:hi"
    await ws.send_str("close-4001")
    msg = await ws.receive()
    assert ws.close_code == 4001 or msg.data == 4001
    await ws.close()
    hdrs = {k.lower(): v for k, v in stub_ray[0].seen[-1].headers}
    assert hdrs["x-ray-authorization"] == "Bearer ray-secret-token" and H not in hdrs


async def test_websocket_upgrade_is_authorized_before_101(
    proxy_client: Any, mint: Any, stub_ray: Any
) -> None:
    import aiohttp

    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await proxy_client.ws_connect("/api/jobs/raysubmit_1/logs/tail", headers={H: mint("bob@example.com")})
    assert err.value.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await proxy_client.ws_connect("/api/jobs/raysubmit_1/logs/tail")
    assert err.value.status == 401
    assert stub_ray[0].seen == []


async def test_absolute_form_and_asterisk_targets_are_400(
    proxy_client: Any, mint: Any, stub_ray: Any
) -> None:
    for target in ("http://127.0.0.1/api/jobs/", "*", "http://evil/api/jobs/"):
        status, _ = await raw_http(proxy_client.port, get_request(target, mint()))
        assert status == 400, target
    assert stub_ray[0].seen == []


def _unused(stub: RayDouble) -> None:  # keep the import used for type readers
    del stub
