"""Settings of the policy sources beyond the policy file: Kubernetes RBAC (a SubjectAccessReview per
identity, tenant and verb) and Google Groups (Cloud Identity transitive membership). Each is off when
its section is absent."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, ValidationInfo, WithJsonSchema, field_validator

from .base import Float, Int, KeySetUrl, Section, invalid, setting

# A Kubernetes object name (DNS-1123 subdomain), as a RayCluster's metadata.name must be.
OBJECT_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _object_name(value: object) -> object:
    if not isinstance(value, str):
        raise invalid("must be a string")
    if not OBJECT_NAME_RE.match(value) or len(value) > 253:
        raise invalid("is not a Kubernetes object name (lower-case letters, digits, '-' and '.')")
    return value


ObjectName = Annotated[
    str, BeforeValidator(_object_name), WithJsonSchema({"type": "string", "pattern": OBJECT_NAME_RE.pattern})
]


class KubernetesRbac(Section):
    """Kubernetes RBAC as a policy source: one SubjectAccessReview per identity, tenant and verb."""

    ray_cluster: ObjectName = setting(
        doc="the RayCluster's name: a Role rule grants `verbs` on `resources: [rayclusters/proxy]` with "
        "`resourceNames: [THIS]` in the tenant's namespace."
    )
    kubeconfig: Path | None = setting(
        None,
        "a kubeconfig file (relative to this file) for the API server. Default: the pod's own "
        "ServiceAccount (in-cluster), which needs `create` on `subjectaccessreviews` and nothing else.",
    )
    allow_ttl_seconds: Int = setting(
        300,
        "how long an allowed review is reused; a revoked RoleBinding can go on granting for this long.",
        low=0,
        high=86400,
    )
    deny_ttl_seconds: Int = setting(
        30,
        "how long a denied review is reused; a new RoleBinding takes up to this long to count.",
        low=0,
        high=3600,
    )
    request_timeout_seconds: Float = setting(
        2.0,
        "one review's time limit; an API server slower than this (or unreachable) grants nothing, and the "
        "request gets the other sources' answer.",
        low=0.1,
        high=4,
    )
    cache_size: Int = setting(
        10_000,
        "reviews kept (identity, groups, tenant, verb); the least recently used go first.",
        low=1,
        high=1_000_000,
    )

    @field_validator("kubeconfig", mode="before")
    @classmethod
    def _path(cls, value: object, info: ValidationInfo) -> object:
        if value is None or value == "":
            return None
        if isinstance(value, Path):
            return value
        if not isinstance(value, str):
            raise invalid("must be a string")
        base = (info.context or {}).get("base")
        return Path(base) / value if base is not None else Path(value)


class GoogleGroups(Section):
    """Google Groups: `group:` members resolved through Cloud Identity (transitive membership)."""

    ttl_seconds: Int = setting(
        300,
        "how long a membership answer (member or not) is reused; someone removed from a group can go on "
        "being granted through it for this long.",
        low=0,
        high=86400,
    )
    api_root: KeySetUrl = setting(
        "https://cloudidentity.googleapis.com",
        "the Cloud Identity API; override for a restricted VIP (`https://cloudidentity.googleapis.com` via "
        "private.googleapis.com) or tests. `http://` only on loopback.",
    )
    request_timeout_seconds: Float = setting(
        2.0,
        "time limit for resolving one caller's groups (token, lookups, membership checks); slower grants "
        "nothing through groups, and a user's own bindings still count.",
        low=0.1,
        high=4,
    )
    cache_size: Int = setting(
        10_000,
        "membership answers kept (group, member); the least recently used go first.",
        low=1,
        high=1_000_000,
    )
