"""A NetworkPolicy evaluator for ingress: which ports of a destination pod may a source reach?

Semantics follow the networking.k8s.io/v1 API documentation:
- a pod is isolated for ingress once any policy in its namespace with policyTypes containing
  Ingress selects it; an unisolated pod accepts everything;
- an isolated pod accepts what the union of the selecting policies' ingress rules allows;
- a rule's `from` (peers are ORed) and `ports` (entries are ORed) must both match; an absent
  or empty list matches everything;
- a peer with podSelector only selects pods of the policy's own namespace; namespaceSelector
  only, every pod in matching namespaces; both, pods matching both; ipBlock, addresses in the
  CIDR minus `except` (for pod sources this is implementation-defined: we count a pod whose IP
  falls in the block as allowed, the permissive reading);
- a named port resolves against the destination pod's container ports; endPort makes a range.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from k8s_render import RayPod, labels_match

ALL_PORTS: frozenset[int] = frozenset(range(1, 65536))
NO_PORTS: frozenset[int] = frozenset()


@dataclass
class PodEndpoint:
    namespace: str
    labels: dict[str, str]
    ip: str = "10.8.0.10"
    named_ports: dict[str, tuple[int, str]] = field(default_factory=dict)

    @classmethod
    def of(cls, pod: RayPod, ip: str = "10.8.0.10") -> PodEndpoint:
        return cls(pod.namespace, dict(pod.labels), ip, pod.named_ports())


@dataclass
class IpSource:
    ip: str


Source = PodEndpoint | IpSource


def policy_types(policy: Mapping[str, Any]) -> list[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return list(spec["policyTypes"])
    return ["Ingress"] + (["Egress"] if "egress" in spec else [])


class Cluster:
    """NetworkPolicies and Namespaces as applied to one cluster (possibly several overlays)."""

    def __init__(self, objects: Iterable[Mapping[str, Any]]) -> None:
        objects = list(objects)
        self.policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
        self._namespace_labels: dict[str, dict[str, str]] = {}
        for o in objects:
            if o["kind"] == "Namespace":
                name = o["metadata"]["name"]
                self._namespace_labels[name] = {
                    **(o["metadata"].get("labels") or {}),
                    "kubernetes.io/metadata.name": name,
                }

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        return self._namespace_labels.get(namespace, {"kubernetes.io/metadata.name": namespace})

    def selecting_policies(self, dst: PodEndpoint) -> list[Mapping[str, Any]]:
        return [
            p
            for p in self.policies
            if p["metadata"].get("namespace") == dst.namespace
            and "Ingress" in policy_types(p)
            and labels_match(p["spec"].get("podSelector"), dst.labels)
        ]

    def is_isolated(self, dst: PodEndpoint) -> bool:
        return bool(self.selecting_policies(dst))

    def allowed_ports(self, src: Source, dst: PodEndpoint, protocol: str = "TCP") -> frozenset[int]:
        selecting = self.selecting_policies(dst)
        if not selecting:
            return ALL_PORTS
        allowed: set[int] = set()
        for policy in selecting:
            namespace = policy["metadata"]["namespace"]
            for rule in policy["spec"].get("ingress") or []:
                if self._peers_match(rule.get("from"), namespace, src):
                    allowed |= _rule_ports(rule.get("ports"), dst, protocol)
        return frozenset(allowed)

    def _peers_match(self, peers: list[Mapping[str, Any]] | None, policy_ns: str, src: Source) -> bool:
        if not peers:
            return True
        return any(self._peer_matches(peer, policy_ns, src) for peer in peers)

    def _peer_matches(self, peer: Mapping[str, Any], policy_ns: str, src: Source) -> bool:
        if "ipBlock" in peer:
            return _in_ip_block(peer["ipBlock"], src.ip)
        if not isinstance(src, PodEndpoint):
            return False
        if "namespaceSelector" in peer:
            if not labels_match(peer["namespaceSelector"], self.namespace_labels(src.namespace)):
                return False
        elif src.namespace != policy_ns:
            return False
        return "podSelector" not in peer or labels_match(peer["podSelector"], src.labels)


def _in_ip_block(block: Mapping[str, Any], ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    cidr = ipaddress.ip_network(block["cidr"], strict=False)
    if address.version != cidr.version or address not in cidr:
        return False
    return not any(
        address in ipaddress.ip_network(e, strict=False)
        for e in block.get("except") or []
        if ipaddress.ip_network(e).version == address.version
    )


def _rule_ports(ports: list[Mapping[str, Any]] | None, dst: PodEndpoint, protocol: str) -> set[int]:
    if not ports:
        return set(ALL_PORTS)
    allowed: set[int] = set()
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        port = entry.get("port")
        if port is None:
            return set(ALL_PORTS)
        if isinstance(port, str):
            named = dst.named_ports.get(port)
            if named is not None and named[1] == protocol:
                allowed.add(named[0])
            continue
        allowed |= set(range(port, int(entry.get("endPort", port)) + 1))
    return allowed
