"""Cross-site requests, second round: GETs that change state (Ray's GET* routes) are held to the rule
of writes, while a link from another site to the dashboard keeps working; and an origin is compared
whole — scheme, host and port — with the public URL the proxy serves (`public_url`, or `https://` +
Host by default), never with the Host alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devkit.config import ROOT, write_hardening_config
from devkit.ray_double import ASSERTION, PASS, RayDouble
from proxy.authz.routes import RAY_ROUTES
from proxy.errors import ConfigError
from proxy.settings import load

# Ray 2.60's GET* routes (ray-surface.md), with a target that names a real process or package.
SIDE_EFFECTS = {
    "/api/packages/{protocol}/{package_name}": "/api/packages/gcs/_ray_pkg_0123.zip",
    "/task/traceback": "/task/traceback?task_id=t&attempt_number=0&node_id=n",
    "/task/cpu_profile": "/task/cpu_profile?task_id=t&attempt_number=0&node_id=n&duration=60",
    "/worker/traceback": "/worker/traceback?pid=1&node_id=n",
    "/worker/cpu_profile": "/worker/cpu_profile?pid=1&node_id=n&duration=60",
    "/worker/gpu_profile": "/worker/gpu_profile?pid=1&node_id=n",
    "/worker/jax_profile": "/worker/jax_profile?pid=1&node_id=n",
    "/memory_profile": "/memory_profile?pid=1&node_id=n&duration=30",
    "/api/data/datasets/{job_id}": "/api/data/datasets/02000000",
    "/api/train/v2/runs": "/api/train/v2/runs",
    "/api/train/v2/runs/v1": "/api/train/v2/runs/v1",
}
CROSS_SITE = [
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"},  # a link on another site
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"},  # an <img>
    {"Sec-Fetch-Site": "same-site"},  # ray-team-b.example.com
    {"Origin": "https://evil.example.net"},
    {"Origin": "null"},
]


def test_every_get_with_side_effects_is_marked_and_nothing_else() -> None:
    marked = {r.pattern for r in RAY_ROUTES if r.side_effects}
    assert marked == set(SIDE_EFFECTS)
    assert all(r.method == "GET" for r in RAY_ROUTES if r.side_effects)


@pytest.mark.parametrize("pattern", SIDE_EFFECTS)
@pytest.mark.parametrize("headers", CROSS_SITE, ids=lambda h: ",".join(f"{k}={v}" for k, v in h.items()))
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_a_get_with_side_effects_from_another_site_is_refused(
    proxy: Any, ray: RayDouble, mint: Any, pattern: str, headers: dict[str, str], method: str
) -> None:
    r = await proxy.request(method, SIDE_EFFECTS[pattern], headers={ASSERTION: mint(ROOT), **headers})
    assert r.status == 403, (pattern, headers)
    if method == "GET":
        assert (await r.json())["reason"].startswith("cross-origin GET refused")
    assert ray.hits == []


@pytest.mark.parametrize("pattern", SIDE_EFFECTS)
async def test_the_same_gets_from_the_dashboard_itself_or_a_cli_pass(
    proxy: Any, ray: RayDouble, mint: Any, pattern: str
) -> None:
    origin = f"http://127.0.0.1:{proxy.port}"
    for headers in (
        {"Sec-Fetch-Site": "same-origin", "Origin": origin},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed in the address bar
        {},  # curl, the ray CLI
    ):
        r = await proxy.get(SIDE_EFFECTS[pattern], headers={ASSERTION: mint(ROOT), **headers, **PASS})
        assert r.status == 200, (pattern, headers)
    assert len(ray.hits) == 4


@pytest.mark.parametrize(
    "target", ["/", "/#/jobs", "/api/jobs/", "/nodes?view=summary", "/static/js/main.js"]
)
async def test_a_link_from_another_site_to_the_dashboard_still_works(
    proxy: Any, ray: RayDouble, mint: Any, target: str
) -> None:
    headers = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    r = await proxy.get(target.split("#")[0], headers={ASSERTION: mint(), **headers, **PASS})
    assert r.status == 200
    assert len(ray.hits) == 1


# -- the full origin -------------------------------------------------------------------------------

PUBLIC = "public_url: https://ray-team-a.example.com\n"


@pytest.mark.parametrize(
    "origin",
    [
        "http://ray-team-a.example.com",  # the same host over plain http: another origin
        "http://ray-team-a.example.com:443",
        "https://ray-team-a.example.com:8443",
        "https://ray-team-b.example.com",
        "https://ray-team-a.example.com.evil.net",
        "https://evil.net#@ray-team-a.example.com",
        "https://ray-team-a.example.com@evil.net",
        "wss://ray-team-a.example.com",
        "https://ray-team-a.example.com/path",
        "https://RAY-TEAM-A.EXAMPLE.COM\u212a",
    ],
)
async def test_an_origin_must_be_the_public_url_whole(
    make_proxy: Any, ray: RayDouble, mint: Any, origin: str
) -> None:
    proxy = await make_proxy(extra=PUBLIC)
    for host in ("ray-team-a.example.com", f"127.0.0.1:{proxy.port}"):
        r = await proxy.post(
            "/api/jobs/", headers={ASSERTION: mint(), "Origin": origin, "Host": host}, json={}
        )
        assert r.status == 403 and "cross-origin POST" in (await r.json())["reason"], (origin, host)
        r = await proxy.get(
            "/worker/traceback?pid=1", headers={ASSERTION: mint(ROOT), "Origin": origin, "Host": host}
        )
        assert r.status == 403, (origin, host)
    assert ray.hits == []


async def test_the_public_url_decides_whatever_the_host_header_says(
    make_proxy: Any, ray: RayDouble, mint: Any
) -> None:
    proxy = await make_proxy(extra=PUBLIC)
    for origin in (
        "https://ray-team-a.example.com",
        "https://ray-team-a.example.com:443",
        "HTTPS://Ray-Team-A.example.com",
    ):
        for host in ("ray-team-a.example.com", f"127.0.0.1:{proxy.port}", "evil.example.net"):
            headers = {
                ASSERTION: mint(),
                "Origin": origin,
                "Host": host,
                "Sec-Fetch-Site": "same-origin",
                **PASS,
            }
            assert (await proxy.post("/api/jobs/", headers=headers, json={})).status == 200, (origin, host)
    # and an attacker's Host matching their own Origin does not help
    headers = {ASSERTION: mint(), "Origin": "https://evil.example.net", "Host": "evil.example.net"}
    assert (await proxy.post("/api/jobs/", headers=headers, json={})).status == 403


@pytest.mark.parametrize(
    "origin, host, allowed",
    [
        ("https://ray-team-a.example.com", "ray-team-a.example.com", True),
        ("http://ray-team-a.example.com", "ray-team-a.example.com", False),  # behind IAP: https
        ("https://ray-team-a.example.com:8443", "ray-team-a.example.com", False),
        ("https://ray-team-a.example.com:8443", "ray-team-a.example.com:8443", True),
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True),  # loopback (dev-iap): http
        ("https://127.0.0.1:8080", "127.0.0.1:8080", False),
        ("http://localhost:8080", "localhost:8080", True),
        ("http://127.0.0.1:8081", "127.0.0.1:8080", False),
    ],
)
async def test_without_public_url_the_origin_is_derived_from_the_host_with_its_scheme(
    proxy: Any, ray: RayDouble, mint: Any, origin: str, host: str, allowed: bool
) -> None:
    extra = PASS if allowed else {}
    r = await proxy.post(
        "/api/jobs/", headers={ASSERTION: mint(), "Origin": origin, "Host": host, **extra}, json={}
    )
    assert r.status == (200 if allowed else 403), (origin, host)
    assert len(ray.hits) == (1 if allowed else 0)


@pytest.mark.parametrize(
    "value, problem",
    [
        ("http://ray-team-a.example.com", "must be https (plain http is allowed only on loopback)"),
        ("https://ray-team-a.example.com/dashboard", "must be https://HOST[:PORT]"),
        ("https://ray-team-a.example.com?x=1", "must be https://HOST[:PORT]"),
        ("https://ray-team-a.example.com#x", "must be https://HOST[:PORT]"),
        ("https://user@ray-team-a.example.com", "must be https://HOST[:PORT]"),
        ("https://ray-team-a.example.com:99999", "must be https://HOST[:PORT]"),
        ("ray-team-a.example.com", "must be https://HOST[:PORT]"),
        ("https://r\u00e4y.example.com", "xn--"),
        (8265, "must be a string"),
    ],
)
def test_a_bad_public_url_is_refused_at_load_naming_the_key(
    tmp_path: Path, value: object, problem: str
) -> None:
    cfg = write_hardening_config(
        tmp_path, "http://127.0.0.1:1/jwks", "http://127.0.0.1:2", f"public_url: {value!r}\n"
    )
    with pytest.raises(ConfigError) as err:
        load(cfg)
    assert any(p.startswith("public_url: ") and problem in p for p in err.value.problems), err.value.problems


def test_good_public_urls_load(tmp_path: Path) -> None:
    for value in (
        "https://ray-team-a.example.com",
        "https://ray-team-a.example.com:8443/",
        "http://127.0.0.1:8265",
    ):
        cfg = write_hardening_config(
            tmp_path, "http://127.0.0.1:1/jwks", "http://127.0.0.1:2", f"public_url: {value}\n"
        )
        assert load(cfg).public_url == value.rstrip("/")
