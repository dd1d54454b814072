"""A key set served on loopback over real HTTP, for the proxy's production fetch path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from devkit import google
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
            ec_keys = [k for k in self.keys if isinstance(k, ec.EllipticCurvePrivateKey)]
            rsa_keys = [k for k in self.keys if isinstance(k, rsa.RSAPrivateKey)]
            doc = {"keys": dev.jwks(*ec_keys)["keys"] + google.jwks(*rsa_keys)["keys"]}
            return web.json_response(doc)

        app = web.Application()
        app.router.add_get("/jwks.json", jwks)
        return app
