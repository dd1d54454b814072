"""Who is calling: the verified identity for a request's IAP assertion, with a cache of verified tokens.

A token's signature is checked once; the identity it yields is cached until `exp` + leeway, so the
hot path is one dictionary lookup. Unknown key ids trigger the key store's rate-limited refetch.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cachetools import TLRUCache

from ..config import IapConfig
from ..model import Identity
from .keys import KeyStore
from .tokens import TokenError, UnknownKeyId, verify

ASSERTION_HEADER = "x-goog-iap-jwt-assertion"


class KeysUnavailable(Exception):
    """No key set was ever loaded: we cannot tell who anyone is, so nobody gets in (503)."""


class Verifier:
    def __init__(self, iap: IapConfig, store: KeyStore, clock: Callable[[], float] = time.time) -> None:
        self.iap = iap
        self.store = store
        self.clock = clock
        self.cache: TLRUCache[str, Identity] | None = None
        if iap.token_cache_size:
            self.cache = TLRUCache(
                maxsize=iap.token_cache_size,
                ttu=lambda _token, ident, _now: ident.expires_at + iap.leeway_seconds,
                timer=clock,
            )
        self.hits = 0
        self.misses = 0

    async def identify(self, token: str) -> Identity:
        """The identity behind `token`, or TokenError / KeysUnavailable."""
        if self.cache is not None:
            cached = self.cache.get(token)
            if cached is not None:
                self.hits += 1
                return cached
        self.misses += 1
        if not self.store.ready:
            await self.store.refresh_for("")  # cold start: one rate-limited attempt
            if not self.store.ready:
                raise KeysUnavailable(self.store.last_error or "key set not loaded")
        try:
            identity = verify(token, self.store.keys, self.iap, self.clock())
        except UnknownKeyId as exc:
            if not await self.store.refresh_for(exc.kid):
                raise
            identity = verify(token, self.store.keys, self.iap, self.clock())
        if self.cache is not None:
            self.cache[token] = identity
        return identity

    def forget_all(self) -> None:
        """Drop cached identities (after a key was withdrawn from the key set)."""
        if self.cache is not None:
            self.cache.clear()


def assertion_from(values: list[str]) -> str:
    """The single assertion among a request's header values; several copies are refused."""
    if not values:
        raise TokenError("no IAP assertion (x-goog-iap-jwt-assertion)")
    if len(values) > 1:
        raise TokenError("several IAP assertion headers")
    return values[0].strip()
