"""What the remote policy sources share: a bounded answer cache whose entries live as long as their
value says (an allow longer than a deny; an error not at all), with concurrent identical lookups
coalesced into one; and `Health`, the source's outage bookkeeping with a rate-limited log line.

A coalesced lookup runs as a task of its own: a caller that gives up (the union's time limit, a client
that went away) stops waiting for it, the others keep waiting, and the answer, when it comes, is still
cached for the next caller. `close()` cancels what is still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from cachetools import TLRUCache

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
Clock = Callable[[], float]

log = logging.getLogger("ray_iap_proxy.authz")


class Lookups(Generic[K, V]):
    """`await get(key, fetch)`: the cached value, or the one running lookup for `key`, or a new one.
    `ttl(value)` says how long a value is kept, in seconds; 0 (or less) keeps it not at all."""

    def __init__(self, maxsize: int, ttl: Callable[[V], float], clock: Clock = time.monotonic) -> None:
        self._ttl = ttl
        self._cache: TLRUCache[K, V] = TLRUCache(maxsize, ttu=self._expires, timer=clock)
        self._running: dict[K, asyncio.Task[V]] = {}
        self.hits = 0  # answered from the cache
        self.misses = 0  # a lookup was started
        self.coalesced = 0  # joined a lookup already running

    def _expires(self, _key: K, value: V, now: float) -> float:
        return now + self._ttl(value)

    @property
    def size(self) -> int:
        return len(self._cache)

    @property
    def running(self) -> int:
        return len(self._running)

    def cached(self, key: K) -> V | None:
        return self._cache.get(key)

    async def get(self, key: K, fetch: Callable[[], Awaitable[V]]) -> V:
        found = self._cache.get(key)
        if found is not None:
            self.hits += 1
            return found
        task = self._running.get(key)
        if task is None:
            self.misses += 1
            task = asyncio.ensure_future(fetch())
            self._running[key] = task
            task.add_done_callback(lambda done: self._settle(key, done))
        else:
            self.coalesced += 1
        return await asyncio.shield(task)

    def _settle(self, key: K, task: asyncio.Task[V]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if task.cancelled() or task.exception() is not None:  # retrieved: never "never retrieved"
            return
        value = task.result()
        if self._ttl(value) > 0:
            self._cache[key] = value

    def clear(self) -> None:
        self._cache.clear()

    async def close(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._running.clear()


class Health:
    """A remote source's failures: counted, the last one kept, and logged when the source starts failing,
    then at most once per `log_every_seconds` while it goes on failing, and once when it recovers."""

    def __init__(self, what: str, clock: Clock = time.monotonic, log_every_seconds: float = 60.0) -> None:
        self.what = what
        self.clock = clock
        self.every = log_every_seconds
        self.failures = 0  # every failed call, ever
        self.failing_since: float | None = None
        self.last_error: str | None = None
        self._streak = 0
        self._logged_at: float | None = None

    def failed(self, why: str) -> None:
        now = self.clock()
        self.failures += 1
        self._streak += 1
        self.last_error = why
        if self.failing_since is None:
            self.failing_since = now
        if self._logged_at is None or now - self._logged_at >= self.every:
            log.warning(
                "%s: %s (%d failure(s) in a row); it grants nothing until it answers again",
                self.what,
                why,
                self._streak,
            )
            self._logged_at = now

    def ok(self) -> None:
        if self.failing_since is not None:
            log.info(
                "%s answers again after %d failure(s) over %.0f s",
                self.what,
                self._streak,
                self.clock() - self.failing_since,
            )
        self.failing_since, self.last_error, self._streak, self._logged_at = None, None, 0, None
