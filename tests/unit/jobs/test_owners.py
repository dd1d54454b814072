"""The owner cache: asked of Ray through a fetch function, kept briefly and boundedly, dropped on
deletion, and every failure of Ray an OwnerUnknown (no grant)."""

from __future__ import annotations

import asyncio
import json

import pytest

from proxy.errors import Kind, UpstreamError
from proxy.jobs.owners import OwnerCache
from proxy.jobs.ownership import OwnerUnknown


class FakeRay:
    def __init__(self) -> None:
        self.owners: dict[str, str | None] = {}
        self.asked: list[str] = []
        self.fail: BaseException | None = None
        self.delay = 0.0

    async def fetch(self, target: str) -> tuple[int, bytes]:
        self.asked.append(target)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        job = target.removeprefix("/api/jobs/").replace("%20", " ")
        if job not in self.owners:
            return 404, f"Job {job} does not exist".encode()
        meta = {"submitted_by": self.owners[job]} if self.owners[job] else {}
        return 200, json.dumps({"type": "SUBMISSION", "metadata": meta}).encode()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def cache(ray: FakeRay, clock: Clock, ttl: float = 10.0, size: int = 3, timeout: float = 1.0) -> OwnerCache:
    return OwnerCache(ray.fetch, ttl_seconds=ttl, size=size, timeout_seconds=timeout, clock=clock)


async def test_owner_is_kept_for_ttl_then_asked_again() -> None:
    ray, clock = FakeRay(), Clock()
    ray.owners["j1"] = "ana@example.com"
    c = cache(ray, clock)
    assert await c.owner("j1") == "ana@example.com"
    clock.now += 9.9
    assert await c.owner("j1") == "ana@example.com"
    assert ray.asked == ["/api/jobs/j1"]
    clock.now += 0.2
    assert await c.owner("j1") == "ana@example.com"
    assert len(ray.asked) == 2


async def test_a_missing_job_is_never_kept() -> None:
    ray, clock = FakeRay(), Clock()
    c = cache(ray, clock)
    assert await c.owner("j1") is None
    ray.owners["j1"] = "ana@example.com"  # submitted a moment later
    assert await c.owner("j1") == "ana@example.com"
    assert len(ray.asked) == 2 and len(c) == 1


async def test_a_job_without_owner_is_kept_as_such() -> None:
    ray, clock = FakeRay(), Clock()
    ray.owners["around"] = None
    c = cache(ray, clock)
    assert await c.owner("around") is None and await c.owner("around") is None
    assert len(ray.asked) == 1


async def test_forget_drops_a_deleted_job_under_any_spelling() -> None:
    ray, clock = FakeRay(), Clock()
    ray.owners["my run"] = "ana@example.com"
    c = cache(ray, clock)
    assert await c.owner("my%20run") == "ana@example.com"
    c.forget("my run")  # the decoded id, as the verdict carries it
    ray.owners["my run"] = "ben@example.com"  # deleted, and submitted again by someone else
    assert await c.owner("my%20run") == "ben@example.com"
    assert ray.asked == ["/api/jobs/my%20run"] * 2  # asked with the raw id, as Ray will read it


async def test_the_cache_is_bounded_least_recently_used_first() -> None:
    ray, clock = FakeRay(), Clock()
    for j in "abcd":
        ray.owners[j] = f"{j}@example.com"
    c = cache(ray, clock, size=3)
    for j in "abc":
        await c.owner(j)
    await c.owner("a")  # a is now the most recent
    await c.owner("d")  # b goes
    assert len(c) == 3
    ray.asked.clear()
    await c.owner("a")
    await c.owner("b")
    assert ray.asked == ["/api/jobs/b"]


async def test_ttl_zero_asks_every_time() -> None:
    ray, clock = FakeRay(), Clock()
    ray.owners["j1"] = "ana@example.com"
    c = cache(ray, clock, ttl=0)
    await c.owner("j1")
    await c.owner("j1")
    assert len(ray.asked) == 2 and len(c) == 0


@pytest.mark.parametrize(
    "fail, why",
    [
        (UpstreamError("Ray is not reachable", Kind.UPSTREAM_UNREACHABLE), "(Ray is not reachable)"),
        (UpstreamError("Ray's answer to /api/jobs/j1 is larger than 1048576 bytes"), "larger than"),
    ],
)
async def test_ray_failing_is_owner_unknown_and_not_kept(fail: BaseException, why: str) -> None:
    ray, clock = FakeRay(), Clock()
    ray.owners["j1"] = "ana@example.com"
    ray.fail = fail
    c = cache(ray, clock)
    with pytest.raises(OwnerUnknown) as err:
        await c.owner("j1")
    assert (
        err.value.reason.startswith("Ray could not be asked who submitted job j1") and why in err.value.reason
    )
    ray.fail = None
    assert await c.owner("j1") == "ana@example.com"


async def test_a_slow_ray_is_owner_unknown_within_the_timeout() -> None:
    ray, clock = FakeRay(), Clock()
    ray.owners["j1"] = "ana@example.com"
    ray.delay = 5.0
    with pytest.raises(OwnerUnknown) as err:
        await cache(ray, clock, timeout=0.05).owner("j1")
    assert "did not say within 0.05 s who submitted job j1" in err.value.reason


async def test_a_long_id_is_cut_in_reasons_but_looked_up_whole() -> None:
    ray, clock = FakeRay(), Clock()
    long_id = "x" * 500
    ray.owners[long_id] = "ana@example.com"
    c = cache(ray, clock)
    assert await c.owner(long_id) == "ana@example.com"
    c.forget(long_id)
    assert len(c) == 0
    ray.fail = UpstreamError("Ray is not reachable")
    with pytest.raises(OwnerUnknown) as err:
        await c.owner(long_id)
    assert len(err.value.reason) < 250
