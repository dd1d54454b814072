"""Development stand-ins for Google: an ES256 key, its key set, minted IAP assertions, and `dev-iap`,
a loopback-only reverse proxy that signs every request for one identity the way IAP would.

These never run in production; they exist so a laptop, the demo and the tests use the real proxy and
the real key-fetching path without Google.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from yarl import URL

from .errors import UpstreamError
from .http.status import status_for
from .model import RequestContext
from .settings import Iap
from .upstream.headers import iap_headers
from .upstream.http import forward_http
from .upstream.websocket import forward_websocket, is_upgrade

DEV_AUDIENCE = "/projects/000000000000/global/backendServices/1000000000000000000"
JWKS_PATH = "/_dev_iap/jwks.json"


def generate_key(path: Path, *, replace: bool = False) -> ec.EllipticCurvePrivateKey:
    """A new P-256 key written to `path` (mode 0600). An existing file is never replaced unless
    `replace`: FileExistsError instead, since a key silently swapped strands every token and config
    made with the old one."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(pem)
    return key


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The P-256 private key in the PEM file at `path`; OSError when it cannot be read, ValueError
    (saying what is wrong) when it is not such a key."""
    data = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        why = "is encrypted" if isinstance(exc, TypeError) else "is not a PEM private key"
        raise ValueError(f"{why} (make one with `ray-iap-proxy dev-keygen --out {path}`)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("is not a P-256 EC private key (ES256 needs one: `ray-iap-proxy dev-keygen`)")
    return key


SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def key_id(key: SigningKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()[:12]).decode().rstrip("=")


def jwks(*keys: SigningKey) -> dict[str, Any]:
    """The public key set of `keys`: P-256 keys as IAP publishes them (ES256), RSA keys as Google's
    OAuth key set does (RS256)."""
    out = []
    for key in keys:
        if isinstance(key, rsa.RSAPrivateKey):
            jwk, alg = json.loads(RSAAlgorithm.to_jwk(key.public_key())), "RS256"
        else:
            jwk, alg = json.loads(ECAlgorithm.to_jwk(key.public_key())), "ES256"
        jwk.update(kid=key_id(key), alg=alg, use="sig")
        out.append(jwk)
    return {"keys": out}


def mint(
    key: ec.EllipticCurvePrivateKey,
    email: str,
    audience: str = DEV_AUDIENCE,
    *,
    issuer: str = Iap.model_fields["issuer"].default,
    lifetime: int = 600,
    now: float | None = None,
    hd: str | None = None,
    claims: dict[str, Any] | None = None,
    headers: dict[str, Any] | None = None,
) -> str:
    """An assertion shaped like IAP's: ES256, kid, iss, aud, iat, exp, sub, email (and hd)."""
    issued = int(time.time() if now is None else now)
    payload: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "iat": issued,
        "exp": issued + lifetime,
        "sub": f"accounts.google.com:{int(hashlib.sha256(email.encode()).hexdigest()[:15], 16)}",
        "email": email,
        "identity_source": "GOOGLE",
    }
    if hd:
        payload["hd"] = hd
    payload.update(claims or {})
    return jwt.encode(payload, key, algorithm="ES256", headers={"kid": key_id(key), **(headers or {})})


def require_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host.strip("[]")).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(
        f"dev-iap listens on loopback only, not {host!r}: it signs requests for anyone who reaches it"
    )


DEV = web.AppKey("dev_iap", dict)


def dev_iap_app(
    key: ec.EllipticCurvePrivateKey,
    email: str,
    upstream: str,
    audience: str = DEV_AUDIENCE,
    hd: str | None = None,
) -> web.Application:
    """IAP's part, on loopback: sign each request for `email` and forward it; serve the key set."""
    app = web.Application()
    key_set = jwks(key)

    async def lifecycle(app: web.Application) -> Any:
        app[DEV] = {
            "session": aiohttp.ClientSession(
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None, connect=5),
            )
        }
        yield
        await app[DEV]["session"].close()

    async def serve_jwks(_request: web.Request) -> web.Response:
        return web.json_response(key_set)

    async def forward(request: web.Request) -> web.StreamResponse:
        ctx = RequestContext(
            request_id="",  # dev-iap adds no request id: the proxy behind it does
            method=request.method,
            target=request.raw_path,
            remote=request.remote or "",
            started=time.monotonic(),
        )
        headers = iap_headers(request.headers.items(), mint(key, email, audience, hd=hd))
        url = URL(upstream.rstrip("/") + request.raw_path, encoded=True)
        session = request.app[DEV]["session"]
        try:
            if is_upgrade(request):
                return await forward_websocket(request, ctx, session, url, headers, 64 << 20)
            return await forward_http(request, ctx, session, url, headers, 1 << 40)
        except UpstreamError as exc:
            status = status_for(exc.kind, exc.upstream_status)
            return web.json_response({"error": "dev_iap", "reason": exc.reason}, status=status)

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get(JWKS_PATH, serve_jwks)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app
