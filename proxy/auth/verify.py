"""Verify one signed token. Pure: keys, rules and `now` come in, an Identity or `Unauthenticated`
goes out.

Only the provider's one algorithm is accepted, the key is chosen by `kid` from our own key set (`jku`,
`x5u` and `jwk` header fields are never looked at), and every claim is checked here by hand so that
the rules are readable in one place: an issuer from the list, an audience that is a string in the
configured list, `exp`/`iat` numbers within leeway, a bounded lifetime, an email (verified, where the
provider says so), a subject.

Emails are compared as they are, lower-cased in A-Z only (`model.ascii_lower`): Unicode case folding
would make `\u212a@example.com` (KELVIN SIGN) the same person as `k@example.com`. An email that is not
plain ASCII is refused unless the provider's rules allow it (`iap.allow_non_ascii_emails`).

Who vouches for the email is part of the identity. IAP with external identities (Identity Platform)
signs assertions whose `identity_source` is not `GOOGLE` (`GCIP`), with a `gcip` claim holding the
user as the external provider describes them. Such a principal is written as IAP itself writes it,
`securetoken.google.com/PROJECT[/TENANT]:EMAIL` (EMAIL from `gcip.email`, verified only if
`gcip.email_verified` is true): an address with a `:` is no Google account, so it can never equal a
`user:` member, a group's member, a Kubernetes RBAC subject or the owner of a Google user's job. It
matches only the policy's `external:` members (`Identity.is_external`). Any sign of an external
identity (the claim, a `gcip` object, a `securetoken.google.com/` prefix) makes it one: a
contradiction is never read as Google's.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from ..errors import Unauthenticated, UnknownKeyId
from ..model import GOOGLE_IDENTITY, CredentialKind, Identity, ascii_lower

log = logging.getLogger("ray_iap_proxy.verify")
MAX_TOKEN_BYTES = 8192
_JWS_RE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
_GCIP_PREFIX = "securetoken.google.com/"  # Identity Platform's issuer, prefixed to its `email`/`sub`


@dataclass(frozen=True, slots=True)
class Rules:
    """What one provider accepts."""

    kind: CredentialKind
    algorithm: str  # exactly one: "ES256" (IAP) or "RS256" (Google ID tokens)
    issuers: frozenset[str]
    audiences: frozenset[str]
    leeway_seconds: int
    max_lifetime_seconds: int
    require_verified_email: bool = False
    allow_non_ascii_email: bool = False


def looks_like_jwt(token: str) -> bool:
    return len(token) <= MAX_TOKEN_BYTES and bool(_JWS_RE.match(token))


def key_id(token: str, algorithm: str) -> str:
    """Check the token's shape and header; return its `kid`. Raises Unauthenticated."""
    if not token:
        raise Unauthenticated("empty assertion")
    if len(token) > MAX_TOKEN_BYTES:
        raise Unauthenticated("assertion too large")
    if not _JWS_RE.match(token):
        raise Unauthenticated("malformed assertion")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthenticated("malformed assertion header") from None
    if header.get("alg") != algorithm:
        raise Unauthenticated(f"algorithm must be {algorithm}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise Unauthenticated("assertion has no key id")
    return kid


def verify(token: str, keys: Mapping[str, Any], rules: Rules, now: float) -> Identity:
    """Verify signature and claims of `token` at time `now` (seconds since the epoch)."""
    kid = key_id(token, rules.algorithm)
    key = keys.get(kid)
    if key is None:
        raise UnknownKeyId(kid)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[rules.algorithm],
            options={
                "verify_signature": True,
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "verify_aud": False,
                "verify_iss": False,
                "verify_sub": False,
                "verify_jti": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise Unauthenticated("bad signature") from None
    except jwt.PyJWTError:
        raise Unauthenticated("malformed assertion") from None
    return identity_from_claims(claims, rules, now)


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unauthenticated(f"claim {name} missing or not a number")
    # JSON as Python reads it admits NaN, Infinity and integers too large for a float; NaN compares
    # false with everything, which would turn every time check below into a pass.
    number = float(value) if isinstance(value, float) or abs(value) < 2**63 else math.nan
    if not math.isfinite(number):
        raise Unauthenticated(f"claim {name} missing or not a number")
    return number


def identity_from_claims(claims: Mapping[str, Any], rules: Rules, now: float) -> Identity:
    """Check the claims of a token whose signature is already verified."""
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or issuer not in rules.issuers:
        raise Unauthenticated("wrong issuer")
    aud = claims.get("aud")
    if not isinstance(aud, str) or aud not in rules.audiences:
        # The received audience is not a secret, and without it a misconfigured `audiences` cannot be
        # told from a token meant for another service: it is in the answer, the record and the log.
        received = repr(aud[:200]) if isinstance(aud, str) else f"a {type(aud).__name__}, not a string"
        log.debug("wrong audience: received %s; accepted %s", received, sorted(rules.audiences))
        raise Unauthenticated(f"wrong audience (received {received})")
    exp, iat = _number(claims, "exp"), _number(claims, "iat")
    leeway = rules.leeway_seconds
    if now > exp + leeway:
        raise Unauthenticated("expired")
    if iat > now + leeway:
        raise Unauthenticated("issued in the future")
    if exp <= iat or exp - iat > rules.max_lifetime_seconds:
        # the limit is not a secret: it tells whoever minted a longer token (dev-token --lifetime) why
        raise Unauthenticated(f"lifetime out of bounds (at most {rules.max_lifetime_seconds} s)")
    email = claims.get("email")
    if not isinstance(email, str) or not _EMAIL_RE.match(email):
        raise Unauthenticated("claim email missing or malformed")
    if rules.require_verified_email and claims.get("email_verified") is not True:
        raise Unauthenticated("email not verified")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthenticated("claim sub missing")
    hd = claims.get("hd")
    if hd is not None and not isinstance(hd, str):
        raise Unauthenticated("claim hd is not a string")
    source, email, verified = _who_vouches(claims, email, sub)
    if not email.isascii() and not rules.allow_non_ascii_email:
        raise Unauthenticated("email is not plain ASCII (see iap.allow_non_ascii_emails)")
    return Identity(
        email=ascii_lower(email),
        subject=sub,
        kind=rules.kind,
        issuer=issuer,
        hosted_domain=ascii_lower(hd) if hd and source == GOOGLE_IDENTITY else None,
        expires_at=exp,
        identity_source=source,
        email_verified=verified,
    )


def _who_vouches(claims: Mapping[str, Any], email: str, sub: str) -> tuple[str, str, bool]:
    """(identity source, principal, whether its email is verified). Google's own: the `email` claim,
    verified by Google. Anything else: `NAMESPACE:EMAIL`, verified only if its provider says so."""
    source = claims.get("identity_source", GOOGLE_IDENTITY)
    if not isinstance(source, str) or not source:
        raise Unauthenticated("claim identity_source is not a string")
    gcip = claims.get("gcip")
    marked = gcip is not None or email.startswith(_GCIP_PREFIX) or sub.startswith(_GCIP_PREFIX)
    if source == GOOGLE_IDENTITY and not marked:
        if ":" in email:  # no Google address holds one: it would pass for a namespaced principal
            raise Unauthenticated("claim email missing or malformed")
        return GOOGLE_IDENTITY, email, True
    if source == GOOGLE_IDENTITY:
        source = "GCIP"  # a Google source with Identity Platform's marks: never read as Google's
    namespace, _, plain = email.rpartition(":")
    if not namespace:
        namespace = sub.rpartition(":")[0] if sub.startswith(_GCIP_PREFIX) else ascii_lower(source)
    verified = False
    if isinstance(gcip, Mapping) and isinstance(gcip.get("email"), str):
        plain, verified = gcip["email"], gcip.get("email_verified") is True
    if not _EMAIL_RE.match(plain) or ":" in plain:
        raise Unauthenticated("external identity without a usable email")
    return source, f"{namespace}:{plain}", verified
