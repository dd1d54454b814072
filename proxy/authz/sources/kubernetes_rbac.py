"""Kubernetes RBAC as a policy source: each (identity, groups, tenant, verb) is decided by a
SubjectAccessReview, so platform teams grant verbs with ordinary Roles and RoleBindings:

    user: the email          groups: the groups the proxy knows for it (static and Google Groups)
    resourceAttributes: {group: ray.io, resource: rayclusters, subresource: proxy,
                         name: <ray_cluster>, namespace: <tenant>, verb: <the Ray verb>}

The review goes through the `kubernetes` client (blocking) on a few worker threads, never on the event
loop. Answers are cached, allows for `allow_ttl_seconds` and denies for `deny_ttl_seconds`, and
concurrent identical reviews are one review. An API server that is unreachable, slow, or refuses the
proxy grants nothing: the answer is "error" with the reason, the failure is counted and logged
(rate-limited), and nothing stale is reused: a cached allow runs out at its TTL, outage or not.

Exposed for metrics: `reviews` (sent), `allowed`, `denied`, `health.failures`, `health.last_error`,
and `lookups.hits`, `.misses`, `.coalesced`, `.size`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ConfigError
from ...settings.sources import KubernetesRbac as Settings
from ..authorizer import Answer, Opinion, Question
from ..policy_file import EMAIL_RE
from .cache import Clock, Health, Lookups
from .google_groups import KnownGroups
from .sar_client import SarClient, SarError

WORKERS = 4
MAX_RUNNING = 64  # reviews waiting or running at once; past that, answer "error" at once
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True, slots=True)
class InCluster:
    """Where the pod's ServiceAccount is (the kubelet's paths), and the environment naming the API."""

    token: Path = SA_DIR / "token"
    ca: Path = SA_DIR / "ca.crt"
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)


@dataclass(frozen=True, slots=True)
class Review:
    allowed: bool
    reason: str  # the API server's own words, if any
    undecided: bool = False  # an evaluation error and no allow: not cached


def email_groups(groups: frozenset[str]) -> tuple[str, ...]:
    """Only group emails go into a review: never `system:masters` or any other name the API server
    gives meaning to, whatever a credential claimed."""
    return tuple(sorted(g for g in groups if EMAIL_RE.match(g)))


class KubernetesRbac:
    name = "kubernetes-rbac"
    local = False

    def __init__(
        self,
        settings: Settings,
        groups: KnownGroups,
        *,
        client: Callable[[], SarClient] | None = None,
        in_cluster: InCluster | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.cluster = settings.ray_cluster
        self.timeout = settings.request_timeout_seconds
        self.groups = groups
        self.client = client() if client else _client(settings, in_cluster or InCluster())
        self.lookups: Lookups[tuple[str, tuple[str, ...], str, str], Review] = Lookups(
            settings.cache_size,
            lambda r: (
                settings.allow_ttl_seconds if r.allowed else 0 if r.undecided else settings.deny_ttl_seconds
            ),
            clock,
        )
        self.health = Health("kubernetes_rbac (SubjectAccessReview)", clock)
        self.reviews = self.allowed = self.denied = 0
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="subjectaccessreview")

    def _resource(self, tenant: str, verb: str) -> str:
        return f"{verb} on rayclusters/proxy {self.cluster} in namespace {tenant}"

    async def decide(self, question: Question) -> Answer:
        identity, tenant, verb = question.identity, question.tenant, str(question.verb)
        if not EMAIL_RE.match(identity.email):
            return Answer(self.name, Opinion.NONE, "Kubernetes RBAC reviews only email identities")
        known = await self.groups.of(identity)
        groups = email_groups(known.member_of)
        key = (identity.email, groups, tenant, verb)
        if self.lookups.cached(key) is None and self.lookups.running >= MAX_RUNNING:
            self.health.failed("too many reviews waiting for the API server")
            return Answer(self.name, Opinion.ERROR, "the API server is too slow: too many reviews waiting")
        try:
            review = await self.lookups.get(key, lambda: self._review(*key))
        except SarError as exc:
            return Answer(self.name, Opinion.ERROR, exc.reason)
        said = f" ({review.reason})" if review.reason else ""
        if review.allowed:
            return Answer(
                self.name, Opinion.GRANT, f"Kubernetes RBAC allows {self._resource(tenant, verb)}{said}"
            )
        as_who = f"{identity.email} (groups: {', '.join(groups)})" if groups else identity.email
        text = f"Kubernetes RBAC does not allow {as_who} {self._resource(tenant, verb)}{said}"
        if known.unresolved:
            text += f"; {known.why_unresolved()}"
        return Answer(self.name, Opinion.ERROR if review.undecided else Opinion.NONE, text)

    async def _review(self, user: str, groups: tuple[str, ...], tenant: str, verb: str) -> Review:
        attributes = {
            "group": "ray.io",
            "resource": "rayclusters",
            "subresource": "proxy",
            "name": self.cluster,
            "namespace": tenant,
            "verb": verb,
        }
        self.reviews += 1
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(
            self._pool, self.client.review, user, list(groups), attributes, self.timeout
        )
        try:
            status = await asyncio.wait_for(call, self.timeout + 0.5)  # the client's own limit comes first
        except TimeoutError:
            raise self._failed(SarError(f"the API server did not answer within {self.timeout:g} s")) from None
        except SarError as exc:
            raise self._failed(exc) from None
        self.health.ok()
        allowed, reason, error = status
        if allowed:
            self.allowed += 1
            return Review(True, reason)
        self.denied += 1
        if error:
            return Review(False, f"evaluation error: {error}", undecided=True)
        return Review(False, reason)

    def _failed(self, exc: SarError) -> SarError:
        self.health.failed(exc.reason)
        return exc

    async def close(self) -> None:
        await self.lookups.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.get_running_loop().run_in_executor(None, self.client.close)


def _client(settings: Settings, in_cluster: InCluster) -> SarClient:
    try:
        return SarClient.connect(settings.kubeconfig, in_cluster.token, in_cluster.ca, in_cluster.environ)
    except Exception as exc:  # the kubernetes library's own errors, or a file that cannot be read
        why = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        if settings.kubeconfig is not None:
            raise ConfigError(
                [f"kubernetes_rbac.kubeconfig: {str(settings.kubeconfig)!r} cannot be used ({why})"]
            ) from None
        raise ConfigError(
            [
                f"kubernetes_rbac: no kubeconfig given and the pod's ServiceAccount cannot be used ({why}); "
                "mount its token in the proxy's container, or name a kubeconfig"
            ]
        ) from None
