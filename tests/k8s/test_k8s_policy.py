"""Security and wiring rules over the rendered objects (what a reviewer would check by eye)."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from k8s_pss import restricted_violations
from k8s_render import (
    KUBERAY_DASHBOARD_PORT_NAME,
    SIDECAR_NAME,
    RayPod,
    Rendered,
    all_ray_pods,
    kuberay_head_service_ports,
    service_selects,
)

PSS_LABELS = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}
ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
GPU = "nvidia.com/gpu"
RAY_TOKEN_KEY = "auth_token"


def _head(overlay: Rendered) -> RayPod:
    (head,) = [p for p in all_ray_pods(overlay) if p.node_type == "head"]
    return head


def _proxy_config(overlay: Rendered) -> dict[str, Any]:
    head = _head(overlay)
    (volume,) = [v for v in head.spec["volumes"] if v["name"] == "proxy-config"]
    configmap = overlay.one("ConfigMap", volume["configMap"]["name"])
    return yaml.safe_load(configmap["data"]["config.yaml"])


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


# --- Pod Security: restricted --------------------------------------------------------------


def test_namespace_enforces_restricted(overlay: Rendered) -> None:
    labels = overlay.one("Namespace")["metadata"]["labels"]
    assert labels.items() >= PSS_LABELS.items()


def test_every_pod_template_is_restricted(overlay: Rendered) -> None:
    pods = all_ray_pods(overlay)
    assert len(pods) >= 2
    assert {p.name: restricted_violations(p.spec) for p in pods} == {p.name: [] for p in pods}


def test_every_container_hardened_beyond_restricted(overlay: Rendered) -> None:
    for pod in all_ray_pods(overlay):
        assert pod.spec["automountServiceAccountToken"] is False
        assert pod.spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod.spec["containers"]:
            sc = c["securityContext"]
            assert sc["privileged"] is False and sc["runAsNonRoot"] is True, c["name"]
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, c["name"]
            assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
            assert c["resources"]["limits"].keys() >= {"cpu", "memory"}, c["name"]
            assert c["readinessProbe"] and c["livenessProbe"], c["name"]
    sidecar = _head(overlay).container(SIDECAR_NAME)
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert sidecar["securityContext"]["runAsUser"] >= 10000


def _mutations() -> list[tuple[str, str]]:
    return [
        ("spec.hostNetwork=true", "hostNetwork"),
        ("volume hostPath", "hostPath"),
        ("container privileged", "privileged"),
        ("container allowPrivilegeEscalation unset", "allowPrivilegeEscalation"),
        ("container adds SYS_ADMIN", "SYS_ADMIN"),
        ("container keeps capabilities", "drop must include ALL"),
        ("container runAsNonRoot false", "runAsNonRoot"),
        ("pod seccomp Unconfined", "Unconfined"),
        ("container hostPort", "hostPort"),
        ("container runAsUser 0", "runAsUser"),
        ("unsafe sysctl", "sysctl"),
    ]


@pytest.mark.parametrize("mutation, expected", _mutations(), ids=[m for m, _ in _mutations()])
def test_restricted_check_catches(overlay: Rendered, mutation: str, expected: str) -> None:
    spec = copy.deepcopy(_head(overlay).spec)
    c = spec["containers"][0]
    match mutation:
        case "spec.hostNetwork=true":
            spec["hostNetwork"] = True
        case "volume hostPath":
            spec["volumes"].append({"name": "h", "hostPath": {"path": "/"}})
        case "container privileged":
            c["securityContext"]["privileged"] = True
        case "container allowPrivilegeEscalation unset":
            del c["securityContext"]["allowPrivilegeEscalation"]
        case "container adds SYS_ADMIN":
            c["securityContext"]["capabilities"]["add"] = ["SYS_ADMIN"]
        case "container keeps capabilities":
            c["securityContext"]["capabilities"] = {}
        case "container runAsNonRoot false":
            c["securityContext"]["runAsNonRoot"] = False
        case "pod seccomp Unconfined":
            spec["securityContext"]["seccompProfile"] = {"type": "Unconfined"}
            del c["securityContext"]["seccompProfile"]
        case "container hostPort":
            c["ports"][0]["hostPort"] = 6379
        case "container runAsUser 0":
            c["securityContext"]["runAsUser"] = 0
        case "unsafe sysctl":
            spec["securityContext"]["sysctls"] = [{"name": "kernel.msgmax", "value": "1"}]
    violations = restricted_violations(spec)
    assert any(expected in v for v in violations), violations


# --- the Ray dashboard stays on loopback, the sidecar owns the public port -------------------


def test_ray_container_first_sidecar_after(overlay: Rendered) -> None:
    for pod in all_ray_pods(overlay):
        assert pod.ray_container["image"].startswith("rayproject/ray:2.60.0")
    names = [c["name"] for c in _head(overlay).spec["containers"]]
    assert names[0] == "ray-head" and names.index(SIDECAR_NAME) >= 1


def test_dashboard_is_bound_to_loopback(overlay: Rendered) -> None:
    for pod in all_ray_pods(overlay):
        host = pod.ray_start_params.get("dashboard-host")
        if pod.node_type == "head":
            assert host is not None, "KubeRay would default dashboard-host to 0.0.0.0"
        if host is not None:
            assert host == "localhost" or ipaddress.ip_address(host).is_loopback
        for c in pod.spec["containers"]:
            assert "RAY_DASHBOARD_HOST" not in {e["name"] for e in c.get("env", [])}
            assert "--dashboard-host" not in " ".join(c.get("args", []) + c.get("command", []))


def test_sidecar_owns_the_public_port_and_forwards_to_the_dashboard(overlay: Rendered) -> None:
    head = _head(overlay)
    config = _proxy_config(overlay)
    listen_host, listen_port = _host_port(config["listen"])
    upstream = urlsplit(config["upstream"])
    sidecar_ports = {p["name"]: p["containerPort"] for p in head.container(SIDECAR_NAME)["ports"]}
    assert sidecar_ports == {
        "http": listen_port,
        "metrics": _host_port(config["metrics_listen"])[1],
        "client": _host_port(config["client_listen"])[1],
    }
    assert listen_host == "0.0.0.0"
    assert upstream.scheme == "http"
    assert (upstream.hostname, upstream.port) == (
        head.ray_start_params["dashboard-host"],
        int(head.ray_start_params["dashboard-port"]),
    )
    assert int(head.ray_start_params["dashboard-port"]) != listen_port
    # The Ray container declares the sidecar's port as "dashboard" (for KubeRay's head Service, below),
    # and never a port Ray itself listens on for clients: not its dashboard, not its client server.
    ray_ports = {p["name"]: p["containerPort"] for p in head.ray_container.get("ports", [])}
    assert ray_ports[KUBERAY_DASHBOARD_PORT_NAME] == listen_port
    assert upstream.port not in ray_ports.values()
    assert int(head.ray_start_params["ray-client-server-port"]) not in ray_ports.values()


def test_ray_client_port_is_the_sidecars_and_it_forwards_to_rays_client_server(overlay: Rendered) -> None:
    """10001 (Ray Client's usual port) is the sidecar's gRPC listener, which relays admitted calls to
    Ray's own client server, moved to a port on loopback (only the same RayCluster reaches it)."""
    head = _head(overlay)
    config = _proxy_config(overlay)
    client_port = int(head.ray_start_params["ray-client-server-port"])
    assert client_port != 10001
    assert _host_port(config["client_listen"]) == ("0.0.0.0", 10001)
    upstream_host, upstream_port = _host_port(config["client_upstream"])
    assert ipaddress.ip_address(upstream_host).is_loopback and upstream_port == client_port
    low, high = int(head.ray_start_params["min-worker-port"]), int(head.ray_start_params["max-worker-port"])
    for port in (client_port, int(head.ray_start_params["dashboard-port"]), 10001, 8265):
        assert not low <= port <= high, f"{port} inside the worker port range"


def test_both_containers_have_probes_and_the_sidecar_probes_its_health_paths(overlay: Rendered) -> None:
    head = _head(overlay)
    sidecar = head.container(SIDECAR_NAME)
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert sidecar["startupProbe"]["httpGet"]["path"] == "/healthz"
    for pod in all_ray_pods(overlay):
        agent_port = int(pod.ray_start_params.get("dashboard-agent-listen-port", 52365))
        for probe in ("livenessProbe", "readinessProbe"):
            assert pod.ray_container[probe]["httpGet"] == {"path": "/api/healthz", "port": agent_port}


def test_sidecar_reads_its_config_and_the_ray_token_from_mounts(overlay: Rendered) -> None:
    head = _head(overlay)
    raycluster = overlay.one("RayCluster")
    sidecar = head.container(SIDECAR_NAME)
    config = _proxy_config(overlay)
    mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
    volumes = {v["name"]: v for v in head.spec["volumes"]}
    config_path = f"{mounts['proxy-config']['mountPath']}/config.yaml"
    assert sidecar["args"] == ["serve", "--config", config_path, "--log-format", "json"]
    auth = raycluster["spec"]["authOptions"]
    assert auth["mode"] == "token"
    token_volume = volumes["ray-token"]["secret"]
    assert token_volume["secretName"] == auth["secretName"]
    assert token_volume["items"] == [{"key": RAY_TOKEN_KEY, "path": RAY_TOKEN_KEY}]
    assert config["ray_token_file"] == f"{mounts['ray-token']['mountPath']}/{RAY_TOKEN_KEY}"
    assert all(m.get("readOnly") for name, m in mounts.items() if name != "proxy-tmp")
    assert mounts["proxy-tmp"]["mountPath"] == "/tmp" and "emptyDir" in volumes["proxy-tmp"]
    # The secret files are 0440 root:fsGroup: the sidecar (another uid) reads them through fsGroup.
    assert token_volume["defaultMode"] == 0o440 == volumes["proxy-config"]["configMap"]["defaultMode"]
    assert head.spec["securityContext"]["fsGroup"] not in (None, 0)


def test_grace_period_outlasts_the_proxy_drain(overlay: Rendered) -> None:
    config = _proxy_config(overlay)
    assert _head(overlay).spec["terminationGracePeriodSeconds"] > config["shutdown_grace_seconds"]


# --- Services -----------------------------------------------------------------------------


def _target_container(
    service: dict[str, Any], port: dict[str, Any], pods: list[RayPod]
) -> set[tuple[str, str]]:
    """(pod, container) pairs that the Service port's targetPort lands on."""
    target = port.get("targetPort", port["port"])
    hits = set()
    for pod in (p for p in pods if service_selects(service, p)):
        for c in pod.spec["containers"]:
            for cp in c.get("ports", []):
                if target in (cp.get("name"), cp["containerPort"]):
                    hits.add((pod.name, c["name"]))
    return hits


def test_services_expose_only_sidecar_ports(overlay: Rendered) -> None:
    pods = all_ray_pods(overlay)
    head = _head(overlay)
    services = overlay.of_kind("Service")
    assert services
    for service in services:
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
        selected = [p.name for p in pods if service_selects(service, p)]
        assert selected == [head.name], f"{service['metadata']['name']} selects {selected}"
        for port in service["spec"]["ports"]:
            assert _target_container(service, port, pods) == {(head.name, SIDECAR_NAME)}


def test_load_balancers_point_only_at_our_services(overlay: Rendered) -> None:
    ours = {s["metadata"]["name"] for s in overlay.of_kind("Service")}
    backends = set()
    for ingress in overlay.of_kind("Ingress"):
        for rule in ingress["spec"]["rules"]:
            backends |= {p["backend"]["service"]["name"] for p in rule["http"]["paths"]}
        assert "defaultBackend" not in ingress["spec"]
    for route in overlay.of_kind("HTTPRoute"):
        backends |= {ref["name"] for rule in route["spec"]["rules"] for ref in rule["backendRefs"]}
    assert backends and backends <= ours
    assert not any(name.endswith("-head-svc") for name in backends)


def test_kuberays_head_service_sends_its_dashboard_port_to_the_sidecar(overlay: Rendered) -> None:
    """KubeRay copies containers[0].ports into <cluster>-head-svc (and adds metrics 8080), and its
    operator and RayJob submitters call that Service's port named "dashboard".

    containers[0] declares GCS (for the workers) and, as "dashboard", the sidecar's port: so the
    operator's and the submitters' requests land on the sidecar, never on Ray's dashboard (on
    loopback). No client or serve port is declared; the Service stays headless and internal, and
    the NetworkPolicies confine GCS and metrics to the cluster (test_k8s_netpol.py).
    """
    raycluster = overlay.one("RayCluster")
    head = _head(overlay)
    listen_port = _host_port(_proxy_config(overlay)["listen"])[1]
    assert head.ray_container["ports"] == [
        {"name": "gcs-server", "containerPort": 6379, "protocol": "TCP"},
        {"name": KUBERAY_DASHBOARD_PORT_NAME, "containerPort": listen_port, "protocol": "TCP"},
    ]
    ports = kuberay_head_service_ports(raycluster)
    assert ports == {"gcs-server": 6379, KUBERAY_DASHBOARD_PORT_NAME: listen_port, "metrics": 8080}
    # Headless, so a caller connects to the pod's own port: the one the sidecar listens on.
    sidecar_ports = {p["containerPort"] for p in head.container(SIDECAR_NAME)["ports"]}
    assert ports[KUBERAY_DASHBOARD_PORT_NAME] in sidecar_ports
    assert ports[KUBERAY_DASHBOARD_PORT_NAME] != int(head.ray_start_params["dashboard-port"])
    assert "serviceType" not in raycluster["spec"]["headGroupSpec"]
    assert not raycluster["spec"]["headGroupSpec"].get("enableIngress")
    assert "headService" not in raycluster["spec"]["headGroupSpec"]
    assert "headServiceAnnotations" not in raycluster["spec"]


def test_podmonitoring_scrapes_only_the_sidecar_metrics_port(overlay: Rendered) -> None:
    head = _head(overlay)
    (monitoring,) = overlay.of_kind("PodMonitoring")
    assert monitoring["apiVersion"] == "monitoring.googleapis.com/v1"
    selector = monitoring["spec"]["selector"]
    assert [
        p.name
        for p in all_ray_pods(overlay)
        if all(p.labels.get(k) == v for k, v in selector["matchLabels"].items())
    ] == [head.name]
    (endpoint,) = monitoring["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["interval"].endswith("s")
    sidecar_ports = {p["name"]: p["containerPort"] for p in head.container(SIDECAR_NAME)["ports"]}
    assert sidecar_ports[endpoint["port"]] == _host_port(_proxy_config(overlay)["metrics_listen"])[1]


# --- scheduling -----------------------------------------------------------------------------


def _pinned_to_accelerators(spec: dict[str, Any]) -> bool:
    if spec.get("nodeSelector", {}).get(ACCELERATOR_LABEL):
        return True
    required = (
        spec.get("affinity", {})
        .get("nodeAffinity", {})
        .get("requiredDuringSchedulingIgnoredDuringExecution", {})
    )
    terms = required.get("nodeSelectorTerms", [])
    return bool(terms) and all(
        any(
            e["key"] == ACCELERATOR_LABEL and e["operator"] in ("In", "Exists")
            for e in t.get("matchExpressions", [])
        )
        for t in terms
    )


def test_head_and_gpu_workers_run_only_on_accelerator_nodes(overlay: Rendered) -> None:
    for pod in all_ray_pods(overlay):
        assert _pinned_to_accelerators(pod.spec), pod.name
        assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in pod.spec["tolerations"], pod.name
        resources = pod.ray_container["resources"]
        assert int(resources["limits"][GPU]) >= 1 and resources["requests"][GPU] == resources["limits"][GPU]


# --- identity -------------------------------------------------------------------------------


SA_TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"  # where the in-cluster client looks
REVIEWER_RULES = [
    {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}
]
RAY_VERBS = {"view", "logs", "submit", "stop", "delete", "serve", "debug", "client"}


def _token_mounts(pod: RayPod) -> dict[str, list[str]]:
    """container -> mount paths of volumes that carry a ServiceAccount token."""
    token_volumes = {
        v["name"]
        for v in pod.spec.get("volumes", [])
        if any("serviceAccountToken" in src for src in v.get("projected", {}).get("sources", []))
    }
    return {
        c["name"]: [m["mountPath"] for m in c.get("volumeMounts", []) if m["name"] in token_volumes]
        for c in pod.spec["containers"]
    }


def test_kubernetes_api_access_only_for_the_rbac_source(overlay: Rendered) -> None:
    """Ray never holds a Kubernetes token (no automount anywhere: the ServiceAccount is per pod, and
    the Ray container runs user code). Where the config uses Kubernetes RBAC, the sidecar alone gets
    its ServiceAccount's token (a projected volume), and that ServiceAccount may create
    SubjectAccessReviews and nothing else; elsewhere there is no RBAC object at all."""
    accounts = {sa["metadata"]["name"]: sa for sa in overlay.of_kind("ServiceAccount")}
    for sa in accounts.values():
        assert sa["automountServiceAccountToken"] is False
    for pod in all_ray_pods(overlay):
        assert pod.spec["serviceAccountName"] in accounts
        assert pod.spec["automountServiceAccountToken"] is False
    assert overlay.one("RayCluster")["spec"]["enableInTreeAutoscaling"] is False  # it would need a token
    head, config = _head(overlay), _proxy_config(overlay)
    mounts = {p.name: _token_mounts(p) for p in all_ray_pods(overlay)}
    if "kubernetes_rbac" not in config:
        for kind in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"):
            assert overlay.of_kind(kind) == []
        assert all(paths == [] for pod in mounts.values() for paths in pod.values())
        return
    expected = {p.name: {c["name"]: [] for c in p.spec["containers"]} for p in all_ray_pods(overlay)}
    expected[head.name][SIDECAR_NAME] = [SA_TOKEN_DIR]
    assert mounts == expected
    (reviewer,) = overlay.of_kind("ClusterRole")
    assert reviewer["rules"] == REVIEWER_RULES
    (binding,) = overlay.of_kind("ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": reviewer["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": head.spec["serviceAccountName"], "namespace": overlay.namespace}
    ]
    cluster = overlay.one("RayCluster")["metadata"]["name"]
    assert config["kubernetes_rbac"]["ray_cluster"] == cluster
    roles = {r["metadata"]["name"]: r for r in overlay.of_kind("Role")}
    for role in roles.values():  # the example Roles grant the proxy's verbs on this cluster, nothing else
        for rule in role["rules"]:
            assert rule["apiGroups"] == ["ray.io"] and rule["resources"] == ["rayclusters/proxy"]
            assert rule["resourceNames"] == [cluster] and set(rule["verbs"]) <= RAY_VERBS
    for rb in overlay.of_kind("RoleBinding"):  # people and groups, never a ServiceAccount of the pods
        assert rb["roleRef"]["kind"] == "Role" and rb["roleRef"]["name"] in roles
        assert {s["kind"] for s in rb["subjects"]} <= {"User", "Group"}
