"""Paths and methods: every spelling of a protected path gets the canonical path's decision or a 400;
methods never widen access; health paths cannot be reached around authentication. Requests expected
to be refused carry no MAY_PASS mark: if one reaches Ray, the tripwire fails the test."""

from __future__ import annotations

from typing import Any

import pytest

from devkit.config import ROOT
from devkit.http import get_request, raw_http
from devkit.ray_double import MAY_PASS, RayDouble

# Spellings of POST /api/jobs/ (submit: bob may not) and GET /test/dump (never exposed).
JOBS_VARIANTS = [
    "/api/jobs/./",
    "/api/./jobs/",
    "/api/jobs/../jobs/",
    "/api/x/../jobs/",
    "/api/%6aobs/",
    "/api/jobs%2f",
    "/api/jobs%2F",
    "//api/jobs/",
    "/api//jobs/",
    "/api/jobs//",
    "/api/jobs/%2e",
    "/api/jobs/.%2e/",
    "/api/jobs/%2E%2E/",
    "/api/jobs\\",
    "/api\\jobs/",
    "/api/jobs/%5c",
    "/api/jobs/%00",
    "/api/jobs/%",
    "/api/jobs/%zz",
    "/api/jobs/%C0%AE%C0%AE/",
    "/api/%u006aobs/",
    "/api/jobs/#",
    "/api/j%6Fbs/",
    "/api/jobs;/",
    "/API/jobs/",
    "/api/JOBS/",
    "/api/jobs",
    "/api/jobs/;",
    "/api/jobs/%3b",
    "/api/jobs/ ",
    "/api/jobs/\t",
    "/api/ｊobs/",
    "/api/jobs/\u2024/",
    "/./api/jobs/",
    "/api/jobs/%252e%252e/",
]
DUMP_VARIANTS = [
    "/test/dump",
    "/test/dump/",
    "/test//dump",
    "/test/./dump",
    "/test/%64ump",
    "/Test/dump",
    "/test/dump;",
    "/test/dump%00",
    "/test/dump%2f",
    "/test/dump?x=1",
    "/test/dump#",
    "//test/dump",
    "/x/../test/dump",
    "/test/dump/.",
    "/test/dump%20",
    "/test%2fdump",
]


@pytest.mark.parametrize("target", JOBS_VARIANTS, ids=repr)
async def test_spellings_of_a_forbidden_write_are_403_or_400(
    proxy: Any, ray: RayDouble, mint: Any, target: str
) -> None:
    request = get_request(target, mint("bob@example.com"), "POST", extra="Content-Length: 2\r\n")[:-2]
    status, answer = await raw_http(proxy.port, request + b"\r\n{}")
    assert status in (400, 403), answer
    assert ray.hits == []


@pytest.mark.parametrize("target", DUMP_VARIANTS, ids=repr)
async def test_spellings_of_an_internal_route_never_reach_ray(
    proxy: Any, ray: RayDouble, mint: Any, target: str
) -> None:
    status, answer = await raw_http(proxy.port, get_request(target, mint(ROOT)))
    assert status in (400, 403), answer
    assert ray.hits == []


async def test_the_canonical_spelling_is_what_ray_receives(proxy: Any, ray: RayDouble, mint: Any) -> None:
    """The control for the tables above: the canonical spelling passes, verbatim, to the route Ray
    would match, including escapes that are legal in a segment or a query."""
    targets = [
        "/api/jobs/",
        "/api/jobs/raysubmit_%3Aa%40b",
        "/api/jobs/a;b",
        "/api/v0/logs/file?node_id=n&filename=a%2Fb%2F..%2F..%2Fetc%2Fpasswd&q=%22%3C",
    ]
    for target in targets:
        status, _ = await raw_http(proxy.port, get_request(target, mint(ROOT), extra=f"{MAY_PASS}: yes\r\n"))
        assert status == 200
    assert [(h.raw_path, h.route) for h in ray.hits] == [
        ("/api/jobs/", "/api/jobs/"),
        ("/api/jobs/raysubmit_%3Aa%40b", "/api/jobs/{job_or_submission_id}"),
        ("/api/jobs/a;b", "/api/jobs/{job_or_submission_id}"),
        (targets[3], "/api/v0/logs/file"),
    ]


@pytest.mark.parametrize(
    "method, status",
    [
        ("get", 400),
        ("Get", 400),
        ("FOO", 400),
        ("G\x00T", 400),
        ("PATCH", 403),
        ("TRACE", 403),
        ("PROPFIND", 403),
        ("MKCOL", 403),
        ("OPTIONS", 403),
        ("CONNECT", 403),
        ("PURGE", 403),
        ("LINK", 403),
    ],
    ids=repr,
)
async def test_odd_methods_never_widen_access(
    proxy: Any, ray: RayDouble, mint: Any, method: str, status: int
) -> None:
    got, answer = await raw_http(proxy.port, get_request("/api/jobs/", mint(ROOT), method))
    assert got == status, answer
    assert ray.hits == []


async def test_head_is_classified_as_get(proxy: Any, ray: RayDouble, mint: Any) -> None:
    bob = mint("bob@example.com")
    mark = f"{MAY_PASS}: yes\r\n"
    status, _ = await raw_http(proxy.port, get_request("/api/jobs/", bob, "HEAD", extra=mark))
    assert status == 200
    for target in ("/api/packages/gcs/_ray_pkg_x.zip", "/worker/gpu_profile?pid=1", "/api/v0/logs/file"):
        status, _ = await raw_http(proxy.port, get_request(target, bob, "HEAD"))
        assert status == 403, target
    assert [(h.method, h.raw_path) for h in ray.hits] == [("HEAD", "/api/jobs/")]


@pytest.mark.parametrize("override", ["GET", "HEAD", "get", "OPTIONS"])
async def test_method_override_headers_never_widen_access(
    proxy: Any, ray: RayDouble, mint: Any, override: str
) -> None:
    bob = mint("bob@example.com")
    for header in ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "X_HTTP_Method_Override"):
        r = await proxy.delete(
            "/api/jobs/raysubmit_1", headers={"x-goog-iap-jwt-assertion": bob, header: override}
        )
        assert r.status == 403
    r = await proxy.get(
        "/api/jobs/",
        headers={"x-goog-iap-jwt-assertion": bob, MAY_PASS: "yes", "X-HTTP-Method-Override": "DELETE"},
    )
    assert r.status == 200
    hit = ray.only()
    assert hit.method == "GET" and not any(k.lower().endswith("override") for k, _ in hit.headers)


@pytest.mark.parametrize(
    "who, target, verb",
    [
        ("bob@example.com", "/api/packages/gcs/_ray_pkg_x.zip", "submit"),  # GET* pins a package
        ("bob@example.com", "/worker/gpu_profile?pid=1&node_id=n", "debug"),  # GET* writes a trace
        ("alice@example.com", "/worker/jax_profile?pid=1", "debug"),
        ("alice@example.com", "/worker/traceback?pid=1", "debug"),
        ("alice@example.com", "/memory_profile?pid=1", "debug"),
        ("bob@example.com", "/api/jobs/raysubmit_1/logs", "logs"),
        ("bob@example.com", "/api/v0/logs/stream?node_id=n&filename=f", "logs"),
    ],
    ids=lambda v: str(v),
)
async def test_state_changing_and_sensitive_gets_need_their_verb(
    proxy: Any, ray: RayDouble, mint: Any, who: str, target: str, verb: str
) -> None:
    r = await proxy.get(target, headers={"x-goog-iap-jwt-assertion": mint(who)})
    assert r.status == 403 and f"verb {verb}" in (await r.json())["reason"]
    assert ray.hits == []


@pytest.mark.parametrize(
    "target, extra",
    [
        ("/healthz?x=1", ""),
        ("/healthz/", ""),
        ("/healthz#", ""),
        ("/Healthz", ""),
        ("/healthz%00", ""),
        ("//healthz", ""),
        ("/healthz/../api/jobs/", ""),
        ("/healthz;/api/jobs/", ""),
        ("/readyz/", ""),
        ("/readyz?/api/jobs/", ""),
        ("/api/jobs/", "X-Original-URL: /healthz\r\n"),
        ("/api/jobs/", "X-Rewrite-URL: /healthz\r\n"),
        ("/api/jobs/", "X-Forwarded-Prefix: /healthz\r\n"),
    ],
    ids=repr,
)
async def test_unauthenticated_paths_cannot_be_borrowed(
    proxy: Any, ray: RayDouble, target: str, extra: str
) -> None:
    status, answer = await raw_http(proxy.port, get_request(target, extra=extra))  # no credentials
    assert status in (400, 401), answer
    assert ray.hits == []


async def test_health_answers_itself_whatever_it_is_sent(proxy: Any, ray: RayDouble) -> None:
    for extra in (
        "X-Original-URL: /api/jobs/\r\n",
        "X-HTTP-Method-Override: DELETE\r\n",
        "Content-Length: 0\r\n",
    ):
        status, answer = await raw_http(proxy.port, get_request("/healthz", extra=extra))
        assert status == 200 and answer.endswith(b'{"status": "ok"}'), answer
    status, _ = await raw_http(proxy.port, get_request("/healthz", method="POST"))
    assert status == 401
    assert ray.hits == []
