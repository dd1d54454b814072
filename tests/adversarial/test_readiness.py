"""`/readyz` answers anyone, so it says little and costs little: `ready` or `not ready` and nothing
about why (that is in the access record and, once per change, the log), and however many probes
arrive, Ray is asked at most once per `UPSTREAM_CHECK_SECONDS`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from devkit.ray_double import RayDouble
from devkit.records import AccessRecords
from proxy.http.pipeline import PROXY
from proxy.http.probes import UPSTREAM_CHECK_SECONDS, Readiness


async def test_not_ready_says_so_and_nothing_more(
    make_proxy: Any,
    ray: RayDouble,
    access_records: AccessRecords,
    key_server: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ray_iap_proxy")
    key_server[0].fail = True  # no key set, and Ray unreachable
    proxy = await make_proxy(upstream="http://127.0.0.1:9", access_log=access_records)
    for _ in range(5):
        for method in ("GET", "HEAD"):
            r = await proxy.request(method, "/readyz")
            assert r.status == 503
            if method == "GET":
                assert await r.json() == {"status": "not ready"}
            assert "IAP" not in await r.text() and "Ray" not in await r.text()
    record = access_records.last()
    assert record["reason"] == "not ready: IAP key set not loaded; Ray not answering"  # for the operator
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("not ready")]
    assert warnings == ["not ready: IAP key set not loaded; Ray not answering"]  # once, not per probe


async def test_probes_cost_ray_one_check_per_interval(make_proxy: Any, ray: RayDouble) -> None:
    proxy = await make_proxy()
    now = [1000.0]
    readiness = proxy.server.app[PROXY].readiness = Readiness(clock=lambda: now[0])
    before = ray.probes
    for _ in range(20):
        assert (await proxy.get("/readyz")).status == 200
    answers = await asyncio.gather(*(proxy.get("/readyz") for _ in range(20)))
    assert [a.status for a in answers] == [200] * 20
    assert ray.probes - before == readiness.upstream_checks == 1
    now[0] += UPSTREAM_CHECK_SECONDS  # the answer is stale now: one more check
    for _ in range(5):
        assert (await proxy.get("/readyz")).status == 200
    assert ray.probes - before == readiness.upstream_checks == 2
    assert ray.hits == []


async def test_concurrent_probes_share_one_check(make_proxy: Any, ray: RayDouble) -> None:
    proxy = await make_proxy()
    readiness = proxy.server.app[PROXY].readiness = Readiness(clock=lambda: 0.0)
    release = asyncio.Event()
    calls = 0

    async def slow() -> str | None:
        nonlocal calls
        calls += 1
        await release.wait()
        return "Ray not answering"

    waiting = [asyncio.ensure_future(readiness.upstream_problem(slow)) for _ in range(50)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiting) == ["Ray not answering"] * 50
    assert calls == readiness.upstream_checks == 1
    assert ray.hits == []


async def test_a_probe_going_away_does_not_cancel_the_check_others_wait_for(ray: RayDouble) -> None:
    readiness = Readiness(clock=lambda: 0.0)
    release = asyncio.Event()

    async def slow() -> str | None:
        await release.wait()
        return None

    first = asyncio.ensure_future(readiness.upstream_problem(slow))
    second = asyncio.ensure_future(readiness.upstream_problem(slow))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second is None
    assert readiness.upstream_checks == 1


async def test_gcs_health_is_answered_by_the_proxy_without_credentials(
    make_proxy: Any, ray: RayDouble, access_records: AccessRecords
) -> None:
    """KubeRay's RayJob submitter polls Ray's public GET /api/gcs_healthz without a token before it
    submits: the proxy answers it from its own check of Ray (made with Ray's token), so nothing
    unauthenticated reaches Ray; with a query it is an ordinary route and needs credentials."""
    proxy = await make_proxy(access_log=access_records)
    probes = ray.probes
    for method in ("GET", "HEAD", "GET"):
        r = await proxy.request(method, "/api/gcs_healthz")
        assert r.status == 200 and r.headers["X-Request-Id"]
        if method == "GET":
            assert await r.text() == "success"
    assert ray.probes - probes <= 1  # one cached check for the three
    assert ray.hits == []  # the tripwire: nothing without credentials reached Ray
    assert access_records.last()["decision"] == "local"
    assert (await proxy.get("/api/gcs_healthz?x=1")).status == 401
    assert (await proxy.post("/api/gcs_healthz")).status == 401


async def test_gcs_health_says_unhealthy_when_ray_does_not_answer(make_proxy: Any, ray: RayDouble) -> None:
    proxy = await make_proxy(upstream="http://127.0.0.1:9")
    r = await proxy.get("/api/gcs_healthz")
    assert r.status == 503 and await r.text() == "unhealthy"
