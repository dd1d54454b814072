"""IAP's public keys: parsing (pure) and a store that fetches, refreshes and rate-limits (the I/O).

Both of Google's formats are understood: the JWKS at `.../public_key-jwk` and the `{kid: PEM}`
dictionary at `.../public_key`. Only P-256 EC keys are kept. A failed refresh keeps the last good
keys; a store that never loaded any keys is "not ready" and every request fails closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

log = logging.getLogger("ray_iap_proxy.keys")

Fetch = Callable[[str], Awaitable[bytes]]
Keys = Mapping[str, EllipticCurvePublicKey]


class KeySetError(ValueError):
    pass


def parse_key_set(body: bytes) -> dict[str, EllipticCurvePublicKey]:
    """Parse a JWKS or a {kid: PEM} document into P-256 public keys by kid. Raises KeySetError."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise KeySetError("key set is not JSON") from None
    if not isinstance(doc, dict):
        raise KeySetError("key set is not a JSON object")
    keys: dict[str, EllipticCurvePublicKey] = {}
    if isinstance(doc.get("keys"), list):
        for jwk in doc["keys"]:
            if not isinstance(jwk, dict) or jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
                continue
            kid = jwk.get("kid")
            if not isinstance(kid, str) or not kid:
                continue
            try:
                key = jwt.PyJWK(jwk, algorithm="ES256").key
            except (jwt.PyJWTError, ValueError, TypeError, KeyError):
                continue
            if isinstance(key, EllipticCurvePublicKey):
                keys[kid] = key
    else:
        for kid, pem in doc.items():
            if not isinstance(pem, str):
                continue
            try:
                key = load_pem_public_key(pem.encode())
            except ValueError:
                continue
            if isinstance(key, EllipticCurvePublicKey) and isinstance(key.curve, SECP256R1):
                keys[kid] = key
    if not keys:
        raise KeySetError("key set holds no P-256 keys")
    return keys


@dataclass
class KeyStore:
    """The keys we verify with. `refresh()` fetches; `refresh_for(kid)` is the rate-limited miss path."""

    url: str
    fetch: Fetch
    min_refetch_seconds: float
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
            keys = parse_key_set(await self.fetch(self.url))
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
