"""The configuration file's schema: one definition per setting (type, default, range, documentation).

`load.py` reads a file against it and reports every problem at once; `reference.py` renders the table
in docs/configuration.md from it; `ray-iap-proxy schema` prints it as JSON Schema.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ValidationInfo, WithJsonSchema, field_validator, model_validator

from .audiences import shape_problem as audience_shape_problem
from .base import (
    Bool,
    Float,
    Int,
    KeySetUrl,
    ListenAddress,
    Section,
    Str,
    UpstreamUrl,
    invalid,
    required,
    setting,
)
from .credentials import GoogleIdTokens, KeySet
from .jobs import Jobs
from .sources import GoogleGroups, KubernetesRbac

TENANT_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
MIB = 1024 * 1024


def _audience(value: object) -> object:
    if not isinstance(value, str) or not value.strip():
        raise invalid("must be a non-empty string")
    if problem := audience_shape_problem(value):  # it could never match a real assertion
        raise invalid(problem)
    return value


class Iap(KeySet):
    """How IAP's signed header is verified."""

    audiences: tuple[Annotated[str, BeforeValidator(_audience)], ...] = setting(
        doc="the accepted `aud` values: `/projects/PROJECT_NUMBER/global/backendServices/SERVICE_ID` "
        "(the numeric backend service id). Several are allowed, e.g. while a load balancer is recreated. "
        "The token's `aud` must be a string equal to one of them."
    )
    jwks_url: KeySetUrl = setting(
        "https://www.gstatic.com/iap/verify/public_key-jwk",
        "Google's key set. Both the JWKS (`public_key-jwk`) and the PEM dictionary (`public_key`) "
        "formats are understood; only P-256 keys are kept. `http://` is accepted only for loopback "
        "hosts (tests, dev-iap).",
    )
    issuer: Str = setting("https://cloud.google.com/iap", "the exact `iss` required.")
    max_token_lifetime_seconds: Int = setting(
        600, "`exp - iat` must not exceed this (IAP's assertions live 10 minutes).", low=60, high=86400
    )

    @field_validator("audiences")
    @classmethod
    def _some(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise invalid("must list at least one audience")
        return value


class Limits(Section):
    """Request-size, timeout and connection bounds."""

    max_body_bytes: Int = setting(
        100 * MIB + 64 * 1024,
        "a larger request body gets 413 (Ray's own limit is 100 MiB). Bodies are streamed, never buffered.",
        low=0,
        high=2**40,
        shown="100 MiB + 64 KiB",
    )
    max_websocket_message_bytes: Int = setting(
        4 * MIB,
        "a WebSocket message of this size or larger closes the stream (1009).",
        low=1024,
        high=2**30,
        shown="4 MiB",
    )
    max_header_bytes: Int = setting(8190, "one header line longer than this: 431.", low=1024, high=MIB)
    max_headers: Int = setting(100, "more header fields: 431.", low=8, high=10_000)
    max_target_length: Int = setting(4096, "a longer request target: 414.", low=64, high=MIB)
    client_idle_timeout_seconds: Float = setting(
        75.0,
        "an idle keep-alive connection is closed after this; it also bounds how long a request's "
        "headers may take to arrive.",
        low=1,
        high=86400,
    )
    client_read_timeout_seconds: Float = setting(
        60.0,
        "a client that stops sending its body, or stops reading the answer, for this long: 408, or the "
        "connection is cut if the answer has started. Ray's side of the request is cancelled.",
        low=0.5,
        high=3600,
    )
    max_connections: Int = setting(
        1024,
        "concurrent client connections; one more gets a canned 503 and is closed (counted in metrics).",
        low=1,
        high=1_000_000,
    )
    upstream_connect_timeout_seconds: Float = setting(
        5.0, 'connecting to Ray; then 502 "Ray is not reachable".', low=0.1, high=300
    )
    upstream_read_timeout_seconds: Float = setting(
        3600.0,
        "silence from Ray mid-request before 504; long because log streams can be quiet. Match the load "
        "balancer's `timeoutSec`.",
        low=1,
        high=86400,
    )


class Tracing(Section):
    """Spans: where they go. The exporter's endpoint, protocol and sampling come from the standard
    `OTEL_*` environment variables ([security teams](security-teams.md#traces))."""

    exporter: Literal["none", "console", "otlp"] | None = setting(
        None,
        "`otlp` (to `OTEL_EXPORTER_OTLP_ENDPOINT`, over `OTEL_EXPORTER_OTLP_PROTOCOL` `http/protobuf` or "
        "`grpc`), `console` (spans printed to stderr) or `none`. Off costs nothing; trace ids from the "
        "caller's `traceparent` or `X-Cloud-Trace-Context` are in every access record either way.",
        shown="$OTEL_TRACES_EXPORTER or none",
    )


def _network(value: object) -> object:
    if not isinstance(value, str):
        raise invalid("must be a string")
    try:
        return ipaddress.ip_network(value.strip(), strict=True)
    except ValueError:
        raise invalid("must be an IP network such as 35.191.0.0/16 (host bits zero) or one address") from None


Network = Annotated[
    ipaddress.IPv4Network | ipaddress.IPv6Network,
    BeforeValidator(_network),
    WithJsonSchema({"type": "string", "description": "an IP network, e.g. 35.191.0.0/16"}),
]


class AccessLog(Section):
    """The access record: its trace links and which client address it believes."""

    project_id: Str = setting(
        "auto",
        "the Google Cloud project in `logging.googleapis.com/trace` (`projects/PROJECT/traces/ID`). "
        "`auto`: asked once at start-up from the metadata server (`$GCE_METADATA_HOST`, else "
        "`metadata.google.internal`) when running on Kubernetes or when `GCE_METADATA_HOST` is set; "
        '`""`: no trace links.',
    )
    trusted_proxies: tuple[Network, ...] = setting(
        (),
        "networks of the hops whose `X-Forwarded-For` is believed for `httpRequest.remoteIp`. Behind "
        "Google's load balancer: `130.211.0.0/22`, `35.191.0.0/16` and the forwarding rule's own "
        "address (it appends `client, load-balancer`). Empty: the TCP peer is the client.",
    )


class Settings(Section):
    """The whole configuration file."""

    listen: ListenAddress = setting(
        "127.0.0.1:8265", "`HOST:PORT` to serve on. In the pod: `0.0.0.0:8265`, the public dashboard port."
    )
    upstream: UpstreamUrl = setting(
        "http://127.0.0.1:18265",
        "the Ray dashboard, `http://HOST:PORT` with no path. Bind Ray's dashboard to loopback "
        "(`dashboard-host: 127.0.0.1`).",
    )
    tenant: Str = setting(
        "",
        "the tenant (namespace) this cluster belongs to; only policy bindings for this tenant count. "
        "Default: `$POD_NAMESPACE`; required one way or the other.",
        shown="$POD_NAMESPACE",
    )
    iap: Iap = setting(doc="how IAP's signed header is verified (below).")
    ray_token_file: Path | None = setting(
        None,
        "file holding Ray's own token (the KubeRay Secret key `auth_token`). Sent to Ray as "
        "`X-Ray-Authorization: Bearer …`. Watched: a rotated Secret is picked up within seconds.",
    )
    policy_file: Path | None = setting(
        None, "the [policy](policy.md), relative to this file. Without one, every request is refused."
    )
    limits: Limits = setting(Limits(), "request-size, timeout and connection bounds (below).")
    shutdown_grace_seconds: Float = setting(
        25.0,
        "on SIGTERM: stop accepting, let in-flight requests and streams finish for this long, then exit "
        "0. Keep it below the pod's `terminationGracePeriodSeconds`.",
        low=0,
        high=3600,
    )
    metrics_listen: ListenAddress | None = setting(
        None,
        "`HOST:PORT` of a separate listener serving Prometheus text at `/metrics` (counts and states "
        "only: no emails, paths, tenants or tokens). Never served on `listen`. In the pod: "
        "`0.0.0.0:9090`, reachable only from Managed Prometheus by NetworkPolicy.",
    )
    tracing: Tracing = setting(Tracing(), "tracing (below).")
    access_log: AccessLog = setting(AccessLog(), "the access record's trace links and client address (below).")
    google_id_tokens: GoogleIdTokens | None = setting(
        None,
        "accept Google-signed OIDC ID tokens as `Authorization: Bearer` (or `Proxy-Authorization`), over "
        "HTTP and gRPC, for callers inside the VPC (below). Off when absent.",
    )
    accept_ray_token: Bool = setting(
        False,
        "accept a request bearing exactly the cluster's Ray token (`ray_token_file`; `X-Ray-Authorization` "
        "or `Authorization: Bearer`, as KubeRay's operator and RayJob submitters send it) as the principal "
        "`system:ray-token`, bindable in the policy as the member `system:ray-token`.",
    )
    client_listen: ListenAddress | None = setting(
        None,
        "`HOST:PORT` of the Ray Client (gRPC, `ray://`) listener. Off when absent. In the pod: "
        "`0.0.0.0:10001`.",
    )
    client_upstream: ListenAddress = setting(
        "127.0.0.1:18001",
        "Ray's client server (`ray start --ray-client-server-port`), on loopback.",
    )
    kubernetes_rbac: KubernetesRbac | None = setting(
        None,
        "Kubernetes RBAC as a policy source: Roles and RoleBindings on `rayclusters/proxy` grant verbs "
        "(below; [policy](policy.md#kubernetes-rbac)). Off when absent.",
    )
    google_groups: GoogleGroups | None = setting(
        None,
        "resolve the policy's groups through Cloud Identity with the pod's Workload Identity (below; "
        "[policy](policy.md#google-groups)). Off when absent: groups hold only their listed members.",
    )
    jobs: Jobs = setting(
        Jobs(),
        "who submitted each job, owner-scoped verbs and job secrets (below; "
        "[policy](policy.md#job-ownership-and-secrets)).",
    )

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_environment(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if data.get("tenant") is None:
                data["tenant"] = (info.context or {}).get("POD_NAMESPACE", "")
            data.setdefault("iap", {})  # so that its own required keys are named
            for key in ("ray_token_file", "policy_file", "metrics_listen"):
                if data.get(key) == "":
                    data[key] = None
        return data

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, value: str) -> str:
        if not value:
            raise required("(or set POD_NAMESPACE)")
        if not TENANT_RE.match(value):
            raise invalid("must be a Kubernetes namespace name")
        return value

    @field_validator("ray_token_file", "policy_file", mode="before")
    @classmethod
    def _path(cls, value: object, info: ValidationInfo) -> object:
        if value is None:
            return None
        if not isinstance(value, str):
            raise invalid("must be a string")
        base = (info.context or {}).get("base")
        return Path(base) / value if base is not None else Path(value)
