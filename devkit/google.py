"""Google's ID tokens, as the tests mint them: an RSA key of the tests' own, its JWKS (served by
`devkit.keys.KeyServer` through the proxy's production fetch path), and tokens shaped like those of
`gcloud auth print-identity-token` and `google.oauth2.id_token.fetch_id_token`."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from proxy import dev

ISSUER = "https://accounts.google.com"


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def mint_id_token(
    key: rsa.RSAPrivateKey,
    email: str,
    audience: str,
    *,
    issuer: str = ISSUER,
    lifetime: int = 3600,
    now: float | None = None,
    email_verified: bool | None = True,
    hd: str | None = None,
    claims: dict[str, Any] | None = None,
    headers: dict[str, Any] | None = None,
) -> str:
    """An ID token as Google issues it: RS256, kid, iss, aud, azp, sub, email(_verified), iat, exp."""
    issued = int(time.time() if now is None else now)
    payload: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "azp": "1234567890-abc.apps.googleusercontent.com",
        "sub": str(int(hashlib.sha256(email.encode()).hexdigest()[:15], 16)),
        "email": email,
        "iat": issued,
        "exp": issued + lifetime,
    }
    if email_verified is not None:
        payload["email_verified"] = email_verified
    if hd:
        payload["hd"] = hd
    payload.update(claims or {})
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": dev.key_id(key), **(headers or {})})


def jwks(*keys: rsa.RSAPrivateKey) -> dict[str, Any]:
    return dev.jwks(*keys)
