"""The IAP key set under faults: unreachable at start (fail closed, not ready), unreachable later (keep
verifying with the last keys, alarm in the log and in /metrics), rotation, and kid floods during an
outage. The alarm's metrics come from the real /metrics application."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import ec

from devkit.ray_double import ASSERTION, PASS, RayDouble
from devkit.util import wait_until
from proxy.http.pipeline import PROXY
from proxy.telemetry.metrics import metrics_app

IAP = '{provider="iap"}'  # the key-set metrics are per signed-token provider


async def metrics(proxy: TestClient) -> dict[str, float]:
    """Scrape the proxy's /metrics application; {name{labels}: value}."""
    client = TestClient(TestServer(metrics_app(proxy.server.app, proxy.server.runner)))
    await client.start_server()
    try:
        r = await client.get("/metrics")
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await r.text()
    finally:
        await client.close()
    for secret in ("@example.com", "/api/", "eyJ", "team-a", "Bearer"):
        assert secret not in text
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


async def test_unreachable_at_start_fails_closed_then_recovers(
    key_server: Any, make_proxy: Any, ray: RayDouble, mint: Any, caplog: pytest.LogCaptureFixture
) -> None:
    key_server[0].fail = True
    proxy = await make_proxy()
    r = await proxy.get("/api/jobs/", headers={ASSERTION: mint()})  # unmarked: must not reach Ray
    assert r.status == 503 and (await r.json())["error"] == "unavailable"
    r = await proxy.get("/readyz")
    assert r.status == 503 and "IAP key set not loaded" in proxy.server.app[PROXY].readiness.problems
    assert any(
        "no keys: failing closed" in rec.getMessage() and rec.levelno == logging.ERROR
        for rec in caplog.records
    )
    m = await metrics(proxy)
    assert (
        m[f"ray_iap_proxy_key_set_loaded{IAP}"] == 0
        and m[f"ray_iap_proxy_key_set_fetch_failures_total{IAP}"] >= 1
    )
    assert m[f"ray_iap_proxy_key_set_age_seconds{IAP}"] == -1
    assert ray.hits == []

    key_server[0].fail = False  # the background refresher retries on its own
    store = proxy.server.app[PROXY].iap.store
    await wait_until(lambda: store.ready, 15)
    r = await proxy.get("/api/jobs/", headers={ASSERTION: mint(), **PASS})
    assert r.status == 200
    assert (await metrics(proxy))[f"ray_iap_proxy_key_set_loaded{IAP}"] == 1


async def test_outage_later_keeps_verifying_and_raises_the_alarm(
    key_server: Any, make_proxy: Any, ray: RayDouble, mint: Any, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await make_proxy()
    assert (await proxy.get("/api/jobs/", headers={ASSERTION: mint(), **PASS})).status == 200
    key_server[0].fail = True
    store = proxy.server.app[PROXY].iap.store
    assert await store.refresh() is False and await store.refresh() is False
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "ray_iap_proxy.keys"
    ]
    assert len(warnings) == 2 and all("keeping 1 cached key(s)" in w for w in warnings)
    m = await metrics(proxy)
    assert m[f"ray_iap_proxy_key_set_loaded{IAP}"] == 1
    assert m[f"ray_iap_proxy_key_set_fetch_failures_total{IAP}"] == 2
    assert m[f"ray_iap_proxy_key_set_age_seconds{IAP}"] >= 0
    # identities never seen before still verify with the keys held
    for who in ("carol@example.com", "ci@p.iam.gserviceaccount.com"):
        assert (await proxy.get("/api/jobs/", headers={ASSERTION: mint(who), **PASS})).status == 200
    assert (await proxy.get("/readyz")).status == 200  # keys held: still ready
    assert len(ray.hits) == 3 and ray.probes == 1


async def test_kid_flood_during_an_outage_costs_at_most_one_fetch(
    key_server: Any, make_proxy: Any, ray: RayDouble, mint: Any
) -> None:
    proxy = await make_proxy()
    key_server[0].fail = True
    before = key_server[0].fetches
    for i in range(40):
        stranger = ec.generate_private_key(ec.SECP256R1())
        r = await proxy.get("/api/jobs/", headers={ASSERTION: mint(key=stranger, headers={"kid": f"k{i}"})})
        assert r.status == 401
    assert key_server[0].fetches - before <= 1
    assert ray.hits == []


async def test_rotation_new_key_in_old_key_out(
    key_server: Any, make_proxy: Any, ray: RayDouble, mint: Any, signing_key: Any
) -> None:
    proxy = await make_proxy()
    old_token = mint()
    assert (await proxy.get("/api/jobs/", headers={ASSERTION: old_token, **PASS})).status == 200
    new_key = ec.generate_private_key(ec.SECP256R1())
    key_server[0].keys = [signing_key, new_key]  # Google publishes the next key before using it
    new_token = mint(key=new_key)
    assert (await proxy.get("/api/jobs/", headers={ASSERTION: new_token, **PASS})).status == 200
    key_server[0].keys = [new_key]  # ...and withdraws the old one later
    assert await proxy.server.app[PROXY].iap.store.refresh()
    assert (await proxy.get("/api/jobs/", headers={ASSERTION: old_token})).status == 401  # even if cached
    assert (await proxy.get("/api/jobs/", headers={ASSERTION: new_token, **PASS})).status == 200
    assert len(ray.hits) == 3


async def test_metrics_are_not_served_on_the_public_listener(proxy: Any, ray: RayDouble, mint: Any) -> None:
    for headers in ({}, {ASSERTION: mint()}):
        r = await proxy.get("/metrics", headers=headers)
        assert r.status in (401, 403)
    assert ray.hits == []
