"""The configuration file's schema: one definition per setting (type, default, range, documentation).

`load.py` reads a file against it and reports every problem at once; `reference.py` renders the table
in docs/configuration.md from it; `ray-iap-proxy schema` prints it as JSON Schema.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import ValidationInfo, field_validator, model_validator

from .base import (
    Bool,
    Float,
    Int,
    ListenAddress,
    PublicUrl,
    Section,
    Str,
    UpstreamUrl,
    invalid,
    required,
    setting,
)
from .credentials import ClientTls, GoogleIdTokens, Iap
from .jobs import Jobs
from .limits import Limits
from .sources import GoogleGroups, KubernetesRbac
from .telemetry import AccessLog, Tracing

TENANT_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


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
    public_url: PublicUrl | None = setting(
        None,
        "the URL people open the dashboard at, `https://HOST[:PORT]` (behind IAP, e.g. "
        "`https://ray-team-a.example.com`; `http://` only for loopback hosts). A browser request that "
        "changes state must come from exactly this origin (scheme, host and port). Default: `https://` "
        "and the request's Host, or `http://` when the Host is a loopback address (dev-iap).",
        shown="https:// + Host",
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
        None,
        "the [policy](policy.md), relative to this file. Required unless `kubernetes_rbac` is set: without "
        "a policy every request would be refused (to refuse all on purpose, name one with no bindings).",
    )
    limits: Limits = setting(Limits(), "request-size, timeout and connection bounds (below).")
    shutdown_grace_seconds: Float = setting(
        25.0,
        "on SIGTERM: stop accepting, let in-flight requests and streams finish for this long, then exit "
        "0. Keep it below the pod's `terminationGracePeriodSeconds`.",
        low=0,
        high=3600,
    )
    workers: Int = setting(
        1,
        "proxy processes sharing `listen` (SO_REUSEPORT), each with its own key and token caches, under "
        "one supervisor that drains them on SIGTERM and restarts one that crashes. One per CPU core of "
        "the sidecar: raise its CPU request and this together (docs/operations.md). The Ray Client "
        "listener runs in the first worker only. `serve --workers N` overrides it.",
        low=1,
        high=64,
    )
    metrics_listen: ListenAddress | None = setting(
        None,
        "`HOST:PORT` of a separate listener serving Prometheus text at `/metrics` (counts and states "
        "only: no emails, paths, tenants or tokens). Never served on `listen`. In the pod: "
        "`0.0.0.0:9090`, reachable only from Managed Prometheus by NetworkPolicy.",
    )
    tracing: Tracing = setting(Tracing(), "tracing (below).")
    access_log: AccessLog = setting(
        AccessLog(), "the access record's trace links and client address (below)."
    )
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
    client_session_max_seconds: Int = setting(
        43200,
        "how long a Ray Client session may go on with the credential it was opened with, after that "
        "credential expires (IAP's live 10 minutes, Google ID tokens an hour): calls of the same session "
        "(`client_id`) carrying the very same credential are admitted without re-checking its expiry, and "
        "still authorized under the current policy. A new session needs a fresh credential.",
        low=60,
        high=7 * 86400,
    )
    client_tls: ClientTls | None = setting(
        None,
        "TLS on the Ray Client listener (below); off: plaintext HTTP/2 (`h2c`), as the GKE Gateway's "
        "`kubernetes.io/h2c` backends speak.",
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
            for key in ("ray_token_file", "policy_file", "metrics_listen", "public_url"):
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
