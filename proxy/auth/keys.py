"""Public keys of a token issuer: parsing (pure) and a store per key-set URL that fetches, refreshes
and rate-limits (the only I/O of authentication).

Both of Google's formats are understood: a JWKS (IAP's `.../public_key-jwk`, Google's
`oauth2/v3/certs`) and a `{kid: PEM}` dictionary of public keys or certificates (IAP's
`.../public_key`, Google's `oauth2/v1/certs`). Only keys for the store's one algorithm are kept: P-256
for ES256, RSA of 2048 bits or more for RS256. A failed refresh keeps the last good keys; a store that
never loaded any keys is "not ready" and every request it would verify fails closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from cryptography.x509 import load_pem_x509_certificate

log = logging.getLogger("ray_iap_proxy.keys")

Fetch = Callable[[str], Awaitable[bytes]]
PublicKey = EllipticCurvePublicKey | RSAPublicKey
Keys = Mapping[str, PublicKey]
MIN_RSA_BITS = 2048
_KTY = {"ES256": "EC", "RS256": "RSA"}


class KeySetError(ValueError):
    pass


def _usable(key: object, algorithm: str) -> bool:
    if algorithm == "ES256":
        return isinstance(key, EllipticCurvePublicKey) and isinstance(key.curve, SECP256R1)
    return isinstance(key, RSAPublicKey) and key.key_size >= MIN_RSA_BITS


def _from_pem(pem: str) -> object:
    data = pem.encode()
    if b"BEGIN CERTIFICATE" in data:
        return load_pem_x509_certificate(data).public_key()
    return load_pem_public_key(data)


def parse_key_set(body: bytes, algorithm: str = "ES256") -> dict[str, PublicKey]:
    """Parse a JWKS or a {kid: PEM} document into the keys usable with `algorithm`, by kid.
    Raises KeySetError."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise KeySetError("key set is not JSON") from None
    if not isinstance(doc, dict):
        raise KeySetError("key set is not a JSON object")
    keys: dict[str, PublicKey] = {}
    if isinstance(doc.get("keys"), list):
        for jwk in doc["keys"]:
            if not isinstance(jwk, dict) or jwk.get("kty") != _KTY[algorithm]:
                continue
            if algorithm == "ES256" and jwk.get("crv") != "P-256":
                continue
            kid = jwk.get("kid")
            if not isinstance(kid, str) or not kid:
                continue
            try:
                key = jwt.PyJWK(jwk, algorithm=algorithm).key
            except (jwt.PyJWTError, ValueError, TypeError, KeyError):
                continue
            if _usable(key, algorithm):
                keys[kid] = key
    else:
        for kid, pem in doc.items():
            if not isinstance(pem, str):
                continue
            try:
                key = _from_pem(pem)
            except ValueError:
                continue
            if _usable(key, algorithm):
                keys[kid] = key  # type: ignore[assignment]
    if not keys:
        what = "P-256" if algorithm == "ES256" else f"RSA (>= {MIN_RSA_BITS} bits)"
        raise KeySetError(f"key set holds no {what} keys")
    return keys


@dataclass
class KeyStore:
    """The keys we verify with. `refresh()` fetches; `refresh_for(kid)` is the rate-limited miss path."""

    url: str
    fetch: Fetch
    min_refetch_seconds: float
    algorithm: str = "ES256"
    clock: Callable[[], float] = time.monotonic
    keys: Keys = field(default_factory=dict)
    loaded_at: float | None = None
    last_attempt: float | None = None
    last_miss_fetch: float | None = None
    last_error: str | None = None
    failures: int = 0
    fetches: int = 0
    on_removed: Callable[[set[str]], None] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def ready(self) -> bool:
        return bool(self.keys)

    async def refresh(self) -> bool:
        """Fetch the key set now. On failure keep the old keys, log an alarm and return False."""
        async with self._lock:
            return await self._refresh_locked()

    async def _refresh_locked(self) -> bool:
        self.last_attempt = self.clock()
        self.fetches += 1
        try:
            keys = parse_key_set(await self.fetch(self.url), self.algorithm)
        except Exception as exc:  # any failure to fetch or parse: keep what we have
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            level = logging.ERROR if not self.keys else logging.WARNING
            log.log(
                level,
                "key set refresh failed (%s); %s",
                self.last_error,
                f"keeping {len(self.keys)} cached key(s)" if self.keys else "no keys: failing closed",
            )
            return False
        added = set(keys) - set(self.keys)
        removed = set(self.keys) - set(keys)
        self.keys, self.loaded_at, self.last_error = keys, self.clock(), None
        if removed and self.on_removed is not None:
            self.on_removed(removed)
        if added or removed:
            log.info(
                "key set loaded: %d key(s), added %s, removed %s", len(keys), sorted(added), sorted(removed)
            )
        return True

    async def refresh_for(self, kid: str) -> bool:
        """A token names a kid we lack: refetch, at most once per `min_refetch_seconds`.

        Concurrent misses wait for one fetch; a flood of made-up kids costs one fetch per interval.
        """
        async with self._lock:
            if kid in self.keys:
                return True
            now = self.clock()
            if self.last_miss_fetch is not None and now - self.last_miss_fetch < self.min_refetch_seconds:
                return False
            self.last_miss_fetch = now
            await self._refresh_locked()
            return kid in self.keys

    def seconds_since_load(self) -> float | None:
        return None if self.loaded_at is None else self.clock() - self.loaded_at


RETRY_SECONDS = (2, 5, 10, 30, 60)


async def refresh_forever(store: KeyStore, every: float) -> None:
    """Refetch every `every` seconds; after a failure, retry sooner (2, 5, 10, 30, 60 s)."""
    failures = 0
    while True:
        if store.ready and failures == 0:
            await asyncio.sleep(every)
        else:
            await asyncio.sleep(RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)])
        failures = 0 if await store.refresh() else failures + 1


def http_fetcher(session: aiohttp.ClientSession, timeout: float) -> Fetch:
    """The production key-set fetch: one GET, no redirects, bounded in time and size."""

    async def fetch(url: str) -> bytes:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False) as r:
            if r.status != 200:
                raise OSError(f"key set URL answered {r.status}")
            body = await r.content.read(1 << 20)
            if not r.content.at_eof():
                raise OSError("key set larger than 1 MiB")
            return body

    return fetch
