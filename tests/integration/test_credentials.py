"""Google ID tokens and the cluster's Ray token over HTTP, through the real app: the key set fetched
over real HTTP from the tests' own RSA key, the precedence rules, and what reaches Ray."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from devkit import google
from devkit.ray_double import RayDouble
from devkit.records import AccessRecords

AUD = "https://ray-team-a.example.com"
RAY_TOKEN = "ray-secret-token"  # what devkit.config writes into ray_token_file
IAP = "x-goog-iap-jwt-assertion"


def extra(jwks_url: str, ray_token: bool = True) -> str:
    return (
        f'google_id_tokens:\n  audiences: ["{AUD}"]\n  jwks_url: {jwks_url}\n  key_min_refetch_seconds: 1\n'
        + ("accept_ray_token: true\n" if ray_token else "")
    )


@pytest.fixture
def id_token(google_key: rsa.RSAPrivateKey) -> Any:
    def mint(email: str = "alice@example.com", **kw: Any) -> str:
        return google.mint_id_token(kw.pop("key", google_key), email, kw.pop("audience", AUD), **kw)

    return mint


@pytest.fixture
async def client(make_client: Any, key_server: tuple[Any, str], access_records: AccessRecords) -> Any:
    return await make_client(extra(key_server[1]), access_log=access_records)


@pytest.mark.parametrize("header", ["Authorization", "Proxy-Authorization", "authorization"])
async def test_an_id_token_is_a_principal_and_never_reaches_ray(
    client: Any, stub_ray: tuple[RayDouble, str], id_token: Any, header: str, access_records: AccessRecords
) -> None:
    r = await client.post("/api/jobs/", headers={header: f"Bearer {id_token()}"}, json={"entrypoint": "x"})
    assert r.status == 200, await r.text()
    record = access_records.last()
    assert (record["principal"], record["credential"]) == ("alice@example.com", "google_id_token")
    seen = stub_ray[0].last_headers()
    assert seen["x-ray-authorization"] == f"Bearer {RAY_TOKEN}"
    assert "authorization" not in seen and "proxy-authorization" not in seen


@pytest.mark.parametrize(
    "claims, reason",
    [
        ({"audience": "https://other.example.com"}, "wrong audience"),
        ({"audience": "32555940559.apps.googleusercontent.com"}, "wrong audience"),
        ({"email_verified": False}, "email not verified"),
        ({"email_verified": None}, "email not verified"),
        ({"issuer": "https://cloud.google.com/iap"}, "wrong issuer"),
        ({"issuer": "https://evil.example.com"}, "wrong issuer"),
        ({"now": 1_000_000_000}, "expired"),
        ({"lifetime": 7200}, "lifetime out of bounds"),
        ({"key": "stranger"}, "signed with an unknown key id"),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}" for k in v),
)
async def test_bad_id_tokens_are_401_and_never_reach_ray(
    client: Any, stub_ray: tuple[RayDouble, str], id_token: Any, claims: dict[str, Any], reason: str
) -> None:
    if claims.get("key") == "stranger":
        claims["key"] = google.rsa_key()
    r = await client.get("/api/jobs/", headers={"Authorization": f"Bearer {id_token(**claims)}"})
    body = await r.json()
    assert r.status == 401 and body["reason"].startswith(f"invalid Google ID token: {reason}")
    assert stub_ray[0].seen == []


async def test_accounts_google_com_without_scheme_is_google_too(client: Any, id_token: Any) -> None:
    r = await client.get(
        "/api/jobs/", headers={"Authorization": f"Bearer {id_token(issuer='accounts.google.com')}"}
    )
    assert r.status == 200


async def test_an_es256_token_in_authorization_is_not_an_id_token(client: Any, mint: Any) -> None:
    """IAP's assertion format in a bearer header: the Google provider wants RS256 and says so."""
    r = await client.get("/api/jobs/", headers={"Authorization": f"Bearer {mint(audience=AUD)}"})
    assert (
        r.status == 401 and (await r.json())["reason"] == "invalid Google ID token: algorithm must be RS256"
    )


async def test_the_iap_assertion_decides_when_present(
    client: Any, stub_ray: tuple[RayDouble, str], id_token: Any, mint: Any, access_records: AccessRecords
) -> None:
    headers = {IAP: mint("bob@example.com"), "Authorization": f"Bearer {id_token('alice@example.com')}"}
    r = await client.post("/api/jobs/", headers=headers)
    assert r.status == 403  # bob only views
    assert (access_records.last()["principal"], access_records.last()["credential"]) == (
        "bob@example.com",
        "iap",
    )
    assert stub_ray[0].seen == []


async def test_two_different_credentials_without_iap_are_ambiguous(
    client: Any, stub_ray: tuple[RayDouble, str], id_token: Any
) -> None:
    headers = {"Authorization": f"Bearer {id_token()}", "X-Ray-Authorization": f"Bearer {RAY_TOKEN}"}
    r = await client.get("/api/jobs/", headers=headers)
    assert r.status == 401 and "ambiguous credentials" in (await r.json())["reason"]
    assert stub_ray[0].seen == []


@pytest.mark.parametrize(
    "header, value",
    [
        ("X-Ray-Authorization", f"Bearer {RAY_TOKEN}"),  # KubeRay's operator
        ("Authorization", f"Bearer {RAY_TOKEN}"),  # the ray CLI in a RayJob submitter
        ("x-ray-authorization", f"bearer {RAY_TOKEN}"),
    ],
)
async def test_the_ray_token_is_the_system_principal(
    client: Any, stub_ray: tuple[RayDouble, str], header: str, value: str, access_records: AccessRecords
) -> None:
    r = await client.post("/api/jobs/", headers={header: value}, json={"entrypoint": "x"})
    assert r.status == 200
    record = access_records.last()
    assert (record["principal"], record["credential"]) == ("system:ray-token", "ray_token")
    assert "system:ray-token" in record["reason"]
    assert stub_ray[0].last_headers()["x-ray-authorization"] == f"Bearer {RAY_TOKEN}"


@pytest.mark.parametrize(
    "value", [f"Bearer {RAY_TOKEN}x", f"Bearer {RAY_TOKEN[:-1]}", "Bearer ", f"Basic {RAY_TOKEN}"]
)
async def test_anything_but_the_exact_ray_token_is_refused(
    client: Any, stub_ray: tuple[RayDouble, str], value: str
) -> None:
    r = await client.get("/api/jobs/", headers={"X-Ray-Authorization": value})
    assert r.status == 401 and (await r.json())["reason"].startswith("no credential: send")
    assert stub_ray[0].seen == []


async def test_the_ray_token_is_refused_unless_accepted(
    make_client: Any, key_server: tuple[Any, str], stub_ray: tuple[RayDouble, str]
) -> None:
    client = await make_client(extra(key_server[1], ray_token=False))
    r = await client.get("/api/jobs/", headers={"X-Ray-Authorization": f"Bearer {RAY_TOKEN}"})
    assert r.status == 401 and stub_ray[0].seen == []


async def test_google_keys_down_fails_closed_for_id_tokens_only(
    make_client: Any, key_server: tuple[Any, str], id_token: Any, mint: Any
) -> None:
    client = await make_client(extra(key_server[1].replace("/jwks.json", "/missing")))
    r = await client.get("/api/jobs/", headers={"Authorization": f"Bearer {id_token()}"})
    assert r.status == 503 and "Google ID token key set not loaded" in (await r.json())["reason"]
    assert (await client.get("/api/jobs/", headers={IAP: mint()})).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 503
