"""Micro-timings of the proxy's verification path, in this process, pinned to the SUT core.

The one module of the bench that imports the proxy's internals (beyond `proxy.dev`): when they move,
only this file follows. The imports stay inside `micro()` so the rest of the run never loads them.
"""

from __future__ import annotations

import asyncio
import os
import time

from bench.settings import AUDIENCE, LOAD_CORE, SUT_CORE
from bench.tokens import TokenPool


def micro(jwks: bytes, pool: TokenPool) -> dict[str, float]:
    """The proxy's own `IapProvider.authenticate` (cache + PyJWT ES256 + claim checks), on the SUT
    core: CPU µs per call for fresh tokens (misses) and for the same tokens again (hits)."""
    from proxy.auth.keys import KeyStore
    from proxy.auth.providers.iap import IapProvider
    from proxy.settings import Iap

    async def fetch(_url: str) -> bytes:
        return jwks

    async def run() -> tuple[float, float]:
        store = KeyStore("http://127.0.0.1/jwks.json", fetch, 30)
        await store.refresh()
        verifier = IapProvider(Iap(audiences=(AUDIENCE,)), store)
        tokens = pool.take("micro", 2000)
        t0 = time.thread_time()
        for tok in tokens:
            await verifier.authenticate(tok)
        miss = (time.thread_time() - t0) / len(tokens)
        t0 = time.thread_time()
        for _ in range(10):
            for tok in tokens:
                await verifier.authenticate(tok)
        hit = (time.thread_time() - t0) / (10 * len(tokens))
        assert verifier.misses == len(tokens) and verifier.hits == 10 * len(tokens)
        return miss, hit

    os.sched_setaffinity(0, {SUT_CORE})
    try:
        miss, hit = asyncio.run(run())
    finally:
        os.sched_setaffinity(0, {LOAD_CORE})
    return {
        "verify_us": round(miss * 1e6, 1),
        "cache_hit_us": round(hit * 1e6, 2),
        "verify_per_s": round(1 / miss),
    }
