"""Configuration: YAML in, frozen dataclasses out.

`load()` reads the config file and the policy file it names, checks every key, and raises
`ConfigError` with *all* problems found, each naming the key path and the bad value. Unknown keys are
errors. Nothing here is consulted per request except the completed objects it returns.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from .authz.policy import Binding, Member, MemberKind, Policy
from .model import Verb

DEFAULT_LISTEN = "127.0.0.1:8265"
DEFAULT_UPSTREAM = "http://127.0.0.1:18265"
DEFAULT_ISSUER = "https://cloud.google.com/iap"
DEFAULT_JWKS_URL = "https://www.gstatic.com/iap/verify/public_key-jwk"
DEFAULT_LEEWAY_SECONDS = 30
DEFAULT_KEY_REFRESH_SECONDS = 3600
DEFAULT_KEY_MIN_REFETCH_SECONDS = 30
DEFAULT_KEY_FETCH_TIMEOUT_SECONDS = 5
# IAP tokens live 10 minutes; Google says allow "10 minutes + 2 * skew".
DEFAULT_MAX_TOKEN_LIFETIME_SECONDS = 600
DEFAULT_TOKEN_CACHE_SIZE = 10_000
DEFAULT_SHUTDOWN_GRACE_SECONDS = 25
DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024 + 64 * 1024  # Ray's own limit is 100 MiB
DEFAULT_MAX_WEBSOCKET_MESSAGE_BYTES = 4 * 1024 * 1024
DEFAULT_UPSTREAM_CONNECT_TIMEOUT_SECONDS = 5.0
DEFAULT_UPSTREAM_READ_TIMEOUT_SECONDS = 3600.0  # matches the load balancer's timeoutSec for log tails
DEFAULT_MAX_HEADER_BYTES = 8190
DEFAULT_MAX_HEADERS = 100
DEFAULT_MAX_TARGET_LENGTH = 4096
DEFAULT_CLIENT_IDLE_TIMEOUT_SECONDS = 75.0  # also bounds how long a request's headers may take
DEFAULT_CLIENT_READ_TIMEOUT_SECONDS = 60.0  # longest stall of a request body, or of a client reading ours
DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_HEALTH_PATH = "/healthz"
DEFAULT_READY_PATH = "/readyz"

_TENANT_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_EMAIL_RE = re.compile(r"^[^@\s:]+@[^@\s:]+\.[^@\s:]+$")
_DOMAIN_RE = re.compile(r"^([a-z0-9-]+\.)+[a-z0-9-]+$")


class ConfigError(Exception):
    """Every problem found in a config, one line each, each naming the key path and the value."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class IapConfig:
    audiences: tuple[str, ...]
    jwks_url: str = DEFAULT_JWKS_URL
    issuer: str = DEFAULT_ISSUER
    leeway_seconds: int = DEFAULT_LEEWAY_SECONDS
    max_token_lifetime_seconds: int = DEFAULT_MAX_TOKEN_LIFETIME_SECONDS
    key_refresh_seconds: int = DEFAULT_KEY_REFRESH_SECONDS
    key_min_refetch_seconds: int = DEFAULT_KEY_MIN_REFETCH_SECONDS
    key_fetch_timeout_seconds: int = DEFAULT_KEY_FETCH_TIMEOUT_SECONDS
    token_cache_size: int = DEFAULT_TOKEN_CACHE_SIZE


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_websocket_message_bytes: int = DEFAULT_MAX_WEBSOCKET_MESSAGE_BYTES
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_headers: int = DEFAULT_MAX_HEADERS
    max_target_length: int = DEFAULT_MAX_TARGET_LENGTH
    client_idle_timeout_seconds: float = DEFAULT_CLIENT_IDLE_TIMEOUT_SECONDS
    client_read_timeout_seconds: float = DEFAULT_CLIENT_READ_TIMEOUT_SECONDS
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    upstream_connect_timeout_seconds: float = DEFAULT_UPSTREAM_CONNECT_TIMEOUT_SECONDS
    upstream_read_timeout_seconds: float = DEFAULT_UPSTREAM_READ_TIMEOUT_SECONDS


@dataclass(frozen=True, slots=True)
class Config:
    listen: HostPort
    upstream: str
    tenant: str
    iap: IapConfig
    policy: Policy
    policy_file: Path
    ray_token_file: Path | None = None
    limits: Limits = Limits()
    shutdown_grace_seconds: float = DEFAULT_SHUTDOWN_GRACE_SECONDS
    tracing_exporter: str = "none"
    metrics_listen: HostPort | None = None  # a separate listener for /metrics; off when None
    source: Path | None = None

    def read_ray_token(self) -> str | None:
        """Ray's own token, read fresh from its file (Kubernetes rotates Secrets in place)."""
        if self.ray_token_file is None:
            return None
        token = self.ray_token_file.read_text(encoding="utf-8").strip()
        if not token:
            raise ConfigError([f"ray_token_file: {str(self.ray_token_file)!r} is empty"])
        return token


# --------------------------------------------------------------------------------------------------
# A tiny checked reader: every `take` records a problem instead of raising, so that one pass
# reports everything that is wrong.

T = TypeVar("T")
_MISSING: Any = object()


class _Section:
    def __init__(self, data: object, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        self.seen: set[str] = set()
        if not isinstance(data, Mapping):
            self.problem("", data, "must be a mapping")
            data = {}
        self.data: Mapping[str, Any] = data

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def problem(self, name: str, value: object, why: str) -> None:
        where = self.key(name) if name else (self.path or "(top level)")
        self.problems.append(f"{where}: {value!r} {why}")

    def take(self, name: str, kind: type[T], default: T = _MISSING) -> T:
        self.seen.add(name)
        if name not in self.data or self.data[name] is None:
            if default is _MISSING:
                self.problems.append(f"{self.key(name)}: required")
                return None  # type: ignore[return-value]
            return default
        value = self.data[name]
        ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            self.problem(name, value, f"must be {_KIND_NAMES.get(kind, kind.__name__)}")
            return default
        return value  # type: ignore[no-any-return]

    def number(self, name: str, kind: type[T], default: T, low: float, high: float) -> T:
        value = self.take(name, kind, default)
        if value is not default and not low <= value <= high:  # type: ignore[operator]
            self.problem(name, value, f"must be between {low:g} and {high:g}")
            return default
        return value

    def sub(self, name: str) -> _Section:
        self.seen.add(name)
        return _Section(self.data.get(name) or {}, self.key(name), self.problems)

    def finish(self) -> None:
        for name in self.data:
            if name not in self.seen:
                self.problems.append(f"{self.key(str(name))}: unknown key")


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", list: "a list", bool: "true or false"}


def _check(section: _Section, name: str, value: T, ok: Callable[[T], bool], why: str) -> T:
    if value is not None and not ok(value):
        section.problem(name, value, why)
    return value


# --------------------------------------------------------------------------------------------------


def load(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read and check the config file and its policy; raise ConfigError listing every problem."""
    env = os.environ if environ is None else environ
    source = Path(path)
    problems: list[str] = []
    raw = _read_yaml(source, "config", problems)
    top = _Section(raw if raw is not None else {}, "", problems)

    listen = _parse_listen(top, "listen", top.take("listen", str, DEFAULT_LISTEN))
    metrics_text = top.take("metrics_listen", str, "")
    metrics_listen = _parse_listen(top, "metrics_listen", metrics_text) if metrics_text else None
    if metrics_listen is not None and metrics_listen.port == listen.port:
        top.problem("metrics_listen", metrics_text, "must use another port than listen")
    upstream = _parse_upstream(top, top.take("upstream", str, DEFAULT_UPSTREAM))
    tenant = top.take("tenant", str, env.get("POD_NAMESPACE", "")) or ""
    if not tenant:
        problems.append("tenant: required (or set POD_NAMESPACE)")
    else:
        _check(
            top, "tenant", tenant, lambda t: bool(_TENANT_RE.match(t)), "must be a Kubernetes namespace name"
        )
    iap = _parse_iap(top.sub("iap"))
    limits = _parse_limits(top.sub("limits"))
    token_file = top.take("ray_token_file", str, "") or None
    policy_name = top.take("policy_file", str, "")
    grace = top.number("shutdown_grace_seconds", float, float(DEFAULT_SHUTDOWN_GRACE_SECONDS), 0, 3600)
    tracing = top.sub("tracing")
    exporter = tracing.take("exporter", str, "none")
    _check(tracing, "exporter", exporter, lambda e: e in ("none", "console"), "must be none or console")
    tracing.finish()
    top.finish()

    base = source.parent
    policy_file = (base / policy_name) if policy_name else source
    policy = Policy(roles={}, groups={}, bindings=())
    if policy_name:
        policy_problems: list[str] = []
        policy = parse_policy(_read_yaml(policy_file, "policy_file", problems), policy_problems)
        problems += [f"{policy_file}: {p}" for p in policy_problems]
    if problems:
        raise ConfigError(problems)
    return Config(
        listen=listen,
        upstream=upstream,
        tenant=tenant,
        iap=iap,
        policy=policy,
        policy_file=policy_file,
        ray_token_file=(base / token_file) if token_file else None,
        limits=limits,
        shutdown_grace_seconds=grace,
        tracing_exporter=exporter,
        metrics_listen=metrics_listen,
        source=source,
    )


def _read_yaml(path: Path, key: str, problems: list[str]) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.append(f"{key}: {str(path)!r} cannot be read ({exc.strerror or exc})")
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problems.append(f"{key}: {str(path)!r} is not valid YAML{where}")
        return None


def _parse_listen(top: _Section, key: str, text: str) -> HostPort:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        top.problem(key, text, "must be HOST:PORT with a port from 1 to 65535")
        return HostPort("127.0.0.1", 8265)
    return HostPort(host, int(port))


def _parse_upstream(top: _Section, text: str) -> str:
    parts = urlsplit(text)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or (parts.query or parts.fragment or parts.username)
    ):
        top.problem("upstream", text, "must be http://HOST:PORT (the Ray dashboard, no path)")
        return DEFAULT_UPSTREAM
    return text.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_iap(sec: _Section) -> IapConfig:
    audiences = sec.take("audiences", list)
    if audiences is None:
        audiences = []
    elif not audiences:
        sec.problem("audiences", audiences, "must list at least one audience")
    for i, aud in enumerate(audiences):
        if not isinstance(aud, str) or not aud.strip():
            sec.problem(f"audiences[{i}]", aud, "must be a non-empty string")
    jwks_url = sec.take("jwks_url", str, DEFAULT_JWKS_URL)
    url = urlsplit(jwks_url)
    if not url.hostname or url.scheme not in ("http", "https"):
        sec.problem("jwks_url", jwks_url, "must be an https URL")
    elif url.scheme == "http" and not _is_loopback(url.hostname):
        sec.problem("jwks_url", jwks_url, "must be https (plain http is allowed only on loopback)")
    issuer = sec.take("issuer", str, DEFAULT_ISSUER)
    _check(sec, "issuer", issuer, bool, "must not be empty")
    iap = IapConfig(
        audiences=tuple(a for a in audiences if isinstance(a, str)),
        jwks_url=jwks_url,
        issuer=issuer,
        leeway_seconds=sec.number("leeway_seconds", int, DEFAULT_LEEWAY_SECONDS, 0, 300),
        max_token_lifetime_seconds=sec.number(
            "max_token_lifetime_seconds", int, DEFAULT_MAX_TOKEN_LIFETIME_SECONDS, 60, 86400
        ),
        key_refresh_seconds=sec.number("key_refresh_seconds", int, DEFAULT_KEY_REFRESH_SECONDS, 60, 86400),
        key_min_refetch_seconds=sec.number(
            "key_min_refetch_seconds", int, DEFAULT_KEY_MIN_REFETCH_SECONDS, 1, 3600
        ),
        key_fetch_timeout_seconds=sec.number(
            "key_fetch_timeout_seconds", int, DEFAULT_KEY_FETCH_TIMEOUT_SECONDS, 1, 60
        ),
        token_cache_size=sec.number("token_cache_size", int, DEFAULT_TOKEN_CACHE_SIZE, 0, 1_000_000),
    )
    sec.finish()
    return iap


def _parse_limits(sec: _Section) -> Limits:
    d = Limits()
    limits = Limits(
        max_body_bytes=sec.number("max_body_bytes", int, d.max_body_bytes, 0, 2**40),
        max_websocket_message_bytes=sec.number(
            "max_websocket_message_bytes", int, d.max_websocket_message_bytes, 1024, 2**30
        ),
        max_header_bytes=sec.number("max_header_bytes", int, d.max_header_bytes, 1024, 1 << 20),
        max_headers=sec.number("max_headers", int, d.max_headers, 8, 10_000),
        max_target_length=sec.number("max_target_length", int, d.max_target_length, 64, 1 << 20),
        client_idle_timeout_seconds=sec.number(
            "client_idle_timeout_seconds", float, d.client_idle_timeout_seconds, 1, 86400
        ),
        client_read_timeout_seconds=sec.number(
            "client_read_timeout_seconds", float, d.client_read_timeout_seconds, 0.5, 3600
        ),
        max_connections=sec.number("max_connections", int, d.max_connections, 1, 1_000_000),
        upstream_connect_timeout_seconds=sec.number(
            "upstream_connect_timeout_seconds", float, d.upstream_connect_timeout_seconds, 0.1, 300
        ),
        upstream_read_timeout_seconds=sec.number(
            "upstream_read_timeout_seconds", float, d.upstream_read_timeout_seconds, 1, 86400
        ),
    )
    sec.finish()
    return limits


# --------------------------------------------------------------------------------------------------
# Policy file


def parse_policy(raw: object, problems: list[str]) -> Policy:
    """Check a policy document (roles, groups, bindings) and compile it; problems are appended."""
    top = _Section(raw if raw is not None else {}, "", problems)
    roles_raw = top.take("roles", dict, {})
    groups_raw = top.take("groups", dict, {})
    bindings_raw = top.take("bindings", list, [])
    top.finish()

    all_verbs = frozenset(Verb)
    roles: dict[str, frozenset[Verb]] = {}
    for role, verbs in roles_raw.items():
        key = f"roles.{role}"
        if not isinstance(verbs, list) or not verbs:
            problems.append(f"{key}: {verbs!r} must be a non-empty list of verbs")
            continue
        granted: set[Verb] = set()
        for i, verb in enumerate(verbs):
            if verb == "*":
                granted |= all_verbs
            elif isinstance(verb, str) and verb in Verb.__members__.values():
                granted.add(Verb(verb))
            else:
                known = ", ".join(v.value for v in Verb)
                problems.append(f'{key}[{i}]: {verb!r} is not a verb (known: {known}, or "*")')
        roles[str(role)] = frozenset(granted)

    groups: dict[str, frozenset[str]] = {}
    for group, emails in groups_raw.items():
        key = f"groups.{group}"
        if not isinstance(group, str) or not _EMAIL_RE.match(group):
            problems.append(f"groups: {group!r} is not a group email address")
        if not isinstance(emails, list):
            problems.append(f"{key}: {emails!r} must be a list of email addresses")
            continue
        for i, m in enumerate(emails):
            if not isinstance(m, str) or not _EMAIL_RE.match(m):
                problems.append(f"{key}[{i}]: {m!r} is not an email address")
        groups[str(group).lower()] = frozenset(str(m).lower() for m in emails if isinstance(m, str))

    bindings: list[Binding] = []
    for i, b in enumerate(bindings_raw):
        sec = _Section(b, f"bindings[{i}]", problems)
        tenant = sec.take("tenant", str, "")
        _check(sec, "tenant", tenant, lambda t: bool(_TENANT_RE.match(t)), "is not a namespace name")
        role = sec.take("role", str, "")
        if role and role not in roles:
            sec.problem("role", role, f"is not a role defined under roles (defined: {', '.join(roles)})")
        members_raw = sec.take("members", list, [])
        members: list[Member] = []
        for j, text in enumerate(members_raw):
            member = _parse_member(text, f"{sec.key('members')}[{j}]", groups, problems)
            if member is not None:
                members.append(member)
        sec.finish()
        if tenant and role:
            bindings.append(Binding(tenant=tenant, role=role, members=tuple(members)))

    return Policy(roles=roles, groups=groups, bindings=tuple(bindings))


def _parse_member(
    text: object, key: str, groups: Mapping[str, frozenset[str]], problems: list[str]
) -> Member | None:
    if not isinstance(text, str) or ":" not in text:
        problems.append(
            f"{key}: {text!r} must be KIND:VALUE with KIND one of user, group, domain, serviceAccount"
        )
        return None
    kind_name, _, value = text.partition(":")
    try:
        kind = MemberKind(kind_name)
    except ValueError:
        problems.append(
            f"{key}: {text!r} has unknown kind {kind_name!r} (user, group, domain, serviceAccount)"
        )
        return None
    value = value.strip().lower()
    if kind is MemberKind.DOMAIN:
        if not _DOMAIN_RE.match(value):
            problems.append(f"{key}: {text!r} is not a domain")
            return None
    elif not _EMAIL_RE.match(value):
        problems.append(f"{key}: {text!r} is not an email address")
        return None
    if kind is MemberKind.SERVICE_ACCOUNT and not value.endswith(".gserviceaccount.com"):
        problems.append(f"{key}: {text!r} is not a service account (…gserviceaccount.com)")
        return None
    if kind is MemberKind.USER and value.endswith(".gserviceaccount.com"):
        problems.append(f"{key}: {text!r} is a service account: write serviceAccount:{value}")
        return None
    if kind is MemberKind.GROUP and value not in groups:
        problems.append(f"{key}: {text!r} names a group not defined under groups")
        return None
    return Member(kind, value)
