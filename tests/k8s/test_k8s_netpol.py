"""Who can reach which port of the Ray pods, by evaluating the rendered NetworkPolicies.

The evaluator (k8s_netpol.py) is tested first on small tables, then used on the overlays: load
balancer ranges reach the sidecar's dashboard port (8265) and, where Ray Client is a load-balancer
backend (the Gateway variant), its gRPC port (10001), and nothing else; KubeRay's operator and RayJob
submitters reach the sidecar's 8265 and nothing else; nothing outside a RayCluster reaches any Ray
port, and the two tenants cannot reach each other.
"""

from __future__ import annotations

from typing import Any

import pytest
from k8s_netpol import ALL_PORTS, NO_PORTS, Cluster, IpSource, PodEndpoint
from k8s_render import (
    KUBERAY_OPERATOR_LABELS,
    KUBERAY_OPERATOR_NAMESPACE,
    SIDECAR_NAME,
    RayPod,
    Rendered,
    all_ray_pods,
    kuberay_head_service_ports,
    submitter_pod_labels,
)

SIDECAR_PORT = 8265
METRICS_PORT = 9090
CLIENT_PORT = 10001  # the sidecar's Ray Client (gRPC) port
# The sidecar's ports the load balancer reaches, per overlay: GKE Ingress cannot speak cleartext
# HTTP/2 to a pod (docs/ray-client.md), so only the Gateway variant makes Ray Client a backend.
LB_PORTS = {
    "team-a": {SIDECAR_PORT},
    "team-b": {SIDECAR_PORT},
    "team-a-rbac": {SIDECAR_PORT},
    "team-a-gateway": {SIDECAR_PORT, CLIENT_PORT},
}
METRICS_NAMESPACES = {"gmp-system", "gke-gmp-system"}  # Managed Service for Prometheus collectors
# Google front ends and health checkers (global external / classic ALB), IPv4 and IPv6.
LB_SOURCES = [
    "35.191.0.1",
    "35.191.255.254",
    "130.211.0.1",
    "130.211.3.254",
    "2600:2d00:1:b029::1",
    "2600:2d00:1:1::5",
]
OUTSIDE_SOURCES = [
    "203.0.113.7",  # the Internet
    "8.8.8.8",
    "35.235.240.1",  # IAP TCP forwarding
    "130.211.4.1",  # just outside the LB ranges
    "35.192.0.1",
    "10.8.1.20",  # other pods, nodes, the VPC
    "10.128.0.5",
]


# --- the evaluator itself -------------------------------------------------------------------


def _policy(
    ns: str,
    selector: dict[str, Any],
    ingress: list[dict[str, Any]] | None = None,
    types: list[str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": selector}
    if ingress is not None:
        spec["ingress"] = ingress
    if types is not None:
        spec["policyTypes"] = types
    return {"kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": ns}, "spec": spec}


DST = PodEndpoint("a", {"app": "db"}, named_ports={"sql": (5432, "TCP"), "dns": (53, "UDP")})
SAME_NS_WEB = PodEndpoint("a", {"app": "web"})
OTHER_NS_WEB = PodEndpoint("b", {"app": "web"})
NAMESPACES = [{"kind": "Namespace", "metadata": {"name": "b", "labels": {"team": "b"}}}]

EVALUATOR_CASES = [
    ("no policy: open", [], SAME_NS_WEB, "TCP", ALL_PORTS),
    (
        "egress-only policy does not isolate ingress",
        [_policy("a", {}, types=["Egress"])],
        SAME_NS_WEB,
        "TCP",
        ALL_PORTS,
    ),
    ("default deny", [_policy("a", {}, types=["Ingress"])], SAME_NS_WEB, "TCP", NO_PORTS),
    (
        "policy in another namespace does not apply",
        [_policy("b", {}, types=["Ingress"])],
        SAME_NS_WEB,
        "TCP",
        ALL_PORTS,
    ),
    (
        "podSelector peer: same namespace",
        [_policy("a", {}, [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}])],
        SAME_NS_WEB,
        "TCP",
        ALL_PORTS,
    ),
    (
        "podSelector peer: never another namespace",
        [_policy("a", {}, [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}])],
        OTHER_NS_WEB,
        "TCP",
        NO_PORTS,
    ),
    (
        "namespaceSelector AND podSelector in one peer",
        [
            _policy(
                "a",
                {},
                [
                    {
                        "from": [
                            {
                                "namespaceSelector": {"matchLabels": {"team": "b"}},
                                "podSelector": {"matchLabels": {"app": "api"}},
                            }
                        ]
                    }
                ],
            )
        ],
        OTHER_NS_WEB,
        "TCP",
        NO_PORTS,
    ),
    (
        "namespaceSelector OR podSelector as two peers",
        [
            _policy(
                "a",
                {},
                [
                    {
                        "from": [
                            {"namespaceSelector": {"matchLabels": {"team": "b"}}},
                            {"podSelector": {"matchLabels": {"app": "api"}}},
                        ]
                    }
                ],
            )
        ],
        OTHER_NS_WEB,
        "TCP",
        ALL_PORTS,
    ),
    (
        "namespaceSelector by kubernetes.io/metadata.name",
        [
            _policy(
                "a",
                {},
                [
                    {
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchExpressions": [
                                        {
                                            "key": "kubernetes.io/metadata.name",
                                            "operator": "In",
                                            "values": ["b"],
                                        }
                                    ]
                                }
                            }
                        ]
                    }
                ],
            )
        ],
        OTHER_NS_WEB,
        "TCP",
        ALL_PORTS,
    ),
    (
        "named port resolves on the destination",
        [_policy("a", {}, [{"ports": [{"port": "sql"}]}])],
        SAME_NS_WEB,
        "TCP",
        frozenset({5432}),
    ),
    (
        "named port with another protocol",
        [_policy("a", {}, [{"ports": [{"port": "dns"}]}])],
        SAME_NS_WEB,
        "TCP",
        NO_PORTS,
    ),
    (
        "unknown named port allows nothing",
        [_policy("a", {}, [{"ports": [{"port": "nope"}]}])],
        SAME_NS_WEB,
        "TCP",
        NO_PORTS,
    ),
    (
        "endPort range",
        [_policy("a", {}, [{"ports": [{"port": 7000, "endPort": 7002}]}])],
        SAME_NS_WEB,
        "TCP",
        frozenset({7000, 7001, 7002}),
    ),
    (
        "UDP rule does not open TCP",
        [_policy("a", {}, [{"ports": [{"protocol": "UDP", "port": 53}]}])],
        SAME_NS_WEB,
        "TCP",
        NO_PORTS,
    ),
    (
        "rules add up",
        [_policy("a", {}, [{"ports": [{"port": 1}]}]), _policy("a", {}, [{"ports": [{"port": 2}]}])],
        SAME_NS_WEB,
        "TCP",
        frozenset({1, 2}),
    ),
    (
        "ipBlock: inside",
        [_policy("a", {}, [{"from": [{"ipBlock": {"cidr": "35.191.0.0/16"}}]}])],
        IpSource("35.191.1.1"),
        "TCP",
        ALL_PORTS,
    ),
    (
        "ipBlock: except",
        [_policy("a", {}, [{"from": [{"ipBlock": {"cidr": "35.191.0.0/16", "except": ["35.191.1.0/24"]}}]}])],
        IpSource("35.191.1.1"),
        "TCP",
        NO_PORTS,
    ),
    (
        "ipBlock: other family",
        [_policy("a", {}, [{"from": [{"ipBlock": {"cidr": "35.191.0.0/16"}}]}])],
        IpSource("2600:2d00:1:1::1"),
        "TCP",
        NO_PORTS,
    ),
    (
        "pod peer never matches an address",
        [_policy("a", {}, [{"from": [{"podSelector": {}}]}])],
        IpSource("10.8.0.10"),
        "TCP",
        NO_PORTS,
    ),
    (
        "matchExpressions NotIn/DoesNotExist",
        [
            _policy(
                "a",
                {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["db"]}]},
                types=["Ingress"],
            )
        ],
        SAME_NS_WEB,
        "TCP",
        ALL_PORTS,
    ),
]


@pytest.mark.parametrize(
    "name, policies, src, protocol, expected", EVALUATOR_CASES, ids=[c[0] for c in EVALUATOR_CASES]
)
def test_evaluator(
    name: str, policies: list[dict[str, Any]], src: Any, protocol: str, expected: frozenset[int]
) -> None:
    assert Cluster(policies + NAMESPACES).allowed_ports(src, DST, protocol) == expected


# --- the rendered overlays ------------------------------------------------------------------


def _endpoints(overlay: Rendered) -> list[tuple[RayPod, PodEndpoint]]:
    return [(pod, PodEndpoint.of(pod)) for pod in all_ray_pods(overlay)]


def _head(overlay: Rendered) -> PodEndpoint:
    (head,) = [e for p, e in _endpoints(overlay) if p.node_type == "head"]
    return head


def test_every_ray_pod_is_isolated(overlay: Rendered) -> None:
    cluster = Cluster(overlay.objects)
    for pod, endpoint in _endpoints(overlay):
        assert cluster.is_isolated(endpoint), pod.name
    # ... and so is anything else started in the namespace.
    assert cluster.is_isolated(PodEndpoint(overlay.namespace, {"app": "jupyter"}))


def _sidecar_ports(overlay: Rendered) -> dict[str, int]:
    head = next(p for p, _ in _endpoints(overlay) if p.node_type == "head")
    return {p["name"]: p["containerPort"] for p in head.container(SIDECAR_NAME)["ports"]}


def test_load_balancer_reaches_exactly_the_sidecar_ports_it_has_backends_on(overlay: Rendered) -> None:
    """The ranges reach the sidecar's ports that a Service hands to the load balancer, and no other
    port: not the sidecar's metrics, not Ray's, nothing on the workers."""
    cluster = Cluster(overlay.objects)
    sidecar = _sidecar_ports(overlay)
    assert sidecar == {"http": SIDECAR_PORT, "metrics": METRICS_PORT, "client": CLIENT_PORT}
    backends = {
        sidecar[port["targetPort"]] for s in overlay.of_kind("Service") for port in s["spec"]["ports"]
    }
    assert backends == LB_PORTS[overlay.name]
    for ip in LB_SOURCES:
        for pod, endpoint in _endpoints(overlay):
            expected = LB_PORTS[overlay.name] if pod.node_type == "head" else set()
            assert cluster.allowed_ports(IpSource(ip), endpoint) == expected, (ip, pod.name)
            assert cluster.allowed_ports(IpSource(ip), endpoint, "UDP") == NO_PORTS


def _operator(namespace: str = KUBERAY_OPERATOR_NAMESPACE, **labels: str) -> PodEndpoint:
    return PodEndpoint(namespace, {**KUBERAY_OPERATOR_LABELS, **labels}, ip="10.8.7.7")


def test_kuberay_operator_reaches_only_the_sidecar_dashboard_port(overlay: Rendered) -> None:
    """The operator calls http://<cluster>-head-svc.<ns>.svc:<port named dashboard> (RayJob status,
    submit, stop, delete; RayService deploys): that port is the sidecar's, and the only one it gets."""
    cluster = Cluster(overlay.objects)
    for pod, endpoint in _endpoints(overlay):
        expected = {SIDECAR_PORT} if pod.node_type == "head" else set()
        assert cluster.allowed_ports(_operator(), endpoint) == expected, pod.name
        for other in (  # not another pod of its namespace, not an operator elsewhere
            PodEndpoint(KUBERAY_OPERATOR_NAMESPACE, {"app": "webhook"}),
            PodEndpoint(KUBERAY_OPERATOR_NAMESPACE, {"app.kubernetes.io/name": "kuberay-operator"}),
            _operator("ray-system"),
            _operator(overlay.namespace),
        ):
            assert cluster.allowed_ports(other, endpoint) == NO_PORTS, (other, pod.name)
    (head,) = [p for p in all_ray_pods(overlay) if p.node_type == "head"]
    head_service = kuberay_head_service_ports(overlay.one("RayCluster"))
    assert head_service["dashboard"] == SIDECAR_PORT == _sidecar_ports(overlay)["http"]
    assert int(head.ray_start_params["dashboard-port"]) != SIDECAR_PORT  # Ray's own is on loopback


def test_rayjob_submitters_reach_only_the_sidecar_dashboard_port(overlay: Rendered) -> None:
    """A RayJob's submitter pod (K8sJobMode) runs `ray job submit/status/logs` against the same port."""
    cluster = Cluster(overlay.objects)
    submitter = PodEndpoint(overlay.namespace, submitter_pod_labels("train"), ip="10.8.4.4")
    for pod, endpoint in _endpoints(overlay):
        expected = {SIDECAR_PORT} if pod.node_type == "head" else set()
        assert cluster.allowed_ports(submitter, endpoint) == expected, pod.name
        for other in (  # a submitter of another namespace; a Ray pod of another cluster posing as one
            PodEndpoint("other-tenant", submitter_pod_labels("train")),
            PodEndpoint(
                overlay.namespace,
                {**submitter_pod_labels("train"), "ray.io/node-type": "head", "ray.io/cluster": "other"},
            ),
            PodEndpoint(overlay.namespace, {"ray.io/originated-from-crd": "RayJob"}),
        ):
            assert cluster.allowed_ports(other, endpoint) == NO_PORTS, (other.labels, pod.name)


@pytest.mark.parametrize("ip", OUTSIDE_SOURCES)
def test_nothing_else_from_outside(overlay: Rendered, ip: str) -> None:
    cluster = Cluster(overlay.objects)
    for pod, endpoint in _endpoints(overlay):
        assert cluster.allowed_ports(IpSource(ip), endpoint) == NO_PORTS, pod.name


def _impostors(overlay: Rendered, namespace: str) -> list[PodEndpoint]:
    """Pods that copy the Ray pods' labels, or carry none, in `namespace`."""
    return [PodEndpoint(namespace, dict(p.labels), ip="10.8.3.3") for p in all_ray_pods(overlay)] + [
        PodEndpoint(namespace, {}, ip="10.8.3.4"),
        PodEndpoint(namespace, {"app": "jupyter"}, ip="10.8.3.5"),
    ]


@pytest.mark.parametrize(
    "namespace",
    ["default", "kube-system", "other-tenant", KUBERAY_OPERATOR_NAMESPACE, *sorted(METRICS_NAMESPACES)],
)
def test_other_namespaces_reach_no_ray_port(overlay: Rendered, namespace: str) -> None:
    """Only the metrics collectors' namespaces get in at all, and only to the sidecar's /metrics."""
    cluster = Cluster(overlay.objects)
    for src in _impostors(overlay, namespace):
        for pod, endpoint in _endpoints(overlay):
            expected = (
                {METRICS_PORT} if namespace in METRICS_NAMESPACES and pod.node_type == "head" else set()
            )
            assert cluster.allowed_ports(src, endpoint) == expected, (src.labels, pod.name)


def test_other_pods_of_the_namespace_reach_no_ray_port(overlay: Rendered) -> None:
    cluster = Cluster(overlay.objects)
    for src in (
        PodEndpoint(overlay.namespace, {}),
        PodEndpoint(overlay.namespace, {"app": "jupyter"}),
        PodEndpoint(overlay.namespace, {"ray.io/node-type": "head"}),
    ):
        for pod, endpoint in _endpoints(overlay):
            assert cluster.allowed_ports(src, endpoint) == NO_PORTS, (src.labels, pod.name)


def test_pods_of_the_same_raycluster_reach_each_other(overlay: Rendered) -> None:
    """GCS, raylet, object manager, agent and worker ports are chosen by Ray: all must pass."""
    cluster = Cluster(overlay.objects)
    endpoints = _endpoints(overlay)
    for _, src in endpoints:
        for pod, dst in endpoints:
            assert cluster.allowed_ports(src, dst) == ALL_PORTS, pod.name


def test_ray_ports_are_closed_to_everything_but_the_cluster(overlay: Rendered) -> None:
    """Every Ray port on the head, named one by one, is closed to every non-cluster source. (8265 and
    10001, Ray's defaults for the dashboard and Ray Client, are the sidecar's: Ray's moved.)"""
    head_pod = next(p for p, _ in _endpoints(overlay) if p.node_type == "head")
    params = head_pod.ray_start_params
    ray_ports = {
        6379,
        8000,
        8080,
        52365,
        int(params["dashboard-port"]),
        int(params["ray-client-server-port"]),
        int(params["min-worker-port"]),
        int(params["max-worker-port"]),
        10002,
        19999,
        40000,
        65535,
    }
    assert not ray_ports & set(_sidecar_ports(overlay).values())
    cluster = Cluster(overlay.objects)
    sources = [IpSource(ip) for ip in LB_SOURCES + OUTSIDE_SOURCES]
    sources += _impostors(overlay, "default") + _impostors(overlay, overlay.namespace)[-2:]
    sources += _impostors(overlay, "gke-gmp-system") + _impostors(overlay, KUBERAY_OPERATOR_NAMESPACE)
    sources += [_operator(), PodEndpoint(overlay.namespace, submitter_pod_labels("train"))]
    for src in sources:
        assert not ray_ports & cluster.allowed_ports(src, _head(overlay)), src


def test_kuberays_head_service_opens_nothing_beyond_the_sidecar(overlay: Rendered) -> None:
    """KubeRay's `<cluster>-head-svc` carries every port containers[0] declares (and metrics): the
    sidecar's dashboard port, which KubeRay's callers reach, and Ray's GCS and metrics, which only
    the RayCluster's own pods reach. No client or serve port is declared on it at all."""
    cluster = Cluster(overlay.objects)
    ports = kuberay_head_service_ports(overlay.one("RayCluster"))
    assert ports == {"gcs-server": 6379, "dashboard": SIDECAR_PORT, "metrics": 8080}
    callers = [_operator(), PodEndpoint(overlay.namespace, submitter_pod_labels("train"))]
    callers += [IpSource(ip) for ip in LB_SOURCES]
    for src in callers:
        reached = {name for name, port in ports.items() if port in cluster.allowed_ports(src, _head(overlay))}
        assert reached == {"dashboard"}, src


def test_the_two_tenants_cannot_reach_each_other(rendered: dict[str, Rendered]) -> None:
    a, b = rendered["team-a"], rendered["team-b"]
    assert a.namespace != b.namespace
    cluster = Cluster(a.objects + b.objects)  # both applied to one GKE cluster
    for src_overlay, dst_overlay in ((a, b), (b, a)):
        sources = [e for _, e in _endpoints(src_overlay)]
        sources += [PodEndpoint(src_overlay.namespace, {"app": "jupyter"})]
        sources += [PodEndpoint(src_overlay.namespace, submitter_pod_labels("train"))]
        for src in sources:
            for pod, dst in _endpoints(dst_overlay):
                assert cluster.allowed_ports(src, dst) == NO_PORTS, (src_overlay.name, pod.name)
    # Their own clusters still work.
    for overlay in (a, b):
        (worker,) = [e for p, e in _endpoints(overlay) if p.node_type == "worker"]
        assert 6379 in cluster.allowed_ports(worker, _head(overlay))
