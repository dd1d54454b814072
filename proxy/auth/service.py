"""Authentication as a running service: the providers the settings ask for, one key store per
key-set URL, and the tasks that keep those keys fresh. Built and stopped by the app's lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import aiohttp

from ..settings import Settings
from ..upstream.ray_token import RayToken
from .authenticate import Authenticator
from .keys import Fetch, KeyStore, http_fetcher, refresh_forever
from .providers import Provider
from .providers.google_oidc import GoogleIdTokenProvider
from .providers.iap import IapProvider
from .providers.ray_token import RayTokenProvider

FetchFactory = Callable[[aiohttp.ClientSession, float], Fetch]


class AuthService:
    def __init__(
        self,
        settings: Settings,
        ray_token: RayToken,
        fetch: FetchFactory | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        make_fetch = fetch or http_fetcher
        iap = settings.iap
        self.refresh: list[tuple[KeyStore, float]] = []
        iap_store = KeyStore(
            iap.jwks_url,
            make_fetch(self.session, iap.key_fetch_timeout_seconds),
            iap.key_min_refetch_seconds,
            algorithm="ES256",
        )
        self.refresh.append((iap_store, iap.key_refresh_seconds))
        self.iap = IapProvider(iap, iap_store, clock)
        providers: list[Provider] = [self.iap]
        if settings.accept_ray_token:
            providers.append(RayTokenProvider(ray_token))
        google = settings.google_id_tokens
        if google is not None:
            store = KeyStore(
                google.jwks_url,
                make_fetch(self.session, google.key_fetch_timeout_seconds),
                google.key_min_refetch_seconds,
                algorithm="RS256",
            )
            self.refresh.append((store, google.key_refresh_seconds))
            providers.append(GoogleIdTokenProvider(google, store, clock))
        self.authenticator = Authenticator(providers)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Fetch every key set once (a failure leaves that provider failing closed), then keep them
        fresh in the background."""
        await asyncio.gather(*(store.refresh() for store, _ in self.refresh))
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(refresh_forever(store, every), name=f"key-refresh {store.url}")
            for store, every in self.refresh
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.session.close()
