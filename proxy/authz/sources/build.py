"""The policy sources a config asks for, built once, and their lifecycle (the policy file's watcher, the
Groups API session, the review threads). `serve` and `explain --live` build the same set; `explain`
without `--live` keeps the local one and says which it did not consult."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ...settings import Settings
from ..authorizer import Answer, Opinion, Question, Source, Union
from ..policy import EMPTY_POLICY, Policy
from ..policy_file import read_policy
from .cache import Clock
from .cloud_identity import CloudIdentity
from .google_groups import GoogleGroupsPolicy, KnownGroups
from .kubernetes_rbac import InCluster, KubernetesRbac
from .live import LivePolicy
from .static import StaticPolicy


class NotConsulted:
    """A configured remote source that was not asked (explain without --live, or it could not be built):
    it grants nothing and says why."""

    local = True  # answers from memory

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.why = why

    async def decide(self, question: Question) -> Answer:
        return Answer(self.name, Opinion.ERROR, f"not consulted: {self.why}")


@dataclass
class PolicySources:
    static: StaticPolicy  # a LivePolicy when it watches the policy file
    directory: CloudIdentity | None = None
    remote: list[Source] = field(default_factory=list)

    @property
    def sources(self) -> list[Source]:
        return [self.static, *self.remote]

    def union(self) -> Union:
        return Union(self.sources)

    def not_consulted(self) -> list[str]:
        return [s.name for s in self.remote if isinstance(s, NotConsulted)]

    def start(self) -> None:
        if isinstance(self.static, LivePolicy):
            self.static.start()

    async def close(self) -> None:
        if isinstance(self.static, LivePolicy):
            await self.static.stop()
        for source in self.remote:
            if isinstance(source, KubernetesRbac):
                await source.close()
        if self.directory is not None:
            await self.directory.close()


def build_sources(
    settings: Settings,
    *,
    policy: Policy | None = None,
    watch: bool = True,
    live: bool = True,
    clock: Clock = time.monotonic,
    credentials: Any = None,
    in_cluster: InCluster | None = None,
) -> PolicySources:
    """`policy` given: that policy, fixed (tests). Else the policy file, watched when `watch`. `live`
    False: the remote sources are listed, not built (nothing is asked over the network)."""
    if policy is not None:
        static = StaticPolicy(policy)
    elif settings.policy_file is not None:
        static = (
            LivePolicy(settings.policy_file) if watch else StaticPolicy(read_policy(settings.policy_file))
        )
    else:
        static = StaticPolicy(EMPTY_POLICY)
    out = PolicySources(static)
    groups, rbac = settings.google_groups, settings.kubernetes_rbac
    if not live:
        hint = "run explain with --live to ask it"
        if groups is not None:
            out.remote.append(NotConsulted(GoogleGroupsPolicy.name, f"Cloud Identity ({hint})"))
        if rbac is not None:
            out.remote.append(NotConsulted(KubernetesRbac.name, f"the Kubernetes API server ({hint})"))
        return out
    if groups is not None:
        out.directory = CloudIdentity(groups, credentials, clock)
        out.remote.append(GoogleGroupsPolicy(static, out.directory))
    if rbac is not None:
        known = KnownGroups(static, out.directory)
        # A kubeconfig or ServiceAccount that cannot be used raises ConfigError, naming it.
        out.remote.append(KubernetesRbac(rbac, known, in_cluster=in_cluster, clock=clock))
    return out
