"""A key set served on loopback over real HTTP, for the proxy's production fetch path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from proxy import dev


@dataclass
class KeyServer:
    """Serves a mutable key set on loopback (IAP's P-256 keys, Google's RSA keys, or both); counts
    fetches; can be told to fail."""

    keys: list[Any]
    fail: bool = False
    fetches: int = 0

    def app(self) -> web.Application:
        async def jwks(_r: web.Request) -> web.Response:
            self.fetches += 1
            if self.fail:
                return web.Response(status=503, text="down")
            return web.json_response(dev.jwks(*self.keys))

        app = web.Application()
        app.router.add_get("/jwks.json", jwks)
        return app
