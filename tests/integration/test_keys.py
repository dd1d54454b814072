"""Key set behaviour through the real fetch path (HTTP on loopback): cold start, outage, rotation,
unknown-kid floods, and the verified-token cache."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from proxy import dev
from proxy.auth.keys import KeySetError, parse_key_set
from proxy.pipeline import PROXY

H = "x-goog-iap-jwt-assertion"


async def test_cold_start_without_keys_fails_closed(
    key_server: Any, make_client: Any, mint: Any, stub_ray: Any
) -> None:
    key_server[0].fail = True
    client = await make_client()
    r = await client.get("/api/jobs/", headers={H: mint()})
    assert r.status == 503 and "key set not loaded" in (await r.json())["reason"]
    r = await client.get("/readyz")
    assert r.status == 503 and "IAP key set not loaded" in (await r.json())["problems"]
    assert stub_ray[0].seen == [] or all(s.raw_path == "/api/gcs_healthz" for s in stub_ray[0].seen)


async def test_outage_after_warm_start_keeps_verifying(key_server: Any, make_client: Any, mint: Any) -> None:
    client = await make_client()
    assert (await client.get("/api/jobs/", headers={H: mint()})).status == 200
    key_server[0].fail = True
    store = client.server.app[PROXY].verifier.store
    assert await store.refresh() is False and store.ready and store.failures == 1
    client.server.app[PROXY].verifier.forget_all()
    assert (await client.get("/api/jobs/", headers={H: mint("carol@example.com")})).status == 200


async def test_rotation_picks_up_a_new_kid(key_server: Any, make_client: Any, mint: Any) -> None:
    client = await make_client()
    new_key = ec.generate_private_key(ec.SECP256R1())
    token = mint(key=new_key)
    key_server[0].keys.append(new_key)
    before = key_server[0].fetches
    assert (await client.get("/api/jobs/", headers={H: token})).status == 200
    assert key_server[0].fetches == before + 1


async def test_withdrawn_key_stops_working_at_the_next_refresh(
    key_server: Any, make_client: Any, mint: Any, signing_key: Any
) -> None:
    client = await make_client()
    token = mint()
    assert (await client.get("/api/jobs/", headers={H: token})).status == 200  # cached now
    key_server[0].keys = [ec.generate_private_key(ec.SECP256R1())]
    assert await client.server.app[PROXY].verifier.store.refresh()
    r = await client.get("/api/jobs/", headers={H: token})
    assert r.status == 401


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
    verifier = client.server.app[PROXY].verifier
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
