"""Ray Client calls through the real admission: the production listener (`start_client_listener`) on the
running app, real IAP assertions and Google ID tokens in the call metadata, the policy's `client` verb,
a route table of its own, and one access record per call — in front of the raw-bytes Ray stub."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc import aio

from devkit import google
from devkit.config import ROOT
from devkit.grpc_ray import GrpcRayStub, start_stub
from devkit.ports import free_port
from devkit.records import AccessRecords
from proxy import settings as settings_mod
from proxy.grpc import methods
from proxy.grpc.service import start_client_listener
from proxy.http.pipeline import PROXY
from proxy.upstream.grpc import GRPC_OPTIONS

AUD = "https://ray-team-a.example.com"
DATAPATH = "/ray.rpc.RayletDataStreamer/Datapath"
SCHEDULE = "/ray.rpc.RayletDriver/Schedule"
FINAL = grpc.StatusCode.FAILED_PRECONDITION


class Client:
    def __init__(self, channel: aio.Channel, stub: GrpcRayStub, records: AccessRecords, proxy: Any) -> None:
        self.channel, self.stub, self.records, self.proxy = channel, stub, records, proxy

    def unary(self, method: str, md: tuple[tuple[str, str], ...]) -> Any:
        return self.channel.unary_unary(method, request_serializer=None, response_deserializer=None)(
            b"", metadata=(("client_id", "c1"), *md)
        )

    async def refused(self, method: str, md: tuple[tuple[str, str], ...]) -> aio.AioRpcError:
        with pytest.raises(aio.AioRpcError) as err:
            await self.unary(method, md)
        return err.value

    async def grpc_records(self) -> list[dict[str, Any]]:
        for _ in range(100):  # the record is written when the handler has finished
            found = [r for r in self.records.records() if r["kind"] == "grpc"]
            if found:
                return found
            await asyncio.sleep(0.02)
        return []


@pytest.fixture
async def client(
    make_client: Any, key_server: tuple[Any, str], tmp_path: Any, access_records: AccessRecords
) -> AsyncIterator[Client]:
    stub, upstream, up_port = await start_stub()
    extra = (
        f'google_id_tokens:\n  audiences: ["{AUD}"]\n  jwks_url: {key_server[1]}\n'
        f"client_listen: 127.0.0.1:{free_port()}\nclient_upstream: 127.0.0.1:{up_port}\n"
    )
    http = await make_client(extra, access_log=access_records)
    settings = settings_mod.load(tmp_path / "proxy.yaml")
    listener = await start_client_listener(settings, http.server.app[PROXY])
    assert listener is not None and settings.client_listen is not None
    channel = aio.insecure_channel(f"127.0.0.1:{listener.port}", options=GRPC_OPTIONS)
    yield Client(channel, stub, access_records, http.server.app[PROXY])
    await channel.close()
    await listener.stop(0)
    await upstream.stop(0)


@pytest.fixture
def id_token(google_key: rsa.RSAPrivateKey) -> Any:
    return lambda email: google.mint_id_token(google_key, email, AUD)


@pytest.mark.parametrize("credential", ["iap", "google_id_token"])
async def test_an_allowed_call_reaches_ray_with_rays_token_only(
    client: Client, mint: Any, id_token: Any, credential: str
) -> None:
    md = (
        (("x-goog-iap-jwt-assertion", mint(ROOT)),)
        if credential == "iap"
        else (("authorization", f"Bearer {id_token(ROOT)}"),)
    )
    answer = json.loads(await client.unary(SCHEDULE, (*md, ("reconnecting", "False"))))
    seen = dict(answer)
    assert seen["authorization"] == "Bearer ray-secret-token" and seen["client_id"] == "c1"
    assert seen["reconnecting"] == "False" and "x-goog-iap-jwt-assertion" not in seen
    assert [k for k, _ in answer].count("authorization") == 1
    (record,) = await client.grpc_records()
    assert (record["principal"], record["credential"], record["verb"]) == (ROOT, credential, "client")
    assert record["decision"] == "allow" and record["grpc"]["code"] == "OK"


@pytest.mark.parametrize(
    "who, reason",
    [
        (None, "no credential: send IAP assertion or Google ID token"),
        ("garbage", "invalid IAP assertion: malformed assertion"),
        ("alice@example.com", "verb client is not granted by role(s) scientist"),
        ("mallory@example.com", "has no role in tenant team-a"),
    ],
)
async def test_refusals_are_final_say_why_and_never_reach_ray(
    client: Client, mint: Any, who: str | None, reason: str
) -> None:
    md: tuple[tuple[str, str], ...] = ()
    if who is not None:
        md = (("x-goog-iap-jwt-assertion", "garbage" if who == "garbage" else mint(who)),)
    err = await client.refused(SCHEDULE, md)
    assert err.code() == FINAL and reason in (err.details() or "")
    assert client.stub.seen == []
    (record,) = await client.grpc_records()
    assert record["decision"] == "deny" and reason in record["reason"]


async def test_a_refused_ping_is_answered_locally_so_the_refusal_can_show(client: Client) -> None:
    assert await client.unary(methods.CLUSTER_INFO, ()) == methods.PING_ANSWER
    assert client.stub.seen == []


@pytest.mark.parametrize("method", ["/ray.rpc.RayletDriver/Nope", "/api/jobs/", "/ray.rpc.Other/Datapath"])
async def test_methods_outside_ray_clients_table_are_refused(client: Client, mint: Any, method: str) -> None:
    err = await client.refused(method, (("x-goog-iap-jwt-assertion", mint(ROOT)),))
    assert err.code() == FINAL and "not a known Ray route" in (err.details() or "")
    assert client.stub.seen == []


async def test_a_session_outlives_its_token_within_the_bound_and_only_for_itself(
    make_client: Any, key_server: tuple[Any, str], mint: Any
) -> None:
    """IAP's assertion lives 10 minutes; a Ray Client session sends the same one for hours."""
    from proxy.grpc.admission import grpc_admit
    from proxy.grpc.credentials import SessionCredentials

    wall = [time.time()]
    http = await make_client(clock=lambda: wall[0])
    proxy = http.server.app[PROXY]
    mono = [0.0]
    admit = grpc_admit(proxy.admission, proxy.ray_token, SessionCredentials(3600), clock=lambda: mono[0])
    token = mint(ROOT, now=wall[0])

    def md(client_id: str) -> tuple[tuple[str, str], ...]:
        return (("client_id", client_id), ("x-goog-iap-jwt-assertion", token))

    assert (await admit(SCHEDULE, md("s1"))).allowed
    wall[0] += 1200  # the assertion expired 10 minutes ago
    mono[0] += 1200
    assert (await admit(SCHEDULE, md("s1"))).allowed  # the same session goes on
    other = await admit(SCHEDULE, md("s2"))  # the same token for a new session: verified now, expired
    assert not other.allowed and "expired" in other.details
    mono[0] += 2401  # past the bound, counted from the first verification
    late = await admit(SCHEDULE, md("s1"))
    assert not late.allowed and "expired" in late.details


async def test_a_remembered_session_is_still_authorized_under_the_current_policy(
    make_client: Any, mint: Any
) -> None:
    from proxy.authz.policy import EMPTY_POLICY
    from proxy.grpc.admission import grpc_admit
    from proxy.grpc.credentials import SessionCredentials

    http = await make_client()
    proxy = http.server.app[PROXY]
    admit = grpc_admit(proxy.admission, proxy.ray_token, SessionCredentials(3600))
    md = (("client_id", "s1"), ("x-goog-iap-jwt-assertion", mint(ROOT)))
    assert (await admit(SCHEDULE, md)).allowed
    static = next(s for s in proxy.admission.authorizer.sources if s.name == "static")
    static.replace(EMPTY_POLICY)  # access revoked
    revoked = await admit(SCHEDULE, md)
    assert not revoked.allowed and "has no role" in revoked.details


async def test_open_calls_are_counted_for_the_metrics(client: Client, mint: Any) -> None:
    md = (("client_id", "c1"), ("x-goog-iap-jwt-assertion", mint(ROOT)), ("x-stub", "echo"))
    stream = client.channel.stream_stream(DATAPATH, request_serializer=None, response_deserializer=None)(
        metadata=md
    )
    await stream.write(b"1")
    assert await stream.read() == b"1"
    assert client.proxy.telemetry.grpc_open() == 1
    await stream.done_writing()
    assert await stream.code() == grpc.StatusCode.OK
    for _ in range(100):
        if client.proxy.telemetry.grpc_open() == 0:
            break
        await asyncio.sleep(0.02)
    assert client.proxy.telemetry.grpc_open() == 0


@pytest.mark.parametrize("who", [ROOT, "alice@example.com", "mallory@example.com", "nobody@example.com"])
async def test_explain_says_what_the_grpc_listener_does(
    make_client: Any, tmp_path: Any, mint: Any, who: str
) -> None:
    """`explain` over Ray Client's whole method table (and one unknown method) for each identity:
    the same code and reason as the production admission gives a real assertion."""
    from proxy.authz.policy_file import read_policy
    from proxy.authz.routes.ray_client import CALL_KINDS
    from proxy.cli.explain import explain
    from proxy.grpc.admission import grpc_admit
    from proxy.grpc.credentials import SessionCredentials

    http = await make_client()
    proxy = http.server.app[PROXY]
    admit = grpc_admit(proxy.admission, proxy.ray_token, SessionCredentials(3600))
    settings = settings_mod.load(tmp_path / "proxy.yaml")
    assert settings.policy_file is not None
    policy = read_policy(settings.policy_file)
    token = mint(who)
    for method in [*CALL_KINDS, "/ray.rpc.RayletDriver/Nope"]:
        got = await admit(method, (("client_id", "c1"), ("x-goog-iap-jwt-assertion", token)))
        said = await explain(settings, policy, who, "POST", method)
        assert said["transport"] == "grpc", method
        assert said["status"] == ("OK" if got.allowed else got.code.name), method
        assert said["reason"] == got.details and said["verb"] == (got.verb or None), method


@pytest.mark.parametrize("mode", ["self_signed", "files"])
async def test_the_listener_speaks_tls_when_asked(
    make_client: Any, key_server: tuple[Any, str], tmp_path: Any, mint: Any, mode: str
) -> None:
    """GKE Ingress reaches an HTTP/2 backend only over TLS (and does not verify its certificate)."""
    from cryptography import x509

    from proxy.grpc.tls import self_signed

    stub, upstream, up_port = await start_stub()
    key_pem, cert_pem = self_signed("ray-iap-client.test")
    if mode == "files":
        (tmp_path / "tls.key").write_bytes(key_pem)
        (tmp_path / "tls.crt").write_bytes(cert_pem)
        tls = "client_tls:\n  cert_file: tls.crt\n  key_file: tls.key\n"
    else:
        tls = "client_tls:\n  self_signed: true\n"
    http = await make_client(
        f"client_listen: 127.0.0.1:{free_port()}\nclient_upstream: 127.0.0.1:{up_port}\n{tls}"
    )
    settings = settings_mod.load(tmp_path / "proxy.yaml")
    listener = await start_client_listener(settings, http.server.app[PROXY])
    assert listener is not None
    try:
        address = f"127.0.0.1:{listener.port}"
        served = ssl_certificate(address)
        if mode == "files":
            assert served == x509.load_pem_x509_certificate(cert_pem)
        trust = cert_pem if mode == "files" else served.public_bytes(serialization.Encoding.PEM)
        name = "ray-iap-client.test" if mode == "files" else "ray-iap-proxy"
        creds = grpc.ssl_channel_credentials(root_certificates=trust)
        options = (*GRPC_OPTIONS, ("grpc.ssl_target_name_override", name))
        async with aio.secure_channel(address, creds, options=options) as channel:
            call = channel.unary_unary(SCHEDULE, request_serializer=None, response_deserializer=None)
            md = (("client_id", "c1"), ("x-goog-iap-jwt-assertion", mint(ROOT)))
            assert json.loads(await call(b"", metadata=md))
        async with aio.insecure_channel(address, options=GRPC_OPTIONS) as plain:  # no plaintext on a TLS port
            call = plain.unary_unary(SCHEDULE, request_serializer=None, response_deserializer=None)
            with pytest.raises(aio.AioRpcError) as err:
                await call(b"", metadata=md, timeout=5)
            assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        await listener.stop(0)
        await upstream.stop(0)
    assert len(stub.seen) == 1


def ssl_certificate(address: str) -> Any:
    """The certificate a TLS server at `address` presents (fetched without verifying it)."""
    import ssl

    from cryptography import x509

    host, _, port = address.rpartition(":")
    pem = ssl.get_server_certificate((host, int(port)))
    return x509.load_pem_x509_certificate(pem.encode())
