"""`make manifests` renders every overlay, the same way with every kustomize at hand."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from k8s_render import OVERLAYS_DIR, REPO, Rendered, find_kubectl, load_documents, overlay_names

TENANT_OVERLAYS = {
    "team-a": "team-a",
    "team-b": "team-b",
    "team-a-gateway": "team-a",
    "team-a-rbac": "team-a",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
# The generated ConfigMap's name carries a content hash whose algorithm changed between
# kustomize v2 and v3+; everything else must be identical.
CONFIGMAP_HASH = re.compile(r"\bray-iap-proxy-[a-z0-9]{10}\b")


def test_the_shipped_overlays_are_rendered(manifests_dir: Path) -> None:
    assert overlay_names() == sorted(TENANT_OVERLAYS)
    assert sorted(p.stem for p in manifests_dir.glob("*.yaml")) == sorted(TENANT_OVERLAYS)


def test_each_overlay_is_one_multi_document_file(manifests_dir: Path, overlay: Rendered) -> None:
    text = (manifests_dir / f"{overlay.name}.yaml").read_text()
    assert text.count("\n---\n") == len(overlay.objects) - 1
    assert len(overlay.objects) >= 10


def test_each_overlay_is_one_tenant_namespace(overlay: Rendered) -> None:
    namespace = overlay.namespace
    assert namespace == TENANT_OVERLAYS[overlay.name]
    for obj in overlay.objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in obj["metadata"], where
        else:
            assert obj["metadata"].get("namespace") == namespace, where


@pytest.mark.parametrize(
    "kinds, overlays",
    [
        (
            {
                "Namespace",
                "ServiceAccount",
                "ConfigMap",
                "RayCluster",
                "Service",
                "NetworkPolicy",
                "PodMonitoring",
            },
            ["team-a", "team-b", "team-a-gateway", "team-a-rbac"],
        ),
        ({"Ingress", "BackendConfig", "ManagedCertificate"}, ["team-a", "team-b", "team-a-rbac"]),
        ({"Gateway", "HTTPRoute", "GCPBackendPolicy", "HealthCheckPolicy"}, ["team-a-gateway"]),
        ({"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}, ["team-a-rbac"]),
    ],
    ids=["common", "ingress", "gateway", "rbac"],
)
def test_overlay_contents(rendered: dict[str, Rendered], kinds: set[str], overlays: list[str]) -> None:
    for name in overlays:
        present = {o["kind"] for o in rendered[name].objects}
        assert kinds <= present, f"{name} lacks {kinds - present}"


def test_no_secret_is_shipped(overlay: Rendered) -> None:
    """The Ray token Secret is created out of band (docs/deploy-gke.md), never kept in git."""
    assert overlay.of_kind("Secret") == []


def _kubectls() -> list[str]:
    """Every distinct kubectl here: the project's, the one on PATH, Debian's, $K8S_EXTRA_KUBECTLS."""
    candidates = [find_kubectl(), shutil.which("kubectl"), "/usr/bin/kubectl"]
    candidates += os.environ.get("K8S_EXTRA_KUBECTLS", "").split(os.pathsep)
    seen: dict[str, str] = {}
    for c in candidates:
        if c and Path(c).is_file():
            seen.setdefault(os.path.realpath(c), c)
    return list(seen.values())


def _normalized(documents: list[dict]) -> dict[tuple[str, str], str]:
    import yaml

    return {
        (d["kind"], CONFIGMAP_HASH.sub("ray-iap-proxy-HASH", d["metadata"]["name"])): CONFIGMAP_HASH.sub(
            "ray-iap-proxy-HASH", yaml.safe_dump(d)
        )
        for d in documents
    }


@pytest.mark.parametrize("other_kubectl", _kubectls())
def test_every_kustomize_renders_the_same(other_kubectl: str, overlay: Rendered, tmp_path: Path) -> None:
    """Syntax stays within what both kustomize v2.0.3 (Debian's kubectl 1.20) and v5 accept."""
    out = tmp_path / "out.yaml"
    with out.open("w") as f:
        result = subprocess.run(
            [other_kubectl, "kustomize", str(OVERLAYS_DIR / overlay.name)],
            cwd=REPO,
            stdout=f,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert _normalized(load_documents(out)) == _normalized(overlay.objects)
