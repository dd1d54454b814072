"""The real proxy application on its real listener, on loopback, for integration and adversarial tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from devkit.config import write_hardening_config
from proxy import settings as settings_mod
from proxy.app import build_app, runner_args
from proxy.http.listener import ProxyRunner


class ProxyTestServer(TestServer):
    """The real listener, as `serve()` runs it: `ProxyRunner` with the config's `runner_args`.
    (aiohttp's TestServer drops keyword arguments it is given; these reach the runner.)"""

    def __init__(self, app: web.Application, *, runner_args: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.runner_args = runner_args

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        return ProxyRunner(self.app, **{**kwargs, **self.runner_args})


async def start_proxy(tmp: Path, jwks_url: str, upstream: str, extra: str = "", **build: Any) -> TestClient:
    """The real app on the real listener (ProxyRunner), on loopback."""
    cfg = settings_mod.load(write_hardening_config(tmp, jwks_url, upstream, extra))
    server = ProxyTestServer(build_app(cfg, **build), host="127.0.0.1", runner_args=runner_args(cfg))
    client = TestClient(server)
    await client.start_server()
    return client
