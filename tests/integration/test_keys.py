"""Key set behaviour through the real fetch path (HTTP on loopback): a new kid costs exactly one fetch,
made-up kids cost at most one, and each signature is checked once. Cold start, outages and key
withdrawal are in tests/faults/test_keys.py."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from proxy import dev
from proxy.auth.keys import KeySetError, parse_key_set
from proxy.http.pipeline import PROXY

H = "x-goog-iap-jwt-assertion"


async def test_rotation_picks_up_a_new_kid(key_server: Any, make_client: Any, mint: Any) -> None:
    client = await make_client()
    new_key = ec.generate_private_key(ec.SECP256R1())
    token = mint(key=new_key)
    key_server[0].keys.append(new_key)
    before = key_server[0].fetches
    assert (await client.get("/api/jobs/", headers={H: token})).status == 200
    assert key_server[0].fetches == before + 1


async def test_unknown_kid_flood_costs_one_fetch(key_server: Any, make_client: Any, mint: Any) -> None:
    client = await make_client()
    before = key_server[0].fetches
    for i in range(50):
        stranger = ec.generate_private_key(ec.SECP256R1())
        r = await client.get("/api/jobs/", headers={H: mint(key=stranger, headers={"kid": f"made-up-{i}"})})
        assert r.status == 401
    assert key_server[0].fetches - before <= 1


async def test_signature_is_checked_once_per_token(make_client: Any, mint: Any) -> None:
    client = await make_client()
    token = mint()
    for _ in range(5):
        assert (await client.get("/api/jobs/", headers={H: token})).status == 200
    verifier = client.server.app[PROXY].iap
    assert verifier.misses == 1 and verifier.hits == 4


def test_both_google_key_formats_parse() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    import json

    from cryptography.hazmat.primitives import serialization

    pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert list(parse_key_set(json.dumps({"k1": pem}).encode())) == ["k1"]
    assert list(parse_key_set(json.dumps(dev.jwks(key)).encode())) == [dev.key_id(key)]
    for bad in (b"", b"[]", b"{}", b'{"keys": [{"kty": "RSA", "kid": "r"}]}', b"\xff"):
        try:
            parse_key_set(bad)
        except KeySetError:
            continue
        raise AssertionError(f"accepted {bad!r}")
