"""The real proxy with its policy file mounted as the kubelet mounts a ConfigMap: a swap is reloaded
without a restart, an invalid version is refused and the last good one stays, and a request in flight
finishes under the policy it was admitted with. Then the whole proxy with Kubernetes RBAC and Google
Groups configured, in front of the stand-ins."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from devkit.cloud_identity import CloudIdentityApi
from devkit.config import POLICY, write_hardening_config
from devkit.configmap import kubelet_write
from devkit.kube_api import KubeApi
from devkit.metadata_server import MetadataServer
from devkit.proxy import ProxyTestServer
from devkit.ray_double import RayDouble
from proxy import settings as settings_mod
from proxy.app import SOURCES, build_app, runner_args
from proxy.authz.sources.live import LivePolicy

REPO = Path(__file__).resolve().parents[2]
WITHOUT_BOB = POLICY.replace('members: ["user:bob@example.com"]', 'members: ["user:dave@example.com"]')
ASSERTION = "x-goog-iap-jwt-assertion"


async def start(tmp: Path, jwks_url: str, upstream: str, extra: str = "", groups: str = "") -> TestClient:
    """The real app on its real listener, its config directory a kubelet-style ConfigMap volume.
    `groups`: YAML lines added under the policy's `groups:`."""
    cfg_path = write_hardening_config(tmp, jwks_url, upstream, extra)
    text = (tmp / "policy.yaml").read_text().replace("groups:\n", f"groups:\n{groups}", 1)
    (tmp / "policy.yaml").unlink()
    kubelet_write(tmp, {"policy.yaml": text})
    cfg = settings_mod.load(cfg_path)
    client = TestClient(ProxyTestServer(build_app(cfg), host="127.0.0.1", runner_args=runner_args(cfg)))
    await client.start_server()
    return client


def live_policy(client: TestClient) -> LivePolicy:
    static = client.server.app[SOURCES].static
    assert isinstance(static, LivePolicy)
    return static


@pytest.fixture
async def proxy_and_ray(
    tmp_path: Path, key_server: tuple[Any, str], stub_ray: tuple[RayDouble, str]
) -> AsyncIterator[tuple[TestClient, RayDouble]]:
    client = await start(tmp_path, key_server[1], stub_ray[1])
    yield client, stub_ray[0]
    await client.close()


async def status(client: TestClient, token: str, method: str = "GET", path: str = "/api/jobs/") -> int:
    async with client.request(method, path, headers={ASSERTION: token}) as r:
        await r.read()
        return r.status


async def test_a_configmap_swap_is_reloaded_by_the_running_proxy(
    proxy_and_ray: tuple[TestClient, RayDouble], tmp_path: Path, mint: Callable[..., str]
) -> None:
    client, _ = proxy_and_ray
    bob = mint("bob@example.com")
    assert await status(client, bob) == 200
    kubelet_write(tmp_path, {"policy.yaml": WITHOUT_BOB})
    for _ in range(100):  # the watcher polls every 2 s; bounded: 100 x 0.1 s
        if await status(client, bob) == 403:
            break
        await asyncio.sleep(0.1)
    assert await status(client, bob) == 403
    assert await status(client, mint("dave@example.com")) == 200
    assert live_policy(client).reloads == 1


async def test_an_invalid_version_is_refused_and_the_last_good_policy_stays(
    proxy_and_ray: tuple[TestClient, RayDouble],
    tmp_path: Path,
    mint: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, _ = proxy_and_ray
    live = live_policy(client)
    before = live.digest
    caplog.set_level(logging.ERROR, logger="ray_iap_proxy.watched")
    kubelet_write(tmp_path, {"policy.yaml": WITHOUT_BOB.replace("viewer: [view]", "viewer: [view, fly]")})
    assert not live.watch.check()
    assert await status(client, mint("bob@example.com")) == 200  # the last good version decides
    assert live.digest == before and live.reload_failures == 1
    assert any("roles.viewer[1]: 'fly' is not a verb" in r.getMessage() for r in caplog.records)


async def test_a_request_in_flight_finishes_under_the_policy_it_was_admitted_with(
    proxy_and_ray: tuple[TestClient, RayDouble], tmp_path: Path, mint: Callable[..., str]
) -> None:
    client, ray = proxy_and_ray
    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow_jobs(request: web.Request) -> web.StreamResponse:
        arrived.set()
        await release.wait()
        return web.json_response([{"job_id": "raysubmit_1"}])

    ray.overrides["/api/jobs/"] = slow_jobs
    bob = mint("bob@example.com")
    in_flight = asyncio.ensure_future(status(client, bob))
    await asyncio.wait_for(arrived.wait(), 10)  # admitted under the first version, now inside Ray
    kubelet_write(tmp_path, {"policy.yaml": WITHOUT_BOB})
    assert live_policy(client).watch.check()
    assert await status(client, bob, path="/api/version") == 403  # a new request: the new version
    release.set()
    assert await in_flight == 200  # not re-decided


# --- the proxy with Kubernetes RBAC and Google Groups -----------------------------------------------


@pytest.fixture
async def standins(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[KubeApi, CloudIdentityApi]]:
    overlay = REPO / "k8s/overlays/team-a-rbac"
    kube = KubeApi.from_manifests(
        {"sa-token": "system:serviceaccount:team-a:ray-head"},
        REPO / "k8s/rbac/roles.yaml",
        REPO / "k8s/rbac/proxy-reviewer.yaml",
        overlay / "rolebindings.yaml",
        overlay / "proxy-reviewer-binding.yaml",
    )
    for obj in kube.rbac.objects:
        if obj["kind"] in ("Role", "RoleBinding"):
            obj["metadata"]["namespace"] = "team-a"
    groups = CloudIdentityApi({"team-a-viewers@example.com": {"vic@example.com"}}, {"wi-token"})
    md = MetadataServer()
    md.serve_token("wi-token")
    for server in (kube, groups, md):
        await server.start()
    monkeypatch.setenv("GCE_METADATA_HOST", md.host)
    from google.auth.compute_engine import _metadata  # read once, at import: see test_policy_sources

    monkeypatch.setattr(_metadata, "_GCE_METADATA_HOST", md.host)
    yield kube, groups
    for server in (kube, groups, md):
        await server.close()


async def test_the_proxy_grants_through_rbac_and_google_groups(
    tmp_path: Path,
    key_server: tuple[Any, str],
    stub_ray: tuple[RayDouble, str],
    standins: tuple[KubeApi, CloudIdentityApi],
    mint: Callable[..., str],
) -> None:
    kube, groups = standins
    kube.write_kubeconfig(tmp_path / "kubeconfig", "sa-token")
    extra = textwrap.dedent(f"""\
        kubernetes_rbac:
          ray_cluster: raycluster
          kubeconfig: kubeconfig
        google_groups:
          api_root: {groups.url}
        """)
    client = await start(tmp_path, key_server[1], stub_ray[1], extra, "  team-a-viewers@example.com: []\n")
    try:
        vic = mint("vic@example.com")  # in team-a-viewers (Cloud Identity), bound to ray-viewer (RBAC)
        assert await status(client, vic) == 200
        assert kube.reviews[-1]["groups"] == ["team-a-viewers@example.com"]
        async with client.post("/api/jobs/", headers={ASSERTION: vic}, json={}) as r:
            body = await r.json()
        assert r.status == 403
        assert "kubernetes-rbac: Kubernetes RBAC does not allow vic@example.com" in body["reason"]
        assert await status(client, mint("alice@example.com"), "GET", "/api/version") == 200  # static
        await kube.stop()
        oncall = mint("platform-oncall@example.com")  # RBAC admin, and the static policy knows nobody
        async with client.get("/api/version", headers={ASSERTION: oncall}) as r:
            body = await r.json()
        assert r.status == 403 and "the API server is unreachable" in body["reason"]
    finally:
        await client.close()
