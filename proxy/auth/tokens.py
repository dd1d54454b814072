"""Verify one IAP assertion. Pure: keys, settings and `now` come in, an Identity or TokenError goes out.

Only ES256 is accepted, the key is chosen by `kid` from our own key set (`jku`, `x5u` and `jwk`
header fields are never looked at), and every claim is checked here by hand so that the rules are
readable in one place: exact issuer, audience a string in the configured list, `exp`/`iat` numbers
within leeway, a bounded lifetime, an email.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

from ..config import IapConfig
from ..model import Identity

MAX_TOKEN_BYTES = 8192
_JWS_RE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")


class TokenError(Exception):
    """The assertion is not acceptable. `reason` is short and safe to show; it never holds the token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownKeyId(TokenError):
    """The `kid` is not in the key set we hold: the caller may refresh the keys (rate-limited)."""

    def __init__(self, kid: str) -> None:
        super().__init__("signed with an unknown key id")
        self.kid = kid


def key_id(token: str) -> str:
    """Check the token's shape and header; return its `kid`. Raises TokenError."""
    if not token:
        raise TokenError("empty assertion")
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenError("assertion too large")
    if not _JWS_RE.match(token):
        raise TokenError("malformed assertion")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenError("malformed assertion header") from None
    if header.get("alg") != "ES256":
        raise TokenError("algorithm must be ES256")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenError("assertion has no key id")
    return kid


def verify(token: str, keys: Mapping[str, EllipticCurvePublicKey], iap: IapConfig, now: float) -> Identity:
    """Verify signature and claims of an IAP assertion at time `now` (seconds since the epoch)."""
    kid = key_id(token)
    key = keys.get(kid)
    if key is None:
        raise UnknownKeyId(kid)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["ES256"],
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
        raise TokenError("bad signature") from None
    except jwt.PyJWTError:
        raise TokenError("malformed assertion") from None
    return identity_from_claims(claims, iap, now)


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError(f"claim {name} missing or not a number")
    # JSON as Python reads it admits NaN, Infinity and integers too large for a float; NaN compares
    # false with everything, which would turn every time check below into a pass.
    number = float(value) if isinstance(value, float) or abs(value) < 2**63 else math.nan
    if not math.isfinite(number):
        raise TokenError(f"claim {name} missing or not a number")
    return number


def identity_from_claims(claims: Mapping[str, Any], iap: IapConfig, now: float) -> Identity:
    """Check the claims of a token whose signature is already verified."""
    if claims.get("iss") != iap.issuer:
        raise TokenError("wrong issuer")
    aud = claims.get("aud")
    if not isinstance(aud, str) or aud not in iap.audiences:
        raise TokenError("wrong audience")
    exp, iat = _number(claims, "exp"), _number(claims, "iat")
    leeway = iap.leeway_seconds
    if now > exp + leeway:
        raise TokenError("expired")
    if iat > now + leeway:
        raise TokenError("issued in the future")
    if exp <= iat or exp - iat > iap.max_token_lifetime_seconds:
        raise TokenError("lifetime out of bounds")
    email = claims.get("email")
    if not isinstance(email, str) or not _EMAIL_RE.match(email):
        raise TokenError("claim email missing or malformed")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise TokenError("claim sub missing")
    hd = claims.get("hd")
    if hd is not None and not isinstance(hd, str):
        raise TokenError("claim hd is not a string")
    return Identity(
        email=email.lower(), subject=sub, hosted_domain=hd.lower() if hd else None, expires_at=exp
    )
