"""Tokens and keys, against the real app: every forged, malformed, mis-addressed or mistimed assertion
is a 401 (or a parser refusal), and none of these requests reaches Ray. The requests are not marked
MAY_PASS: the tripwire fails the test if one arrives."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from devkit.config import AUDIENCE
from devkit.http import get_request, raw_http
from devkit.keys import KeyServer
from devkit.ray_double import ASSERTION, PASS, RayDouble
from proxy import dev

NOW = 1_900_000_000
LEEWAY = 30  # the default leeway_seconds
OTHER = ec.generate_private_key(ec.SECP256R1())
RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def b64(obj: Any) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def claims(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "iss": "https://cloud.google.com/iap",
        "aud": AUDIENCE,
        "iat": NOW,
        "exp": NOW + 600,
        "sub": "accounts.google.com:1",
        "email": "alice@example.com",
    }
    body.update(over)
    return {k: v for k, v in body.items() if v is not ...}


def es256(key: ec.EllipticCurvePrivateKey, payload: dict[str, Any], **header: Any) -> str:
    """Sign exactly what is given, with `kid` defaulting to `key`'s."""
    head = {"alg": "ES256", "typ": "JWT", "kid": dev.key_id(key), **header}
    head = {k: v for k, v in head.items() if v is not ...}
    signing = f"{b64(head)}.{b64(payload)}"
    sig = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256).sign(signing.encode(), key)
    return f"{signing}.{b64(sig)}"


async def status_for(proxy: Any, token: str | None, **headers: str) -> int:
    hdrs = dict(headers)
    if token is not None:
        hdrs[ASSERTION] = token
    r = await proxy.get("/api/jobs/", headers=hdrs)
    if r.status == 401:
        body = await r.json()
        assert body["error"] == "unauthenticated" and r.headers["WWW-Authenticate"].startswith("IAP")
        assert not token or len(token) < 16 or token not in json.dumps(body)
    return r.status


# -- shape --------------------------------------------------------------------------------------------

SHAPES = {
    "empty": "",
    "blank": "   ",
    "one-segment": "eyJhbGciOiJFUzI1NiJ9",
    "two-segments": "eyJhbGciOiJFUzI1NiJ9.eyJhIjoxfQ",
    "four-segments": "eyJhbGciOiJFUzI1NiJ9.eyJhIjoxfQ.c2ln.c2ln",
    "empty-signature": "eyJhbGciOiJFUzI1NiJ9.eyJhIjoxfQ.",
    "standard-base64": "eyJhbGciOiJFUzI1NiJ9+/=.eyJhIjoxfQ==.c2ln+/",
    "header-not-json": f"{b64(b'not json')}.{b64({'a': 1})}.c2ln",
    "header-json-array": f"{b64([1, 2])}.{b64({'a': 1})}.c2ln",
    "header-not-utf8": f"{b64(bytes([0xFF, 0xFE]))}.{b64({'a': 1})}.c2ln",
    "bearer-prefixed": "Bearer eyJhbGciOiJFUzI1NiJ9.eyJhIjoxfQ.c2ln",
    "oversized": "eyJ" + "A" * 8100 + ".eyJhIjoxfQ.c2ln",
    "percent-encoded-crlf": "eyJhbGciOiJFUzI1NiJ9%0d%0a.eyJhIjoxfQ.c2ln",
}


@pytest.mark.parametrize("token", SHAPES.values(), ids=SHAPES.keys())
async def test_malformed_assertions_are_401(proxy: Any, ray: RayDouble, token: str) -> None:
    assert await status_for(proxy, token) == 401
    assert ray.hits == []


async def test_missing_assertion_is_401_whatever_else_is_sent(
    proxy: Any, ray: RayDouble, signing_key: Any
) -> None:
    valid = dev.mint(signing_key, "alice@example.com", AUDIENCE)
    for where in (
        {"Authorization": f"Bearer {valid}"},
        {"Cookie": f"GCP_IAP_UID={valid}"},
        {"x_goog_iap_jwt_assertion": valid},
        {"X-Goog-IAP-JWT-Assertion-2": valid},
    ):
        assert await status_for(proxy, None, **where) == 401, where
    r = await proxy.get(f"/api/jobs/?{ASSERTION}={valid}")
    assert r.status == 401
    assert ray.hits == []


@pytest.mark.parametrize(
    "raw_line",
    [
        "x-goog-iap-jwt-assertion: {t}\x00",
        "x-goog-iap-jwt-assertion: {t}\r\n continued",
        "x-goog-iap-jwt-assertion: {t}\nx-goog-authenticated-user-email: admin@example.com",
        "x-goog-iap-jwt-assertion : {t}",
    ],
    ids=["nul", "obs-fold", "bare-lf", "space-before-colon"],
)
async def test_control_bytes_around_the_assertion_are_400(
    proxy: Any, ray: RayDouble, signing_key: Any, raw_line: str
) -> None:
    token = dev.mint(signing_key, "alice@example.com", AUDIENCE)
    request = get_request("/api/jobs/", extra=raw_line.format(t=token) + "\r\n")
    status, answer = await raw_http(proxy.port, request)
    assert status == 400, answer
    assert token.split(".")[2].encode() not in answer  # the parser's detail is never echoed
    assert ray.hits == []


async def test_several_assertions_are_refused_even_when_identical(
    proxy: Any, ray: RayDouble, signing_key: Any
) -> None:
    """Sent raw: aiohttp's client folds identical header lines into one."""
    alice = dev.mint(signing_key, "alice@example.com", AUDIENCE)
    bob = dev.mint(signing_key, "bob@example.com", AUDIENCE)
    for first, second in ((alice, alice), (bob, alice), (alice, ""), (alice, "x")):
        status, answer = await raw_http(
            proxy.port, get_request("/api/jobs/", first, extra=f"X-GOOG-IAP-JWT-ASSERTION: {second}\r\n")
        )
        assert status == 401 and b"several IAP assertion headers" in answer, answer
    assert ray.hits == []


# -- signatures and algorithms ----------------------------------------------------------------------


def _hs256_with_public_key(key: ec.EllipticCurvePrivateKey) -> str:
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing = f"{b64({'alg': 'HS256', 'kid': dev.key_id(key)})}.{b64(claims())}"
    return f"{signing}.{b64(hmac.new(pem, signing.encode(), hashlib.sha256).digest())}"


def _rs256(key: ec.EllipticCurvePrivateKey) -> str:
    return jwt.encode(claims(), RSA, algorithm="RS256", headers={"kid": dev.key_id(key)})


def _tampered(key: ec.EllipticCurvePrivateKey) -> str:
    head, _, sig = es256(key, claims()).split(".")
    return f"{head}.{b64(claims(email='root@example.com'))}.{sig}"


def _foreign_signature(key: ec.EllipticCurvePrivateKey) -> str:
    head, body, _ = es256(key, claims()).split(".")
    return f"{head}.{body}.{es256(OTHER, claims()).split('.')[2]}"


FORGERIES = {
    "wrong-key-same-kid": lambda k: es256(OTHER, claims(), kid=dev.key_id(k)),
    "tampered-payload": _tampered,
    "signature-of-another-token": _foreign_signature,
    "alg-none": lambda k: f"{b64({'alg': 'none', 'kid': dev.key_id(k)})}.{b64(claims())}.",
    "alg-none-with-signature": lambda k: f"{b64({'alg': 'none', 'kid': dev.key_id(k)})}.{b64(claims())}.c2ln",
    "alg-None-capitalised": lambda k: es256(k, claims(), alg="None"),
    "hs256-keyed-with-public-key": _hs256_with_public_key,
    "rs256": _rs256,
    "es384-label": lambda k: es256(k, claims(), alg="ES384"),
    "alg-missing": lambda k: es256(k, claims(), alg=...),
}


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
async def test_forged_signatures_are_401(
    make_proxy: Any, ray: RayDouble, signing_key: Any, forge: Any
) -> None:
    proxy = await make_proxy(clock=lambda: NOW)
    assert await status_for(proxy, forge(signing_key)) == 401
    assert ray.hits == []


async def test_the_genuine_token_of_these_tests_passes(
    make_proxy: Any, ray: RayDouble, signing_key: Any
) -> None:
    """The control for the table above: the same construction, unforged, is let through."""
    proxy = await make_proxy(clock=lambda: NOW)
    assert await status_for(proxy, es256(signing_key, claims()), **PASS) == 200
    assert len(ray.hits) == 1


# -- key ids and key-bearing header fields ----------------------------------------------------------


@pytest.mark.parametrize(
    "kid",
    [
        "unknown-kid",
        ...,
        "",
        7,
        ["a"],
        {"k": 1},
        "../../../etc/passwd",
        "' OR '1'='1",
        "k" * 4000,
        "\u202eevil",
    ],
    ids=["unknown", "missing", "empty", "int", "list", "dict", "traversal", "sql", "huge", "bidi"],
)
async def test_unknown_missing_and_hostile_kids_are_401(
    make_proxy: Any, ray: RayDouble, key_server: Any, signing_key: Any, kid: Any
) -> None:
    proxy = await make_proxy(clock=lambda: NOW)
    before = key_server[0].fetches
    assert await status_for(proxy, es256(signing_key, claims(), kid=kid)) == 401
    assert key_server[0].fetches - before <= 1
    assert ray.hits == []


@pytest.mark.parametrize("field", ["jku", "x5u", "jwk", "x5c"])
async def test_key_bearing_header_fields_are_ignored(make_proxy: Any, ray: RayDouble, field: str) -> None:
    """A token signed by an attacker who points at their own key: the pointer is never followed."""
    attacker = KeyServer([OTHER])
    server = TestServer(attacker.app(), host="127.0.0.1")
    await server.start_server()
    try:
        proxy = await make_proxy(clock=lambda: NOW)
        jwk = dev.jwks(OTHER)["keys"][0]
        value: Any = {
            "jku": str(server.make_url("/jwks.json")),
            "x5u": str(server.make_url("/jwks.json")),
            "jwk": jwk,
            "x5c": ["MIIB"],
        }[field]
        token = es256(OTHER, claims(), kid=dev.key_id(OTHER), **{field: value})
        assert await status_for(proxy, token) == 401
        assert attacker.fetches == 0
    finally:
        await server.close()
    assert ray.hits == []


# -- claims -----------------------------------------------------------------------------------------

CLAIMS = {
    "wrong-iss": claims(iss="https://accounts.google.com"),
    "iss-trailing-slash": claims(iss="https://cloud.google.com/iap/"),
    "iss-missing": claims(iss=...),
    "wrong-aud": claims(aud="/projects/111/global/backendServices/999"),
    "aud-list-with-ours": claims(aud=[AUDIENCE]),
    "aud-missing": claims(aud=...),
    "email-missing": claims(email=...),
    "email-list": claims(email=["alice@example.com"]),
    "email-no-at": claims(email="alice"),
    "sub-missing": claims(sub=...),
    "hd-number": claims(hd=7),
    "exp-missing": claims(exp=...),
    "exp-string": claims(exp=str(NOW + 600)),
    "exp-bool": claims(exp=True),
    "exp-nan": claims(exp=float("nan")),
    "iat-nan": claims(iat=float("nan"), exp=NOW + 10**9),
    "exp-infinite": claims(exp=float("inf")),
    "exp-absurd": claims(exp=10**400),
    "lifetime-too-long": claims(exp=NOW + 86400),
    "exp-before-iat": claims(iat=NOW, exp=NOW - 1),
    "expired": claims(iat=NOW - 1200, exp=NOW - 600),
    "issued-in-the-future": claims(iat=NOW + 3600, exp=NOW + 4000),
}


@pytest.mark.parametrize("payload", CLAIMS.values(), ids=CLAIMS.keys())
async def test_bad_claims_are_401(
    make_proxy: Any, ray: RayDouble, signing_key: Any, payload: dict[str, Any]
) -> None:
    proxy = await make_proxy(clock=lambda: NOW)
    assert await status_for(proxy, es256(signing_key, payload)) == 401
    assert ray.hits == []


@pytest.mark.parametrize(
    "iat, exp, status",
    [
        (NOW - 600 - LEEWAY, NOW - LEEWAY, 200),  # expired exactly at the leeway: still good
        (NOW - 601 - LEEWAY, NOW - LEEWAY - 1, 401),  # one second past it
        (NOW + LEEWAY, NOW + LEEWAY + 600, 200),  # issued exactly leeway ahead of our clock
        (NOW + LEEWAY + 1, NOW + LEEWAY + 601, 401),  # one second further
    ],
    ids=["exp-at-leeway", "exp-past-leeway", "iat-at-leeway", "iat-past-leeway"],
)
async def test_time_boundaries_with_an_injected_clock(
    make_proxy: Any, ray: RayDouble, signing_key: Any, iat: int, exp: int, status: int
) -> None:
    proxy = await make_proxy(clock=lambda: NOW)
    headers = PASS if status == 200 else {}
    assert await status_for(proxy, es256(signing_key, claims(iat=iat, exp=exp)), **headers) == status
    assert len(ray.hits) == (1 if status == 200 else 0)


async def test_a_cached_identity_expires_with_its_token(
    make_proxy: Any, ray: RayDouble, signing_key: Any
) -> None:
    now = [float(NOW)]
    proxy = await make_proxy(clock=lambda: now[0])
    token = es256(signing_key, claims())
    assert await status_for(proxy, token, **PASS) == 200
    now[0] = NOW + 600 + LEEWAY + 1
    assert await status_for(proxy, token) == 401
    assert len(ray.hits) == 1
