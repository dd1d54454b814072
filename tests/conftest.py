from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import ec

from proxy import config as config_mod
from proxy import dev
from proxy.app import build_app, runner_args
from tests.support import AUDIENCE, KeyServer, ProxyTestServer, StubRay, write_config


@pytest.fixture(scope="session")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def mint(signing_key: ec.EllipticCurvePrivateKey) -> Callable[..., str]:
    def _mint(email: str = "alice@example.com", **kw: Any) -> str:
        kw.setdefault("audience", AUDIENCE)
        return dev.mint(kw.pop("key", signing_key), email, **kw)

    return _mint


@pytest.fixture
async def key_server(signing_key: ec.EllipticCurvePrivateKey) -> AsyncIterator[tuple[KeyServer, str]]:
    ks = KeyServer([signing_key])
    server = TestServer(ks.app(), host="127.0.0.1")
    await server.start_server()
    yield ks, str(server.make_url("/jwks.json"))
    await server.close()


@pytest.fixture
async def stub_ray() -> AsyncIterator[tuple[StubRay, str]]:
    stub = StubRay()
    server = TestServer(stub.app(), host="127.0.0.1")
    await server.start_server()
    yield stub, str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def make_client(
    tmp_path: Path, key_server: tuple[KeyServer, str], stub_ray: tuple[StubRay, str]
) -> AsyncIterator[Callable[..., Any]]:
    """Start the real proxy app on loopback in front of the stub; returns an aiohttp TestClient."""
    clients: list[TestClient] = []

    async def _make(extra: str = "", upstream: str | None = None, **build: Any) -> TestClient:
        cfg = config_mod.load(write_config(tmp_path, key_server[1], upstream or stub_ray[1], extra=extra))
        server = ProxyTestServer(build_app(cfg, **build), host="127.0.0.1", runner_args=runner_args(cfg))
        client = TestClient(server)
        await client.start_server()
        clients.append(client)
        return client

    yield _make
    for client in clients:
        await client.close()


@pytest.fixture
async def proxy_client(make_client: Any) -> TestClient:
    return await make_client()
