"""The sidecar's config and policy, as shipped in each overlay's ConfigMap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from k8s_render import REPO, Rendered

CONFIG_KEYS = {
    "listen",
    "metrics_listen",
    "upstream",
    "tenant",
    "iap",
    "ray_token_file",
    "policy_file",
    "shutdown_grace_seconds",
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
    (audience,) = config["iap"]["audiences"]
    assert audience.startswith("/projects/") and "/global/backendServices/" in audience
    assert {b["tenant"] for b in policy["bindings"]} == {overlay.namespace}
    for role, verbs in policy["roles"].items():
        assert set(verbs) <= VERBS | {"*"}, role


def test_tenants_have_distinct_audiences(rendered: dict[str, Rendered]) -> None:
    """A token for one tenant's backend service is never accepted by another tenant's proxy. Variants
    of one tenant (the RBAC overlay beside the plain one) are alternatives for the same backend."""
    audiences: dict[str, set[str]] = {}
    for name, o in rendered.items():
        if not name.endswith("-gateway"):
            config = yaml.safe_load(_configmap(o)["data"]["config.yaml"])
            audiences.setdefault(o.namespace, set()).update(config["iap"]["audiences"])
    assert len(audiences) >= 2
    for tenant, mine in audiences.items():
        others = set().union(*(a for t, a in audiences.items() if t != tenant))
        assert not mine & others, tenant
