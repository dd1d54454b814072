"""Pod Security Standards, "restricted" profile (baseline included), as a pure check of a PodSpec.

Follows https://kubernetes.io/docs/concepts/security/pod-security-standards/ for the latest
version. Not modelled: the legacy AppArmor and seccomp *annotations* (these manifests use the
securityContext fields) and Windows-only fields other than hostProcess.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

ALLOWED_VOLUME_SOURCES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
ALLOWED_SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
ALLOWED_SECCOMP = frozenset({"RuntimeDefault", "Localhost"})


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(kind) or []:
            yield f"{kind}[{c.get('name')}]", c


def _selinux(where: str, options: Mapping[str, Any] | None) -> Iterator[str]:
    if not options:
        return
    if options.get("type", "") not in ALLOWED_SELINUX_TYPES:
        yield f"{where}.seLinuxOptions.type {options['type']!r} not allowed"
    for key in ("user", "role"):
        if options.get(key):
            yield f"{where}.seLinuxOptions.{key} must be unset"


def restricted_violations(spec: Mapping[str, Any]) -> list[str]:
    """Every way `spec` breaks the restricted profile, as readable messages (empty = compliant)."""
    return list(_violations(spec))


def _violations(spec: Mapping[str, Any]) -> Iterator[str]:
    psc = spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            yield f"spec.{flag} must not be true"
    for volume in spec.get("volumes") or []:
        for source in set(volume) - {"name"} - ALLOWED_VOLUME_SOURCES:
            yield f"volume {volume.get('name')!r} uses {source}, not allowed"
    for sysctl in psc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            yield f"sysctl {sysctl.get('name')!r} is not in the safe set"
    yield from _selinux("spec.securityContext", psc.get("seLinuxOptions"))
    if (psc.get("seccompProfile") or {}).get("type") == "Unconfined":
        yield "spec.securityContext.seccompProfile.type must not be Unconfined"
    if (psc.get("appArmorProfile") or {}).get("type") == "Unconfined":
        yield "spec.securityContext.appArmorProfile.type must not be Unconfined"
    if psc.get("runAsUser") == 0:
        yield "spec.securityContext.runAsUser must not be 0"
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        yield "spec.securityContext.windowsOptions.hostProcess must not be true"

    for where, c in _containers(spec):
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            yield f"{where}: privileged"
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                yield f"{where}: hostPort {port['hostPort']}"
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            yield f"{where}: capabilities.drop must include ALL"
        for cap in caps.get("add") or []:
            if cap != "NET_BIND_SERVICE":
                yield f"{where}: capabilities.add {cap} not allowed"
        if sc.get("allowPrivilegeEscalation") is not False:
            yield f"{where}: allowPrivilegeEscalation must be false"
        if sc.get("runAsNonRoot") is False or not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
            yield f"{where}: runAsNonRoot must be true (container or pod)"
        if sc.get("runAsUser") == 0:
            yield f"{where}: runAsUser must not be 0"
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ALLOWED_SECCOMP:
            yield f"{where}: seccompProfile.type must be RuntimeDefault or Localhost (got {seccomp})"
        yield from _selinux(where, sc.get("seLinuxOptions"))
        if sc.get("procMount", "Default") != "Default":
            yield f"{where}: procMount must be Default"
        if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
            yield f"{where}: appArmorProfile.type must not be Unconfined"
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            yield f"{where}: windowsOptions.hostProcess must not be true"
