"""The values every layer shares: verbs, identities, routes, verdicts, the per-request context.

Everything here is a plain value; nothing does I/O. `Verdict` is what admission (`admit.py`) answers
for one request, whatever its transport.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .errors import Kind


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


class Transport(enum.StrEnum):
    HTTP = "http"
    GRPC = "grpc"


class CredentialKind(enum.StrEnum):
    """How a caller proved who they are."""

    IAP = "iap"  # IAP's signed header
    GOOGLE_ID_TOKEN = "google_id_token"  # a Google-signed OIDC ID token as a bearer
    RAY_TOKEN = "ray_token"  # the cluster's own Ray token (in-cluster callers)


GOOGLE_IDENTITY = "GOOGLE"  # IAP's `identity_source` for Google accounts; "GCIP" for Identity Platform


def ascii_lower(text: str) -> str:
    """Lower-case A-Z only. Python's `str.lower` folds by Unicode rules (KELVIN SIGN U+212A becomes
    `k`), which would let one address stand for another; identities are compared without it."""
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified caller. `email` is the principal, ASCII-lower-cased; `hosted_domain` the verified
    `hd` claim, if any; `groups` what the proxy learnt of the caller's groups (none from IAP itself).
    `identity_source` says who vouches for the email: Google, or (IAP external identities) another
    provider through Identity Platform, whose email may be unverified (`email_verified`)."""

    email: str
    subject: str
    kind: CredentialKind = CredentialKind.IAP
    issuer: str = ""
    hosted_domain: str | None = None
    groups: frozenset[str] = frozenset()
    expires_at: float = 0.0
    identity_source: str = GOOGLE_IDENTITY
    email_verified: bool = True

    @property
    def is_external(self) -> bool:
        return self.identity_source != GOOGLE_IDENTITY

    @property
    def is_service_account(self) -> bool:
        return not self.is_external and self.email.endswith(".gserviceaccount.com")


@dataclass(frozen=True, slots=True)
class Route:
    """One row of a route table: method + path pattern -> verb."""

    method: str
    pattern: str
    verb: Verb | None
    action: Action = Action.FORWARD
    websocket: bool = False
    note: str = ""
    side_effects: bool = False  # a GET that changes state (Ray's GET*): held to the cross-site rule
    job_param: str | None = None  # the path parameter naming a Ray job, for owner-scoped verbs

    @property
    def name(self) -> str:
        return f"{self.method} {self.pattern}"


@dataclass(frozen=True, slots=True)
class Target:
    """A canonical request target: the path classified is exactly the path forwarded."""

    path: str
    query: str  # without the "?"; "" when absent

    @property
    def raw(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


class Outcome(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"  # authenticated, and refused: route, cross-site or policy
    UNAUTHENTICATED = "unauthenticated"
    UNAVAILABLE = "unavailable"  # we could not decide: key set or policy source down
    MALFORMED = "malformed"


_OUTCOME_OF_KIND = {
    Kind.MALFORMED: Outcome.MALFORMED,
    Kind.TARGET_TOO_LONG: Outcome.MALFORMED,
    Kind.HEADERS_TOO_LARGE: Outcome.MALFORMED,
    Kind.UNAUTHENTICATED: Outcome.UNAUTHENTICATED,
    Kind.FORBIDDEN: Outcome.DENY,
    Kind.UNAVAILABLE: Outcome.UNAVAILABLE,
}


def outcome_of(kind: Kind) -> Outcome:
    """The admission outcome for a refusal kind; kinds admission never produces count as deny."""
    return _OUTCOME_OF_KIND.get(kind, Outcome.DENY)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Admission's answer for one request. `kind` is None exactly when allowed. `source` names what
    decided: a step ("target", "authn", "routes", "cross-site") or a policy source ("static")."""

    kind: Kind | None
    reason: str
    source: str
    identity: Identity | None = None
    target: Target | None = None
    route: Route | None = None
    upgrade: bool = False  # a WebSocket upgrade on a WebSocket route
    hint: str | None = None  # advice for a person, when the reason is not enough
    job_id: str = ""  # the Ray job the route names (its `job_param`), percent-escapes decoded

    @property
    def allowed(self) -> bool:
        return self.kind is None

    @property
    def outcome(self) -> Outcome:
        return Outcome.ALLOW if self.kind is None else outcome_of(self.kind)

    @property
    def verb(self) -> Verb | None:
        return self.route.verb if self.route is not None else None

    @property
    def credential(self) -> CredentialKind | None:
        return self.identity.kind if self.identity is not None else None


@dataclass(slots=True)
class RequestContext:
    """One per request: filled in as the request goes, read by the access record afterwards."""

    request_id: str
    method: str
    target: str
    remote: str
    started: float
    trace_id: str = ""  # 32 hex, "" when neither the caller nor our tracing started a trace
    span_id: str = ""  # our server span; without tracing, the caller's span (the load balancer's)
    trace_sampled: bool = False
    user_agent: str = ""
    forwarded_for: str = ""  # X-Forwarded-For as received: trusted only from `access_log.trusted_proxies`
    protocol: str = ""  # "HTTP/1.1", "HTTP/2"
    job_id: str = ""  # the Ray job or submission id the request names or creates, when known
    identity: Identity | None = None
    tenant: str = ""
    route: Route | None = None
    verb: Verb | None = None
    decision: str = ""
    reason: str = ""
    source: str = ""
    status: int = 0
    upstream_status: int | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    websocket: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def apply(self, verdict: Verdict) -> None:
        """Take in what admission decided."""
        self.identity, self.route, self.verb = verdict.identity, verdict.route, verdict.verb
        self.decision = "allow" if verdict.allowed else "deny"
        self.reason, self.source = verdict.reason, verdict.source
        self.job_id = verdict.job_id or self.job_id
