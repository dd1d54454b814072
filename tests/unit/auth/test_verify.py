"""Token verification, pure: every rule of auth/verify.py, with an injected clock."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from proxy import dev
from proxy.auth.providers.iap import iap_rules
from proxy.auth.verify import verify
from proxy.errors import Unauthenticated, UnknownKeyId
from proxy.settings import Iap

NOW = 1_800_000_000
AUD = "/projects/1/global/backendServices/2"
SETTINGS = Iap(audiences=(AUD, "/projects/1/global/backendServices/3"), leeway_seconds=30)
IAP = iap_rules(SETTINGS)
KEY = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())
KEYS = {dev.key_id(KEY): KEY.public_key()}


def b64(obj: Any) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def sign(header: dict[str, Any], payload: dict[str, Any], key: ec.EllipticCurvePrivateKey = KEY) -> str:
    """Sign exactly what is given (PyJWT would refuse some of these shapes)."""
    signing = f"{b64(header)}.{b64(payload)}"
    sig = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256).sign(signing.encode(), key)
    return f"{signing}.{b64(sig)}"


def token(
    _key: ec.EllipticCurvePrivateKey = KEY, _headers: dict[str, Any] | None = None, **claims: Any
) -> str:
    """A valid IAP-shaped token; claims given override, `...` removes one."""
    payload: dict[str, Any] = {
        "iss": SETTINGS.issuer,
        "aud": AUD,
        "iat": NOW,
        "exp": NOW + 600,
        "sub": "accounts.google.com:42",
        "email": "Alice@Example.com",
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not ...}
    header = {"alg": "ES256", "typ": "JWT", "kid": dev.key_id(KEY)}
    header.update(_headers or {})
    return sign(header, payload, _key)


def check(tok: str, now: float = NOW) -> Any:
    return verify(tok, KEYS, IAP, now)


def test_valid_token_yields_lower_cased_identity() -> None:
    ident = check(token(hd="Example.com"))
    assert ident.email == "alice@example.com" and ident.hosted_domain == "example.com"
    assert ident.expires_at == NOW + 600 and ident.subject.startswith("accounts.google.com:")


def test_second_configured_audience_is_accepted() -> None:
    assert check(token(aud="/projects/1/global/backendServices/3")).email == "alice@example.com"


@pytest.mark.parametrize(
    "tok, reason",
    [
        ("", "empty"),
        ("a.b", "malformed"),
        ("a.b.c.d", "malformed"),
        ("a.b.c\r\nX-Evil: 1", "malformed"),
        ("!!!.@@@.###", "malformed"),
        (b64(b"not json") + "." + b64({}) + ".sig", "malformed assertion header"),
        ("x" * 9000, "too large"),
    ],
    ids=["empty", "two-parts", "four-parts", "crlf", "bad-b64", "non-json-header", "oversized"],
)
def test_malformed(tok: str, reason: str) -> None:
    with pytest.raises(Unauthenticated, match=reason):
        check(tok)


def test_alg_none_is_refused() -> None:
    tok = b64({"alg": "none", "kid": dev.key_id(KEY)}) + "." + b64({"email": "a@b.c"}) + "."
    with pytest.raises(Unauthenticated, match="malformed|ES256"):
        check(tok)
    tok = b64({"alg": "none", "kid": dev.key_id(KEY)}) + "." + b64({"email": "a@b.c"}) + ".e30"
    with pytest.raises(Unauthenticated, match="ES256"):
        check(tok)


def test_hs256_keyed_with_the_public_key_is_refused() -> None:
    pem = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    payload = jwt.decode(token(), options={"verify_signature": False})
    header = b64({"alg": "HS256", "kid": dev.key_id(KEY), "typ": "JWT"})
    import hashlib
    import hmac

    signing = f"{header}.{b64(payload)}"
    sig = (
        base64.urlsafe_b64encode(hmac.new(pem, signing.encode(), hashlib.sha256).digest())
        .decode()
        .rstrip("=")
    )
    with pytest.raises(Unauthenticated, match="ES256"):
        check(f"{signing}.{sig}")


def test_rs256_is_refused_even_when_validly_signed() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tok = jwt.encode({"email": "a@b.c"}, rsa_key, algorithm="RS256", headers={"kid": dev.key_id(KEY)})
    with pytest.raises(Unauthenticated, match="ES256"):
        check(tok)


def test_es384_is_refused() -> None:
    k = ec.generate_private_key(ec.SECP384R1())
    tok = jwt.encode({"email": "a@b.c"}, k, algorithm="ES384", headers={"kid": dev.key_id(KEY)})
    with pytest.raises(Unauthenticated, match="ES256"):
        check(tok)


def test_wrong_key_with_our_kid_is_a_bad_signature() -> None:
    payload = jwt.decode(token(), options={"verify_signature": False})
    tok = jwt.encode(payload, OTHER, algorithm="ES256", headers={"kid": dev.key_id(KEY)})
    with pytest.raises(Unauthenticated, match="bad signature"):
        check(tok)


def test_tampered_payload_is_a_bad_signature() -> None:
    h, _, s = token().split(".")
    forged = b64(
        {
            "iss": SETTINGS.issuer,
            "aud": AUD,
            "iat": NOW,
            "exp": NOW + 600,
            "sub": "x",
            "email": "admin@example.com",
        }
    )
    with pytest.raises(Unauthenticated, match="bad signature"):
        check(f"{h}.{forged}.{s}")


def test_unknown_kid_is_reported_for_a_refetch() -> None:
    with pytest.raises(UnknownKeyId) as err:
        check(token(_key=OTHER, _headers={"kid": "rotated-kid"}))
    assert err.value.kid == "rotated-kid"


@pytest.mark.parametrize("headers", [{"kid": ""}, {"kid": 7}, {"kid": None}], ids=["empty", "int", "null"])
def test_missing_or_hostile_kid(headers: dict[str, Any]) -> None:
    with pytest.raises(Unauthenticated, match="key id|malformed assertion header"):
        check(token(_headers=headers))


def test_jku_x5u_jwk_headers_are_ignored() -> None:
    attacker = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(OTHER.public_key()))
    payload = jwt.decode(token(), options={"verify_signature": False})
    tok = jwt.encode(
        payload,
        OTHER,
        algorithm="ES256",
        headers={
            "kid": "attacker",
            "jku": "http://127.0.0.1:1/jwks",
            "x5u": "http://127.0.0.1:1/x",
            "jwk": attacker,
        },
    )
    with pytest.raises(UnknownKeyId):
        check(tok)
    tok = jwt.encode(payload, OTHER, algorithm="ES256", headers={"kid": dev.key_id(KEY), "jwk": attacker})
    with pytest.raises(Unauthenticated, match="bad signature"):
        check(tok)


@pytest.mark.parametrize(
    "claims, reason",
    [
        ({"iss": "https://accounts.google.com"}, "issuer"),
        ({"iss": ...}, "issuer"),
        ({"aud": "/projects/1/global/backendServices/999"}, "audience"),
        ({"aud": [AUD]}, "audience"),
        ({"aud": ...}, "audience"),
        ({"exp": "1800000600"}, "exp"),
        ({"exp": ...}, "exp"),
        ({"exp": True}, "exp"),
        ({"iat": ...}, "iat"),
        ({"iat": None}, "iat"),
        ({"exp": 10**12}, "lifetime"),
        ({"iat": NOW + 100, "exp": NOW + 50}, "lifetime|future"),
        ({"email": ...}, "email"),
        ({"email": 5}, "email"),
        ({"email": "not-an-email"}, "email"),
        ({"sub": ...}, "sub"),
        ({"hd": ["example.com"]}, "hd"),
    ],
    ids=lambda v: json.dumps(v, default=str) if isinstance(v, dict) else v,
)
def test_claims(claims: dict[str, Any], reason: str) -> None:
    with pytest.raises(Unauthenticated, match=reason):
        check(token(**claims))


@pytest.mark.parametrize(
    "offset, ok",
    [
        (600 + 30, True),
        (600 + 30.5, False),
        (600 + 3600, False),  # exp boundary at +leeway
    ],
    ids=["at-leeway", "past-leeway", "long-expired"],
)
def test_expiry_boundary(offset: float, ok: bool) -> None:
    tok = token()
    if ok:
        assert check(tok, now=NOW + offset).email
    else:
        with pytest.raises(Unauthenticated, match="expired"):
            check(tok, now=NOW + offset)


@pytest.mark.parametrize("skew, ok", [(30, True), (31, False)], ids=["iat+leeway", "iat+leeway+1"])
def test_issued_in_the_future_boundary(skew: int, ok: bool) -> None:
    tok = token()
    if ok:
        assert check(tok, now=NOW - skew).email
    else:
        with pytest.raises(Unauthenticated, match="future"):
            check(tok, now=NOW - skew)


def test_error_reasons_never_contain_the_token() -> None:
    tok = token(iss="https://evil")
    with pytest.raises(Unauthenticated) as err:
        check(tok)
    assert tok not in str(err.value) and tok.split(".")[1] not in str(err.value)
