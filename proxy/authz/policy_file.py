"""The policy document: its schema (roles, groups, bindings), and its compilation into a `Policy`.

Shape and value rules live in the schema, so `ray-iap-proxy schema policy` shows them to editors;
references between parts (a binding's role, a member's group) are checked when compiling. Every
problem is reported at once, each naming its key path and value.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

from ..errors import ConfigError
from ..model import Verb, ascii_lower
from ..settings.base import Section, Str, invalid
from ..settings.load import parse_yaml, read_yaml, validate
from ..settings.schema import TENANT_RE
from .policy import OWNABLE, Binding, Member, MemberKind, Policy

EMAIL_RE = re.compile(r"^[^@\s:]+@[^@\s:]+\.[^@\s:]+$")
DOMAIN_RE = re.compile(r"^([a-z0-9-]+\.)+[a-z0-9-]+$")
EXTERNAL_NAMESPACE_RE = re.compile(r"^[a-z0-9][a-z0-9._/-]*$")  # securetoken.google.com/PROJECT[/TENANT]
_KINDS = "user, group, domain, serviceAccount, external, system"
SYSTEM_PRINCIPALS = frozenset({"ray-token"})
OWN_SUFFIX = ":own"


def _verb(value: object) -> object:
    if value == "*" or (isinstance(value, str) and value in Verb.__members__.values()):
        return value
    if isinstance(value, str) and value.endswith(OWN_SUFFIX):  # `stop:own`: the caller's jobs only
        if value[: -len(OWN_SUFFIX)] in {v.value for v in OWNABLE}:
            return value
        ownable = ", ".join(f"{v.value}{OWN_SUFFIX}" for v in sorted(OWNABLE))
        raise invalid(f"cannot be scoped to the caller's own jobs (only {ownable})")
    known = ", ".join(v.value for v in Verb)
    ownable = ", ".join(f"{v.value}{OWN_SUFFIX}" for v in sorted(OWNABLE))
    raise invalid(f'is not a verb (known: {known}, {ownable}, or "*")')


def _some_verbs(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise invalid("must be a non-empty list of verbs")
    return value


def _email(value: object) -> object:
    if not isinstance(value, str) or not EMAIL_RE.match(value):
        raise invalid("is not an email address")
    return value


def _group_name(value: object) -> object:
    if not isinstance(value, str) or not EMAIL_RE.match(value):
        raise invalid("is not a group email address")
    return value


def _tenant(value: object) -> object:
    if isinstance(value, str) and not TENANT_RE.match(value):
        raise invalid("is not a namespace name")
    return value


def parse_member(text: object) -> Member:
    """`KIND:VALUE` checked on its own (whether a group is defined is checked by `compile_policy`)."""
    if not isinstance(text, str) or ":" not in text:
        raise invalid(f"must be KIND:VALUE with KIND one of {_KINDS}")
    kind_name, _, value = text.partition(":")
    try:
        kind = MemberKind(kind_name)
    except ValueError:
        raise invalid(f"has unknown kind {kind_name!r} ({_KINDS})") from None
    value = ascii_lower(value.strip())  # A-Z only: Unicode folding would make look-alikes equal
    if kind is MemberKind.SYSTEM:
        if value not in SYSTEM_PRINCIPALS:
            raise invalid(f"is not a system principal (known: {', '.join(sorted(SYSTEM_PRINCIPALS))})")
        return Member(kind, value)
    if kind is MemberKind.EXTERNAL:  # EMAIL, or NAMESPACE:EMAIL as IAP writes external principals
        namespace, _, email = value.rpartition(":")
        if not EMAIL_RE.match(email) or (namespace and not EXTERNAL_NAMESPACE_RE.match(namespace)):
            raise invalid(
                "is not an email address, or NAMESPACE:EMAIL (securetoken.google.com/PROJECT:EMAIL)"
            )
        return Member(kind, value)
    if kind is MemberKind.DOMAIN:
        if not DOMAIN_RE.match(value):
            raise invalid("is not a domain")
    elif not EMAIL_RE.match(value):
        raise invalid("is not an email address")
    if kind is MemberKind.SERVICE_ACCOUNT and not value.endswith(".gserviceaccount.com"):
        raise invalid("is not a service account (…gserviceaccount.com)")
    if kind is MemberKind.USER and value.endswith(".gserviceaccount.com"):
        raise invalid(f"is a service account: write serviceAccount:{value}")
    return Member(kind, value)


def _member(text: object) -> object:
    parse_member(text)
    return text


VerbName = Annotated[str, BeforeValidator(_verb)]
MemberText = Annotated[
    str, BeforeValidator(_member), Field(pattern=r"^(user|group|domain|serviceAccount|external|system):.+$")
]


class BindingDoc(Section):
    tenant: Annotated[Str, AfterValidator(_tenant)] = Field(
        description="the namespace this binding grants in"
    )
    role: Str = Field(description="a role defined under `roles`")
    members: tuple[MemberText, ...] = Field(
        (),
        description="who: `user:EMAIL`, `group:EMAIL`, `domain:DOMAIN` (the verified `hd` claim), "
        "`serviceAccount:EMAIL` (Google accounts), `external:EMAIL` or `external:NAMESPACE:EMAIL` (IAP "
        "external identities with a verified email)",
    )


class PolicyDoc(Section):
    """A policy file: roles (verbs), static groups, and bindings of members to roles per tenant."""

    roles: dict[str, Annotated[tuple[VerbName, ...], AfterValidator(_some_verbs)]] = Field(
        default_factory=dict,
        description='role name -> the verbs it grants ("*" = every verb; `stop:own`, '
        "`delete:own`, `logs:own`: only on jobs the caller submitted)",
    )
    groups: dict[
        Annotated[str, BeforeValidator(_group_name)], tuple[Annotated[str, BeforeValidator(_email)], ...]
    ] = Field(default_factory=dict, description="group email -> member emails (static membership)")
    bindings: tuple[BindingDoc, ...] = Field((), description="role grants, per tenant")


def compile_policy(doc: PolicyDoc, problems: list[str]) -> Policy:
    """The document's parts tied together; references that do not resolve are problems."""
    roles = {
        name: frozenset(Verb)
        if "*" in verbs
        else frozenset(Verb(v) for v in verbs if not v.endswith(OWN_SUFFIX))
        for name, verbs in doc.roles.items()
    }
    owned = {
        name: frozenset(Verb(v[: -len(OWN_SUFFIX)]) for v in verbs if v.endswith(OWN_SUFFIX))
        for name, verbs in doc.roles.items()
    }
    groups = {
        ascii_lower(name): frozenset(ascii_lower(m) for m in members) for name, members in doc.groups.items()
    }
    bindings: list[Binding] = []
    for i, b in enumerate(doc.bindings):
        if b.role not in roles:
            defined = ", ".join(roles)
            problems.append(
                f"bindings[{i}].role: {b.role!r} is not a role defined under roles (defined: {defined})"
            )
        members = []
        for j, text in enumerate(b.members):
            member = parse_member(text)
            if member.kind is MemberKind.GROUP and member.value not in groups:
                problems.append(
                    f"bindings[{i}].members[{j}]: {text!r} names a group not defined under groups"
                )
                continue
            members.append(member)
        if b.role in roles:
            bindings.append(Binding(tenant=b.tenant, role=b.role, members=tuple(members)))
    return Policy(roles=roles, groups=groups, bindings=tuple(bindings), owned=owned)


def parse_policy(raw: Any, problems: list[str]) -> Policy | None:
    """A policy document (already parsed YAML) checked and compiled; problems are appended."""
    doc = validate(PolicyDoc, raw, problems)
    if doc is None:
        return None
    found: list[str] = []
    policy = compile_policy(doc, found)
    problems += found
    return None if found else policy


def read_policy(path: Path) -> Policy:
    """Read, check and compile the policy file; raise ConfigError naming every problem."""
    problems: list[str] = []
    raw = read_yaml(path, "policy_file", problems)
    if problems:
        raise ConfigError(problems)
    policy = parse_policy(raw, problems)
    if policy is None:
        raise ConfigError([f"{path}: {p}" for p in problems])
    return policy


def policy_from_text(content: bytes, path: Path) -> Policy:
    """A new version of the policy file (as a watcher read it), checked and compiled; ConfigError
    naming every problem, each with the file, key path and value."""
    problems: list[str] = []
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"policy_file: {str(path)!r} is not UTF-8 text"]) from None
    raw = parse_yaml(text, path, "policy_file", problems)
    policy = parse_policy(raw, problems) if not problems else None
    if policy is None:
        raise ConfigError([p if p.startswith("policy_file:") else f"{path}: {p}" for p in problems])
    return policy


def read_policy_problems(path: Path) -> list[str]:
    try:
        read_policy(path)
    except ConfigError as exc:
        return exc.problems
    return []
