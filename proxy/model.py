"""The values every layer shares: verbs, identities, routes, decisions, the per-request context.

Everything here is a plain immutable value; nothing does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Verb(enum.StrEnum):
    """What a role may do. A route maps to exactly one verb; deny is the default."""

    VIEW = "view"
    LOGS = "logs"
    SUBMIT = "submit"
    STOP = "stop"
    DELETE = "delete"
    SERVE = "serve"
    DEBUG = "debug"
    CLIENT = "client"


class Action(enum.Enum):
    """What the proxy does with a classified route once the caller is allowed."""

    FORWARD = "forward"  # stream to Ray
    LOCAL = "local"  # answered by the proxy itself, Ray never sees it
    DENY = "deny"  # internal or test-only: refused whatever the role


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified IAP principal. `email` is lower-cased; `hd` is the hosted domain, if any."""

    email: str
    subject: str
    hosted_domain: str | None = None
    expires_at: float = 0.0

    @property
    def is_service_account(self) -> bool:
        return self.email.endswith(".gserviceaccount.com")


@dataclass(frozen=True, slots=True)
class Route:
    """One row of the route table: method + path pattern -> verb."""

    method: str
    pattern: str
    verb: Verb | None
    action: Action = Action.FORWARD
    websocket: bool = False
    note: str = ""

    @property
    def name(self) -> str:
        return f"{self.method} {self.pattern}"


class Outcome(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    reason: str
    role: str | None = None

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOW


@dataclass(slots=True)
class RequestContext:
    """One per request: filled in as the pipeline goes, read by the access log afterwards."""

    request_id: str
    method: str
    target: str
    remote: str
    started: float
    trace_id: str = ""
    span_id: str = ""
    identity: Identity | None = None
    tenant: str = ""
    route: Route | None = None
    verb: Verb | None = None
    decision: str = ""
    reason: str = ""
    status: int = 0
    upstream_status: int | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    websocket: bool = False
    extra: dict[str, str] = field(default_factory=dict)
