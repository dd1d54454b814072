"""The suites' pytest fixtures, loaded as a plugin by tests/conftest.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from devkit import google
from devkit.config import AUDIENCE
from devkit.keys import KeyServer
from devkit.proxy import start_proxy
from devkit.ray_double import RayDouble
from devkit.records import AccessRecords
from proxy import dev


@pytest.fixture(scope="session")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def google_key() -> rsa.RSAPrivateKey:
    """The tests' stand-in for Google's OAuth signing key (ID tokens), served beside IAP's."""
    return google.rsa_key()


@pytest.fixture
def mint(signing_key: ec.EllipticCurvePrivateKey) -> Callable[..., str]:
    def _mint(email: str = "alice@example.com", **kw: Any) -> str:
        kw.setdefault("audience", AUDIENCE)
        return dev.mint(kw.pop("key", signing_key), email, **kw)

    return _mint


@pytest.fixture
async def key_server(
    signing_key: ec.EllipticCurvePrivateKey, google_key: rsa.RSAPrivateKey
) -> AsyncIterator[tuple[KeyServer, str]]:
    ks = KeyServer([signing_key, google_key])
    server = TestServer(ks.app(), host="127.0.0.1")
    await server.start_server()
    yield ks, str(server.make_url("/jwks.json"))
    await server.close()


@pytest.fixture
async def ray() -> AsyncIterator[RayDouble]:
    """The tripwire double. Fails the test if any request without the MAY_PASS mark reached it."""
    double = RayDouble()
    await double.start()
    yield double
    await double.close()
    if double.violations:
        pytest.fail(
            "refused request(s) reached Ray: "
            + "; ".join(f"{h.method} {h.raw_path[:80]}" for h in double.violations)
        )


@pytest.fixture
async def stub_ray() -> AsyncIterator[tuple[RayDouble, str]]:
    """The same double without the tripwire: records what reaches it, for integration tests."""
    double = RayDouble(tripwire=False)
    await double.start()
    yield double, double.url
    await double.close()


class _Proxies:
    """Real proxies on loopback in front of one upstream (or `upstream=`), closed with the test."""

    def __init__(self, tmp_path: Path, jwks_url: str, upstream: str) -> None:
        self.tmp_path, self.jwks_url, self.upstream = tmp_path, jwks_url, upstream
        self.clients: list[TestClient] = []

    async def make(self, extra: str = "", upstream: str | None = None, **build: Any) -> TestClient:
        """`extra` is YAML appended to the config; `build` goes to `build_app`."""
        client = await start_proxy(self.tmp_path, self.jwks_url, upstream or self.upstream, extra, **build)
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


@pytest.fixture
async def make_proxy(
    tmp_path: Path, key_server: tuple[Any, str], ray: RayDouble
) -> AsyncIterator[Callable[..., Awaitable[TestClient]]]:
    """The real proxy in front of the tripwire `ray`."""
    proxies = _Proxies(tmp_path, key_server[1], ray.url)
    yield proxies.make
    await proxies.close()


@pytest.fixture
async def proxy(make_proxy: Callable[..., Awaitable[TestClient]]) -> TestClient:
    return await make_proxy()


@pytest.fixture
async def make_client(
    tmp_path: Path, key_server: tuple[KeyServer, str], stub_ray: tuple[RayDouble, str]
) -> AsyncIterator[Callable[..., Awaitable[TestClient]]]:
    """The real proxy in front of the recording stub."""
    proxies = _Proxies(tmp_path, key_server[1], stub_ray[1])
    yield proxies.make
    await proxies.close()


@pytest.fixture
async def proxy_client(make_client: Callable[..., Awaitable[TestClient]]) -> TestClient:
    return await make_client()


@pytest.fixture
def access_records() -> AccessRecords:
    """Where a proxy's access records go when given as `make_proxy(access_log=access_records)`."""
    return AccessRecords()
