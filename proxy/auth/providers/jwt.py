"""What every signed-token provider shares: keys from a key store, verification by `verify.py`, and a
cache of verified tokens.

A token's signature is checked once; the identity it yields is cached until `exp` + leeway, so the
hot path is one dictionary lookup. An unknown key id triggers the key store's rate-limited refetch.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cachetools import TLRUCache

from ...errors import Unauthenticated, Unavailable, UnknownKeyId
from ...model import CredentialKind, Identity
from ..keys import KeyStore
from ..verify import Rules, verify


class JwtProvider:
    kind: CredentialKind
    label: str

    def __init__(
        self, rules: Rules, store: KeyStore, cache_size: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.kind = rules.kind
        self.rules = rules
        self.store = store
        self.clock = clock
        self.cache: TLRUCache[str, Identity] | None = None
        if cache_size:
            self.cache = TLRUCache(
                maxsize=cache_size,
                ttu=lambda _token, ident, _now: ident.expires_at + rules.leeway_seconds,
                timer=clock,
            )
        self.hits = 0
        self.misses = 0
        store.on_removed = lambda _kids: self.forget_all()

    @property
    def ready(self) -> bool:
        return self.store.ready

    @property
    def problem(self) -> str | None:
        return None if self.store.ready else f"{self.key_set_label} not loaded"

    async def authenticate(self, value: str) -> Identity:
        if self.cache is not None:
            cached = self.cache.get(value)
            if cached is not None:
                self.hits += 1
                return cached
        self.misses += 1
        try:
            identity = await self._verify(value)
        except Unauthenticated as exc:
            raise Unauthenticated(f"invalid {self.label}: {exc.reason}") from None
        if self.cache is not None:
            self.cache[value] = identity
        return identity

    async def _verify(self, token: str) -> Identity:
        if not self.store.ready:
            await self.store.refresh_for("")  # cold start: one rate-limited attempt
            if not self.store.ready:
                raise Unavailable(f"{self.key_set_label} not loaded: cannot verify identities")
        try:
            return verify(token, self.store.keys, self.rules, self.clock())
        except UnknownKeyId as exc:
            if not await self.store.refresh_for(exc.kid):
                raise
            return verify(token, self.store.keys, self.rules, self.clock())

    @property
    def key_set_label(self) -> str:
        return f"{self.label.split()[0]} key set"

    def forget_all(self) -> None:
        """Drop cached identities (after a key was withdrawn from the key set)."""
        if self.cache is not None:
            self.cache.clear()
