"""The sidecar's config and policy, as shipped in each overlay's ConfigMap."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_render import REPO, Rendered

from proxy.cli.common import load
from proxy.cli.explain import explain

CONFIG_KEYS = {
    "listen",
    "metrics_listen",
    "upstream",
    "tenant",
    "iap",
    "ray_token_file",
    "policy_file",
    "shutdown_grace_seconds",
    "client_listen",  # Ray Client (docs/ray-client.md)
    "client_upstream",
    "accept_ray_token",  # KubeRay's operator and RayJob submitters
    "google_id_tokens",  # callers without IAP: port-forward, Ray Client inside the VPC
}
POLICY_SOURCE_KEYS = {"kubernetes_rbac", "google_groups"}  # the optional policy sources
OPTIONAL_KEYS = {"access_log"}  # who the client was behind the load balancer (test_k8s_monitoring.py)
VERBS = {"view", "logs", "submit", "stop", "delete", "serve", "debug", "client"}


def _configmap(overlay: Rendered) -> dict[str, Any]:
    (configmap,) = overlay.of_kind("ConfigMap")
    assert set(configmap["data"]) == {"config.yaml", "policy.yaml"}
    return configmap


def test_configmap_passes_check_config(overlay: Rendered, tmp_path: Path) -> None:
    """`ray-iap-proxy check-config` exits 0 on the files exactly as the pod will see them."""
    for name, text in _configmap(overlay)["data"].items():
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "check-config", "--config", str(tmp_path / "config.yaml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}{result.stderr}"


def test_config_belongs_to_the_overlays_tenant(overlay: Rendered) -> None:
    data = _configmap(overlay)["data"]
    config, policy = yaml.safe_load(data["config.yaml"]), yaml.safe_load(data["policy.yaml"])
    assert CONFIG_KEYS <= set(config) <= CONFIG_KEYS | POLICY_SOURCE_KEYS | OPTIONAL_KEYS
    assert config["tenant"] == overlay.namespace
    assert config["policy_file"] == "policy.yaml"
    assert config["iap"]["issuer"] == "https://cloud.google.com/iap"
    assert config["iap"]["jwks_url"] == "https://www.gstatic.com/iap/verify/public_key-jwk"
    # One audience per IAP-protected backend service the overlay makes (the dashboard's, and Ray
    # Client's where it is a backend of its own): IAP signs each for its own backend service.
    audiences = config["iap"]["audiences"]
    assert len(audiences) == len(set(audiences)) == len(_iap_backends(overlay)), overlay.name
    for audience in audiences:
        assert audience.startswith("/projects/") and "/global/backendServices/" in audience
    assert config["accept_ray_token"] is True
    for audience in config["google_id_tokens"]["audiences"]:
        assert audience.startswith("https://") and overlay.namespace in audience
    assert {b["tenant"] for b in policy["bindings"]} == {overlay.namespace}
    for role, verbs in policy["roles"].items():
        assert set(verbs) <= VERBS | {"*"}, role


def _iap_backends(overlay: Rendered) -> list[str]:
    """The Services the load balancer makes an IAP-protected backend service of."""
    with_iap = {
        bc["metadata"]["name"] for bc in overlay.of_kind("BackendConfig") if bc["spec"]["iap"]["enabled"]
    }
    backends = [
        s["metadata"]["name"]
        for s in overlay.of_kind("Service")
        if json.loads(s["metadata"].get("annotations", {}).get("cloud.google.com/backend-config", "{}")).get(
            "default"
        )
        in with_iap
    ]
    return backends + [
        p["spec"]["targetRef"]["name"]
        for p in overlay.of_kind("GCPBackendPolicy")
        if p["spec"]["default"]["iap"]["enabled"]
    ]


@pytest.mark.parametrize("kind", ["iap", "google_id_tokens"])
def test_tenants_have_distinct_audiences(rendered: dict[str, Rendered], kind: str) -> None:
    """A token for one tenant's backend service (or, for Google ID tokens, for one tenant's audience)
    is never accepted by another tenant's proxy. Variants of one tenant (the RBAC overlay beside the
    plain one) are alternatives for the same backend."""
    audiences: dict[str, set[str]] = {}
    for name, o in rendered.items():
        if not name.endswith("-gateway"):
            config = yaml.safe_load(_configmap(o)["data"]["config.yaml"])
            audiences.setdefault(o.namespace, set()).update(config[kind]["audiences"])
    assert len(audiences) >= 2
    for tenant, mine in audiences.items():
        others = set().union(*(a for t, a in audiences.items() if t != tenant))
        assert not mine & others, tenant


# What KubeRay v1.7.0 calls with the cluster's Ray token (ray-operator/controllers/ray/utils/
# dashboardclient/dashboard_httpclient.go; the submitter's `ray job status/submit/logs --follow`,
# common/job.go), and the verb each needs.
KUBERAY_CALLS = [
    ("PUT", "/api/serve/applications/", "serve"),  # RayService: deploy the Serve config
    ("GET", "/api/serve/applications/?api_type=declarative", "view"),  # RayService: status
    ("POST", "/api/jobs/", "submit"),  # RayJob HTTPMode (the operator), K8sJobMode (the submitter)
    ("GET", "/api/jobs/", "view"),
    ("GET", "/api/jobs/raysubmit_2f6bd8", "view"),  # status, polled
    ("GET", "/api/jobs/raysubmit_2f6bd8/logs", "logs"),
    ("GET", "/api/jobs/raysubmit_2f6bd8/logs/tail", "logs"),  # `ray job logs --follow` (WebSocket)
    ("POST", "/api/jobs/raysubmit_2f6bd8/stop", "stop"),  # RayJob deleted or past its deadline
    ("DELETE", "/api/jobs/raysubmit_2f6bd8", "delete"),
    ("GET", "/api/version", "view"),  # every `ray job` command first
    ("GET", "/api/gcs_healthz", "view"),
    ("PUT", "/api/packages/gcs/_ray_pkg_0123456789abcdef.zip", "submit"),  # a local working_dir
]
# What the Ray token must not get through the sidecar: debugging other processes, Ray Client.
NOT_FOR_KUBERAY = [
    ("GET", "/worker/traceback?pid=1", "debug"),
    ("GET", "/task/cpu_profile?task_id=x&attempt_number=0&node_id=y", "debug"),
    ("POST", "/ray.rpc.RayletDataStreamer/Datapath", "client"),
]


def _explain_ray_token(overlay: Rendered, tmp_path: Path, method: str, target: str) -> dict[str, object]:
    for name, text in _configmap(overlay)["data"].items():
        (tmp_path / name).write_text(text)
    settings, policy = load(str(tmp_path / "config.yaml"))
    return asyncio.run(explain(settings, policy, "", method, target, credential="ray_token"))


def test_kuberay_callers_get_exactly_the_verbs_they_call(overlay: Rendered, tmp_path: Path) -> None:
    """Decided by the same admission as `serve` (`explain --credential ray_token`), on the shipped
    config and policy: every call KubeRay makes is allowed, and the verbs granted to
    `system:ray-token` are exactly the ones those calls need."""
    needed = set()
    for method, target, verb in KUBERAY_CALLS:
        out = _explain_ray_token(overlay, tmp_path, method, target)
        assert (out["identity"], out["verb"], out["decision"]) == ("system:ray-token", verb, "allow"), out
        needed.add(verb)
    assert set(out["granted_verbs"]) == needed  # type: ignore[arg-type]
    for method, target, verb in NOT_FOR_KUBERAY:
        out = _explain_ray_token(overlay, tmp_path, method, target)
        assert (out["verb"], out["decision"]) == (verb, "deny"), out
