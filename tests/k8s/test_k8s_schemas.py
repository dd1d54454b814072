"""Every rendered object against a schema, offline.

- Built-in kinds: the Kubernetes 1.37 OpenAPI schemas shipped by `kubernetes-validate`, in
  strict mode (unknown fields are errors). The pods KubeRay builds from the RayCluster are
  checked the same way, as v1/Pod.
- RayCluster: the KubeRay v1.7.0 CRD's openAPIV3Schema, read from ../shared/reference (skipped
  with a reason where that file is absent), made strict the way the API server prunes: unknown
  fields are errors. CEL rules (x-kubernetes-validations) are not evaluated.
- Gateway, HTTPRoute, GCPBackendPolicy, HealthCheckPolicy, ManagedCertificate: the validators
  @kubernetes-models generated from their CRDs (npm, run with node). Those validators ignore
  unknown fields, and their BackendConfig schema is too old to use (it still requires
  iap.oauthclientCredentials, which GKE made optional for the Google-managed OAuth client).
- BackendConfig and the fields our design depends on in all six GKE/Gateway kinds: checked by
  hand below.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from k8s_render import DEFAULT_KUBERAY_CRD, REPO, SIDECAR_NAME, Rendered, all_ray_pods, as_pod_object

from proxy.authz.routes.ray_client import CALL_KINDS

KUBERNETES_VERSION = "1.37.0"
BUILTIN_GROUPS = {"v1", "networking.k8s.io/v1", "rbac.authorization.k8s.io/v1", "apps/v1", "policy/v1"}
CRD_MODEL_KINDS = {"Gateway", "HTTPRoute", "GCPBackendPolicy", "HealthCheckPolicy", "ManagedCertificate"}
CRD_MODELS_DIR = Path(
    os.environ.get("K8S_CRD_MODELS", REPO / "build" / "tools" / "crd-models" / "node_modules")
)
SIDECAR_PORT = 8265
H2C = "kubernetes.io/h2c"  # Gateway API: HTTP/2 with prior knowledge (cleartext) to the backend


def _builtin(overlay: Rendered) -> list[dict[str, Any]]:
    return [o for o in overlay.objects if o["apiVersion"] in BUILTIN_GROUPS]


def test_builtin_objects_validate_against_kubernetes_schemas(overlay: Rendered) -> None:
    objects = _builtin(overlay)
    assert {o["kind"] for o in objects} >= {"Namespace", "Service", "NetworkPolicy", "ConfigMap"}
    errors = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(
                f"{obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, e.path))}: {e.message}"
            )
    assert errors == []


def test_ray_pods_validate_as_kubernetes_pods(overlay: Rendered) -> None:
    pods = all_ray_pods(overlay)
    assert [p.node_type for p in pods].count("head") == 1
    for pod in pods:
        kubernetes_validate.validate(as_pod_object(pod), KUBERNETES_VERSION, strict=True)


def test_kubernetes_schema_check_is_strict() -> None:
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 80, "targetPortt": 8265}]},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


# --- RayCluster against the KubeRay CRD ---------------------------------------------------


def _strict(schema: Any) -> Any:
    """Reject fields the API server would prune, as `kubectl apply --validate=strict` does."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    return schema


@pytest.fixture(scope="session")
def raycluster_validator() -> jsonschema.Draft7Validator:
    crd_path = Path(os.environ.get("KUBERAY_CRD", DEFAULT_KUBERAY_CRD))
    if not crd_path.is_file():
        pytest.skip(
            f"KubeRay RayCluster CRD not found at {crd_path} "
            "(../shared/reference/kuberay-raycluster-crd.yaml, KubeRay v1.7.0; or set $KUBERAY_CRD)"
        )
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the file is 900 kB: libyaml if present
    crd = yaml.load(crd_path.read_text(), Loader=loader)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return jsonschema.Draft7Validator(_strict(version["schema"]["openAPIV3Schema"]))


def test_raycluster_validates_against_the_kuberay_crd(
    overlay: Rendered, raycluster_validator: jsonschema.Draft7Validator
) -> None:
    raycluster = overlay.one("RayCluster")
    assert raycluster["apiVersion"] == "ray.io/v1"
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in raycluster_validator.iter_errors(raycluster)
    ]
    assert errors == []


def test_the_crd_check_catches_a_typo(
    overlay: Rendered, raycluster_validator: jsonschema.Draft7Validator
) -> None:
    raycluster = copy.deepcopy(overlay.one("RayCluster"))
    raycluster["spec"]["authOptions"]["secretNmae"] = raycluster["spec"]["authOptions"].pop("secretName")
    raycluster["spec"]["authOptions"]["mode"] = "tokens"
    messages = [e.message for e in raycluster_validator.iter_errors(raycluster)]
    assert any("secretNmae" in m for m in messages) and any("tokens" in m for m in messages)


# --- GKE and Gateway API resources --------------------------------------------------------


def _crd_models(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not CRD_MODELS_DIR.is_dir():
        pytest.fail("node or the CRD validators are missing: run `make k8s-tools`")
    result = subprocess.run(
        [node, str(Path(__file__).with_name("validate_crd_models.mjs")), str(CRD_MODELS_DIR)],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_gke_and_gateway_objects_validate_against_their_crd_models(overlay: Rendered) -> None:
    objects = [o for o in overlay.objects if o["kind"] in CRD_MODEL_KINDS]
    assert objects
    failures = {f"{r['kind']}/{r['name']}": r["errors"] for r in _crd_models(objects) if r["errors"]}
    assert failures == {}


def test_the_crd_models_catch_errors(overlay: Rendered) -> None:
    broken = []
    for obj in (o for o in overlay.objects if o["kind"] in CRD_MODEL_KINDS):
        obj = copy.deepcopy(obj)
        if obj["kind"] == "Gateway":
            obj["spec"]["listeners"][0]["port"] = 70000
        elif obj["kind"] == "HTTPRoute":
            obj["spec"]["hostnames"] = ["Not_A_Host"]
        elif obj["kind"] == "GCPBackendPolicy":
            obj["spec"]["default"]["iap"]["enabled"] = "yes"
        elif obj["kind"] == "HealthCheckPolicy":
            obj["spec"]["default"]["config"]["type"] = "HTTPX"
        elif obj["kind"] == "ManagedCertificate":
            obj["spec"]["domains"] = "ray.example.com"
        broken.append(obj)
    assert all(r["errors"] for r in _crd_models(broken))


def _service_names(overlay: Rendered) -> set[str]:
    return {s["metadata"]["name"] for s in overlay.of_kind("Service")}


def test_backendconfig_by_hand(overlay: Rendered) -> None:
    for bc in overlay.of_kind("BackendConfig"):
        assert bc["apiVersion"] == "cloud.google.com/v1"
        spec = bc["spec"]
        assert spec["iap"] == {"enabled": True}  # Google-managed OAuth client: no credentials
        assert isinstance(spec["timeoutSec"], int) and spec["timeoutSec"] >= 3600
        assert spec["healthCheck"] == spec["healthCheck"] | {
            "type": "HTTP",
            "requestPath": "/healthz",
            "port": SIDECAR_PORT,
        }
        for key in ("checkIntervalSec", "timeoutSec", "healthyThreshold", "unhealthyThreshold"):
            assert isinstance(spec["healthCheck"][key], int) and spec["healthCheck"][key] > 0
        assert spec["healthCheck"]["timeoutSec"] <= spec["healthCheck"]["checkIntervalSec"]
        assert set(spec) <= {
            "iap",
            "timeoutSec",
            "connectionDraining",
            "healthCheck",
            "logging",
            "securityPolicy",
            "customRequestHeaders",
            "cdn",
            "sessionAffinity",
        }
        assert isinstance(spec["logging"]["enable"], bool) and 0 <= spec["logging"]["sampleRate"] <= 1
        # The Service that uses it names it, per port or by default.
        users = [
            s
            for s in overlay.of_kind("Service")
            if json.loads(
                s["metadata"].get("annotations", {}).get("cloud.google.com/backend-config", "{}")
            ).get("default")
            == bc["metadata"]["name"]
        ]
        assert len(users) == 1


def test_ingress_and_managed_certificate_by_hand(overlay: Rendered) -> None:
    for ingress in overlay.of_kind("Ingress"):
        annotations = ingress["metadata"]["annotations"]
        assert annotations["kubernetes.io/ingress.class"] == "gce"
        assert annotations["kubernetes.io/ingress.allow-http"] == "false"
        assert annotations["kubernetes.io/ingress.global-static-ip-name"] == f"ray-{overlay.namespace}-ip"
        cert = overlay.one("ManagedCertificate", annotations["networking.gke.io/managed-certificates"])
        hosts = [rule["host"] for rule in ingress["spec"]["rules"]]
        assert hosts == cert["spec"]["domains"] == [f"ray-{overlay.namespace}.example.com"]
        assert all(len(d) <= 63 and "*" not in d for d in cert["spec"]["domains"])
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["name"] in _service_names(overlay)
        service = overlay.one("Service", "ray-iap")
        assert json.loads(service["metadata"]["annotations"]["cloud.google.com/neg"]) == {"ingress": True}


def test_gateway_route_and_policies_by_hand(overlay: Rendered) -> None:
    for gateway in overlay.of_kind("Gateway"):
        assert gateway["spec"]["gatewayClassName"] == "gke-l7-global-external-managed"
        (listener,) = gateway["spec"]["listeners"]
        assert (listener["protocol"], listener["port"]) == ("HTTPS", 443)
        assert listener["tls"]["mode"] == "Terminate"
        assert (
            listener["tls"]["options"]["networking.gke.io/pre-shared-certs"]
            == f"ray-{overlay.namespace}-cert"
        )
        assert listener["allowedRoutes"]["namespaces"]["from"] == "Same"
        assert gateway["spec"]["addresses"] == [
            {"type": "NamedAddress", "value": f"ray-{overlay.namespace}-ip"}
        ]
        for route in overlay.of_kind("HTTPRoute"):
            assert route["spec"]["parentRefs"] == [
                {"name": gateway["metadata"]["name"], "sectionName": "https"}
            ]
            assert route["spec"]["hostnames"] == [f"ray-{overlay.namespace}.example.com"]
            for rule in route["spec"]["rules"]:
                for ref in rule["backendRefs"]:
                    service = overlay.one("Service", ref["name"])
                    assert ref["port"] in [p["port"] for p in service["spec"]["ports"]]
    for policy in overlay.of_kind("GCPBackendPolicy") + overlay.of_kind("HealthCheckPolicy"):
        target = policy["spec"]["targetRef"]
        assert (target["group"], target["kind"]) == ("", "Service")
        assert target["name"] in _service_names(overlay)
    for policy in overlay.of_kind("GCPBackendPolicy"):
        assert policy["spec"]["default"]["iap"] == {"enabled": True}
        assert policy["spec"]["default"]["timeoutSec"] >= 3600
    for policy in overlay.of_kind("HealthCheckPolicy"):
        # Every backend is health-checked on the sidecar's /healthz (its HTTP port): the dashboard's
        # on its serving port, Ray Client's (gRPC, serving 10001) on the fixed port 8265.
        config = policy["spec"]["default"]["config"]
        assert config["type"] == "HTTP"
        service = overlay.one("Service", policy["spec"]["targetRef"]["name"])
        (port,) = service["spec"]["ports"]
        if port["targetPort"] == "http":
            assert config["httpHealthCheck"] == {
                "portSpecification": "USE_SERVING_PORT",
                "requestPath": "/healthz",
            }
        else:
            assert config["httpHealthCheck"] == {
                "portSpecification": "USE_FIXED_PORT",
                "port": SIDECAR_PORT,
                "requestPath": "/healthz",
            }
    # One GCPBackendPolicy and one HealthCheckPolicy per Service (a GKE limit), and every Service
    # the Gateway routes to has both.
    for kind in ("GCPBackendPolicy", "HealthCheckPolicy"):
        targets = [p["spec"]["targetRef"]["name"] for p in overlay.of_kind(kind)]
        assert len(targets) == len(set(targets))
        if overlay.of_kind("Gateway"):
            assert set(targets) == _service_names(overlay), kind


def _sidecar_port_names(overlay: Rendered) -> dict[str, int]:
    (head,) = [p for p in all_ray_pods(overlay) if p.node_type == "head"]
    return {p["name"]: p["containerPort"] for p in head.container(SIDECAR_NAME)["ports"]}


def test_ray_client_backend_speaks_cleartext_http2_and_gets_only_ray_clients_calls(overlay: Rendered) -> None:
    """gRPC needs HTTP/2 to the pod and the sidecar's listener has no TLS: every Service port on the
    sidecar's `client` port says `appProtocol: kubernetes.io/h2c` (and no other port does), only the
    Gateway routes to it (GKE Ingress knows HTTP, HTTPS and HTTP2 = HTTP/2 over TLS, never
    cleartext), and its route matches exactly Ray Client's gRPC services."""
    assert _sidecar_port_names(overlay)["client"] == 10001
    client_ports = []
    for service in overlay.of_kind("Service"):
        assert "cloud.google.com/app-protocols" not in service["metadata"].get("annotations", {})
        for port in service["spec"]["ports"]:
            assert (port["targetPort"] == "client") == (port.get("appProtocol") == H2C), port
            if port["targetPort"] == "client":
                client_ports.append((service["metadata"]["name"], port["port"]))
    assert bool(client_ports) == bool(overlay.of_kind("Gateway"))
    for ingress in overlay.of_kind("Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert (backend["name"], backend["port"].get("number")) not in client_ports
    ray_client_services = {"/" + m.strip("/").rpartition("/")[0] for m in CALL_KINDS}
    assert ray_client_services == {
        "/ray.rpc.RayletDriver",
        "/ray.rpc.RayletDataStreamer",
        "/ray.rpc.RayletLogStreamer",
    }
    for route in overlay.of_kind("HTTPRoute"):
        for rule in route["spec"]["rules"]:
            refs = {(ref["name"], ref["port"]) for ref in rule["backendRefs"]}
            if refs & set(client_ports):
                assert refs <= set(client_ports)
                assert {(m["path"]["type"], m["path"]["value"]) for m in rule["matches"]} == {
                    ("PathPrefix", service) for service in ray_client_services
                }
            else:  # the dashboard's rule: every path not matched more precisely above
                assert "matches" not in rule
