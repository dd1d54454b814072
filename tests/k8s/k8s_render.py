"""Render the kustomize overlays exactly as `make manifests` does, and model what KubeRay builds.

The rendered objects are plain dicts. `ray_pods()` turns each RayCluster into the pods KubeRay
will create from it (head and one per worker group), with the labels KubeRay adds, so the
NetworkPolicy and Pod Security checks look at what really runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
OVERLAYS_DIR = REPO / "k8s" / "overlays"
DEFAULT_KUBERAY_CRD = REPO.parent / "shared" / "reference" / "kuberay-raycluster-crd.yaml"

Obj = dict[str, Any]

RAY_CONTAINER_INDEX = 0  # KubeRay: containers[0] is the Ray container
SIDECAR_NAME = "iap-proxy"


def overlay_names() -> list[str]:
    return sorted(p.parent.name for p in OVERLAYS_DIR.glob("*/kustomization.yaml"))


TOOLS_BIN = REPO / "build" / "tools" / "k8s" / "bin"  # `make k8s-tools`: kubectl, hadolint, off PATH


def find_kubectl() -> str | None:
    """The kubectl `make manifests` should use: $K8S_KUBECTL, build/tools/k8s's (PyPI), the venv's,
    then PATH."""
    if env := os.environ.get("K8S_KUBECTL"):
        return env
    for candidate in (TOOLS_BIN / "kubectl", Path(sys.executable).parent / "kubectl"):
        if candidate.is_file():
            return str(candidate)
    return shutil.which("kubectl")


def find_tool(name: str, *candidates: Path) -> str | None:
    for candidate in (*candidates, TOOLS_BIN / name, Path(sys.executable).parent / name):
        if candidate.is_file():
            return str(candidate)
    return shutil.which(name)


def make_manifests(out_dir: Path, kubectl: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-f",
            "mk/k8s.mk",
            "manifests",
            f"K8S_BUILD_DIR={out_dir}",
            f"K8S_KUBECTL={kubectl}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def load_documents(path: Path) -> list[Obj]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


@dataclass
class Rendered:
    """One rendered overlay."""

    name: str
    objects: list[Obj]

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> Obj:
        found = [o for o in self.of_kind(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    @property
    def namespace(self) -> str:
        return self.one("Namespace")["metadata"]["name"]


# --- what KubeRay makes of a RayCluster -------------------------------------------------


@dataclass
class RayPod:
    cluster: str
    namespace: str
    group: str  # "headgroup" or the worker group's name
    node_type: str  # "head" | "worker"
    labels: dict[str, str]
    spec: Obj
    ray_start_params: dict[str, str]
    template_metadata: Obj = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.cluster}-{'head' if self.node_type == 'head' else self.group}"

    @property
    def ray_container(self) -> Obj:
        return self.spec["containers"][RAY_CONTAINER_INDEX]

    def container(self, name: str) -> Obj:
        (found,) = [c for c in self.spec["containers"] if c["name"] == name]
        return found

    def named_ports(self) -> dict[str, tuple[int, str]]:
        ports: dict[str, tuple[int, str]] = {}
        for c in self.spec.get("containers", []):
            for p in c.get("ports", []):
                if "name" in p:
                    ports[p["name"]] = (p["containerPort"], p.get("protocol", "TCP"))
        return ports


def kuberay_labels(cluster: str, node_type: str, group: str) -> dict[str, str]:
    """Labels KubeRay puts on every Ray pod (its values win over the template's for ray.io/*)."""
    return {
        "ray.io/cluster": cluster,
        "ray.io/node-type": node_type,
        "ray.io/group": group,
        "ray.io/is-ray-node": "yes",
        "ray.io/identifier": f"{cluster}-{node_type}",
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }


def ray_pods(raycluster: Obj) -> Iterator[RayPod]:
    name = raycluster["metadata"]["name"]
    namespace = raycluster["metadata"]["namespace"]
    spec = raycluster["spec"]
    groups = [("head", "headgroup", spec["headGroupSpec"])]
    groups += [("worker", g["groupName"], g) for g in spec.get("workerGroupSpecs", [])]
    for node_type, group, group_spec in groups:
        template = group_spec["template"]
        metadata = template.get("metadata") or {}
        labels = dict(metadata.get("labels") or {})
        labels.update(
            {
                k: v
                for k, v in kuberay_labels(name, node_type, group).items()
                if k.startswith("ray.io/") or k not in labels
            }
        )
        yield RayPod(
            name,
            namespace,
            group,
            node_type,
            labels,
            template["spec"],
            dict(group_spec.get("rayStartParams") or {}),
            metadata,
        )


# KubeRay v1.7.0's in-cluster callers and the head Service it builds (ray-operator/controllers/ray:
# common/service.go getServicePorts, rayjob_controller.go, utils/constant.go; helm-chart/kuberay-operator).
KUBERAY_METRICS_PORT = ("metrics", 8080)  # added to the head Service when containers[0] names none
KUBERAY_DASHBOARD_PORT_NAME = "dashboard"  # what the operator and the submitters look up
KUBERAY_OPERATOR_NAMESPACE = "kuberay-system"  # where docs/deploy-gke.md installs the operator
KUBERAY_OPERATOR_LABELS = {  # the operator pod, as both the Helm chart and config/manager label it
    "app.kubernetes.io/name": "kuberay-operator",
    "app.kubernetes.io/instance": "kuberay-operator",
    "app.kubernetes.io/component": "kuberay-operator",
}


def kuberay_head_service_ports(raycluster: Obj) -> dict[str, int]:
    """name -> port of `<cluster>-head-svc`: containers[0]'s ports (unnamed ones as `<port>-port`),
    plus metrics 8080 unless named; KubeRay's defaults only when containers[0] declares none."""
    head = raycluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][RAY_CONTAINER_INDEX]
    ports = {p.get("name") or f"{p['containerPort']}-port": p["containerPort"] for p in head.get("ports", [])}
    if not ports:
        ports = {"client": 10001, "gcs-server": 6379, "dashboard": 8265, "metrics": 8080, "serve": 8000}
    ports.setdefault(*KUBERAY_METRICS_PORT)
    return ports


def submitter_pod_labels(rayjob: str) -> dict[str, str]:
    """A RayJob's submitter pod (K8sJobMode): KubeRay's three labels, and the Job controller's."""
    return {
        "ray.io/originated-from-cr-name": rayjob,
        "ray.io/originated-from-crd": "RayJob",
        "app.kubernetes.io/created-by": "kuberay-operator",
        "batch.kubernetes.io/job-name": rayjob,
        "job-name": rayjob,
        "batch.kubernetes.io/controller-uid": "0b5d6f8e-1c2a-4e7b-9d3f-2a6c8e4b1f00",
        "controller-uid": "0b5d6f8e-1c2a-4e7b-9d3f-2a6c8e4b1f00",
    }


def all_ray_pods(rendered: Rendered) -> list[RayPod]:
    return [pod for rc in rendered.of_kind("RayCluster") for pod in ray_pods(rc)]


def as_pod_object(pod: RayPod) -> Obj:
    """The pod as a `v1/Pod` object, for schema validation and scanners that don't know RayCluster."""
    metadata = {k: v for k, v in pod.template_metadata.items() if k in ("annotations",)}
    metadata.update({"name": pod.name, "namespace": pod.namespace, "labels": pod.labels})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod.spec}


def labels_match(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics (an empty selector matches everything)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown label selector operator {op!r}")
    return True


def service_selects(service: Obj, pod: RayPod) -> bool:
    """A Service's spec.selector is a plain equality map (no expressions)."""
    selector = service["spec"].get("selector") or {}
    return (
        service["metadata"].get("namespace") == pod.namespace
        and bool(selector)
        and all(pod.labels.get(k) == v for k, v in selector.items())
    )
