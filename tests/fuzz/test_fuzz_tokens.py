"""Fuzz targets for token parsing and verification (`proxy.auth.verify`, `auth.authenticate`).

Whatever the input, verification either returns an identity or raises Unauthenticated: never another
exception (which the pipeline would turn into a 500) and never an identity the rules refuse.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import string
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from proxy import dev
from proxy.auth.authenticate import Authenticator
from proxy.auth.extract import IAP_HEADER, Presented, credentials
from proxy.auth.providers.iap import iap_rules
from proxy.auth.verify import verify
from proxy.errors import Unauthenticated
from proxy.model import CredentialKind, Identity
from proxy.settings import Iap
from tests.fuzz.budget import fuzz_settings, run

NOW = 1_900_000_000
AUD = "/projects/1/global/backendServices/2"
SETTINGS = Iap(audiences=(AUD,), leeway_seconds=30, max_token_lifetime_seconds=600)
IAP = iap_rules(SETTINGS)
KEY = ec.generate_private_key(ec.SECP256R1())
KID = dev.key_id(KEY)
KEYS = {KID: KEY.public_key()}
B64URL = string.ascii_letters + string.digits + "-_"
MISSING = object()


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def sign(header: dict[str, Any], payload: dict[str, Any]) -> str:
    signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    sig = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256).sign(signing.encode(), KEY)
    return f"{signing}.{b64(sig)}"


def outcome(token: str) -> Identity | None:
    try:
        return verify(token, KEYS, IAP, NOW)
    except Unauthenticated:
        return None


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def jws_like(draw: st.DrawFn) -> str:
    """Three dot-separated parts, each anything from garbage to a plausible base64url JSON object."""

    def part() -> str:
        kind = draw(st.integers(0, 3))
        if kind == 0:
            return draw(st.text(alphabet=B64URL + "=+/. \t%", max_size=40))
        if kind == 1:
            return b64(draw(st.binary(max_size=40)))
        if kind == 2:
            return b64(json.dumps(draw(JSONISH)).encode())
        header = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "alg": st.sampled_from(["ES256", "none", "HS256", "RS256", "es256", ""]) | JSONISH,
                    "kid": st.just(KID) | JSONISH,
                    "typ": JSONISH,
                    "jku": st.text(max_size=20),
                    "jwk": JSONISH,
                },
            )
        )
        return b64(json.dumps(header).encode())

    return ".".join(part() for _ in range(draw(st.sampled_from([3, 3, 3, 1, 2, 4]))))


def test_fuzz_any_input_is_an_identity_or_a_token_error() -> None:
    @fuzz_settings(150)
    @given(st.one_of(st.text(max_size=200), jws_like()))
    def target(token: str) -> None:
        assert outcome(token) is None  # nothing unsigned by KEY can verify

    run(target)


VALID = sign(
    {"alg": "ES256", "kid": KID},
    {
        "iss": SETTINGS.issuer,
        "aud": AUD,
        "iat": NOW,
        "exp": NOW + 600,
        "sub": "s",
        "email": "alice@example.com",
    },
)
VALID_IDENTITY = verify(VALID, KEYS, IAP, NOW)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    token = VALID
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(token)))
        op = draw(st.sampled_from(["replace", "insert", "delete", "swap-parts"]))
        ch = draw(st.sampled_from(B64URL + ".=+/ \x00é"))
        if op == "replace" and i < len(token):
            token = token[:i] + ch + token[i + 1 :]
        elif op == "insert":
            token = token[:i] + ch + token[i:]
        elif op == "delete" and i < len(token):
            token = token[:i] + token[i + 1 :]
        elif op == "swap-parts":
            parts = token.split(".")
            token = ".".join(draw(st.permutations(parts)))
    return token


def test_fuzz_mutated_tokens_fail_or_mean_exactly_the_same() -> None:
    """A changed token is refused, or (base64url's unused trailing bits) verifies as the very same
    identity: it can never become someone else."""

    @fuzz_settings(200)
    @given(mutated())
    def target(token: str) -> None:
        got = outcome(token)
        assert got is None or got == VALID_IDENTITY

    run(target)


def _number_ok(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) if isinstance(value, float) else abs(value) < 2**63


def oracle(claims: dict[str, Any]) -> Identity | None:
    """The claim rules of docs/threat-model.md, written independently of verify.py."""
    exp, iat = claims.get("exp"), claims.get("iat")
    email, sub, hd = claims.get("email"), claims.get("sub"), claims.get("hd")
    ok = (
        claims.get("iss") == SETTINGS.issuer
        and claims.get("aud") in SETTINGS.audiences
        and _number_ok(exp)
        and _number_ok(iat)
        and NOW <= exp + IAP.leeway_seconds
        and iat <= NOW + IAP.leeway_seconds
        and 0 < exp - iat <= SETTINGS.max_token_lifetime_seconds
        and isinstance(email, str)
        and re.fullmatch(r"[^@\s]+@[^@\s]+", email) is not None
        and isinstance(sub, str)
        and sub != ""
        and (hd is None or isinstance(hd, str))
    )
    if not ok:
        return None
    return Identity(
        email=email.lower(),
        subject=sub,
        kind=CredentialKind.IAP,
        issuer=SETTINGS.issuer,
        hosted_domain=hd.lower() if hd else None,
        expires_at=float(exp),
    )


def _near(value: Any) -> st.SearchStrategy[Any]:
    return st.just(value) | JSONISH | st.just(MISSING)


TIMES = (
    st.sampled_from(
        [
            NOW - 631,
            NOW - 630,
            NOW - 600,
            NOW - 31,
            NOW - 30,
            NOW,
            NOW + 30,
            NOW + 31,
            NOW + 570,
            NOW + 600,
            NOW + 601,
            NOW + 630,
            NOW + 631,
            float("nan"),
            float("inf"),
            10**30,
            -(10**30),
            2**63,
            NOW + 0.5,
        ]
    )
    | st.integers()
    | st.floats()
)


@st.composite
def claim_sets(draw: st.DrawFn) -> dict[str, Any]:
    claims = {
        "iss": draw(_near(SETTINGS.issuer) | st.just(SETTINGS.issuer + "/")),
        "aud": draw(_near(AUD) | st.just([AUD]) | st.just(AUD.upper())),
        "iat": draw(TIMES | st.just(MISSING)),
        "exp": draw(TIMES | st.just(MISSING)),
        "email": draw(_near("Alice@Example.com") | st.text(max_size=12)),
        "sub": draw(_near("accounts.google.com:1")),
        "hd": draw(_near("Example.com") | st.just(MISSING) | st.just(MISSING)),
    }
    return {k: v for k, v in claims.items() if v is not MISSING}


def test_fuzz_signed_claims_are_judged_by_the_rules() -> None:
    """Validly signed tokens with arbitrary claims: verified exactly when every claim rule holds."""

    @fuzz_settings(120)
    @given(claim_sets())
    def target(claims: dict[str, Any]) -> None:
        token = sign({"alg": "ES256", "kid": KID, "typ": "JWT"}, claims)
        assert outcome(token) == oracle(json.loads(json.dumps(claims)))

    run(target)


def test_fuzz_header_values_yield_one_assertion_or_a_token_error() -> None:
    class Recording:
        kind, label, ready, problem = CredentialKind.IAP, "IAP assertion", True, None
        got: list[str] = []

        def claims(self, presented: Presented) -> bool:
            return presented.where == IAP_HEADER

        async def authenticate(self, value: str) -> Identity:
            self.got.append(value)
            return VALID_IDENTITY

    @fuzz_settings(100)
    @given(st.lists(st.text(max_size=30), max_size=4))
    def target(values: list[str]) -> None:
        provider = Recording()
        provider.got = []
        found = credentials([(IAP_HEADER.upper() if i % 2 else IAP_HEADER, v) for i, v in enumerate(values)])
        try:
            asyncio.run(Authenticator([provider]).authenticate(found))
        except Unauthenticated:
            assert len(values) != 1 and provider.got == []
        else:
            assert len(values) == 1 and provider.got == [values[0].strip()]

    run(target)
