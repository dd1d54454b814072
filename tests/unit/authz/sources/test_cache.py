"""The remote sources' cache: separate lifetimes by value, bounded size, errors never kept, concurrent
identical lookups made once, and a caller that gives up never cancels the others' lookup."""

from __future__ import annotations

import asyncio
import logging

import pytest

from proxy.authz.sources.cache import Health, Lookups


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lifetimes(value: str) -> float:
    return {"allow": 300.0, "deny": 30.0}.get(value, 0.0)


async def test_allow_and_deny_live_as_long_as_their_ttl() -> None:
    clock, calls = Clock(), []

    async def fetch(value: str) -> str:
        calls.append(value)
        return value

    cache: Lookups[str, str] = Lookups(100, lifetimes, clock)
    assert await cache.get("a", lambda: fetch("allow")) == "allow"
    assert await cache.get("d", lambda: fetch("deny")) == "deny"
    clock.now += 29.9
    assert await cache.get("a", lambda: fetch("x")) == "allow"
    assert await cache.get("d", lambda: fetch("x")) == "deny"
    clock.now += 0.2  # the deny is 30.1 s old: asked again
    assert await cache.get("d", lambda: fetch("deny")) == "deny"
    clock.now += 270  # the allow is 300.1 s old
    assert await cache.get("a", lambda: fetch("deny")) == "deny"
    assert calls == ["allow", "deny", "deny", "deny"]
    assert (cache.hits, cache.misses) == (2, 4)


async def test_errors_and_undecided_answers_are_never_kept() -> None:
    clock, calls = Clock(), []

    async def failing() -> str:
        calls.append("fail")
        raise RuntimeError("down")

    async def undecided() -> str:
        calls.append("undecided")
        return "undecided"  # ttl 0

    cache: Lookups[str, str] = Lookups(100, lifetimes, clock)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            await cache.get("k", failing)
        assert await cache.get("u", undecided) == "undecided"
    assert calls == ["fail", "undecided", "fail", "undecided"] and cache.size == 0


async def test_the_cache_is_bounded() -> None:
    cache: Lookups[int, str] = Lookups(3, lifetimes, Clock())

    async def allow() -> str:
        return "allow"

    for key in range(10):
        await cache.get(key, allow)
    assert cache.size == 3


async def test_concurrent_identical_lookups_are_one_and_a_quitter_does_not_cancel_it() -> None:
    gate, calls = asyncio.Event(), []

    async def slow() -> str:
        calls.append("call")
        await gate.wait()
        return "allow"

    cache: Lookups[str, str] = Lookups(100, lifetimes, Clock())
    waiters = [asyncio.ensure_future(cache.get("k", slow)) for _ in range(20)]
    await asyncio.sleep(0)
    assert cache.running == 1
    waiters[0].cancel()  # one caller gives up (the union's time limit, a client gone)
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*waiters[1:])
    assert results == ["allow"] * 19 and calls == ["call"]
    assert (cache.misses, cache.coalesced) == (1, 19)
    assert await cache.get("k", slow) == "allow" and calls == ["call"]  # kept for the next caller


async def test_an_abandoned_lookup_still_fills_the_cache_and_close_cancels_what_runs() -> None:
    gate = asyncio.Event()

    async def slow() -> str:
        await gate.wait()
        return "allow"

    cache: Lookups[str, str] = Lookups(100, lifetimes, Clock())
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(cache.get("k", slow), 0.01)
    gate.set()
    for _ in range(100):  # bounded: the abandoned lookup settles on the next turns of the loop
        if cache.cached("k") is not None:
            break
        await asyncio.sleep(0)
    assert cache.cached("k") == "allow"

    never = asyncio.Event()

    async def hangs() -> str:
        await never.wait()
        return "allow"

    waiter = asyncio.ensure_future(cache.get("h", hangs))
    await asyncio.sleep(0)
    await cache.close()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert cache.running == 0


def test_health_logs_the_start_of_an_outage_then_at_most_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    health = Health("kubernetes_rbac", clock)
    caplog.set_level(logging.INFO, logger="ray_iap_proxy.authz")
    for _ in range(50):
        health.failed("the API server is unreachable")
        clock.now += 1
    assert health.failures == 50 and health.last_error == "the API server is unreachable"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 failure(s) in a row" in warnings[0].getMessage()
    clock.now += 20  # 70 s after the first line
    health.failed("the API server is unreachable")
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
    health.ok()
    assert "answers again after 51 failure(s)" in caplog.records[-1].getMessage()
    assert health.last_error is None and health.failures == 51
