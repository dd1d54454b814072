"""The /metrics application (prometheus_client, a registry per app) after real traffic, and the
no-secret rule over every output at once: access records, application logs, spans and metrics, for a
corpus of requests carrying credentials in every place a client can put them."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from devkit.ray_double import ASSERTION
from devkit.records import AccessRecords
from proxy.http.pipeline import PROXY
from proxy.telemetry.metrics import metrics_app

SAMPLE = re.compile(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


async def scrape(proxy: TestClient, accept: str = "") -> tuple[str, dict[str, float]]:
    client = TestClient(TestServer(metrics_app(proxy.server.app, proxy.server.runner)))
    await client.start_server()
    try:
        r = await client.get("/metrics", headers={"Accept": accept} if accept else {})
        assert r.status == 200
        content_type, text = r.headers["Content-Type"], await r.text()
    finally:
        await client.close()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            m = SAMPLE.match(line)
            assert m is not None, line
            samples[f"{m[1]}{{{m[2] or ''}}}"] = float(m[3])
    return content_type, samples


def key(name: str, **labels: str) -> str:
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


async def test_requests_latency_key_sets_and_sources(
    make_client: Any, mint: Any, access_records: AccessRecords
) -> None:
    proxy = await make_client(access_log=access_records)
    await proxy.get("/api/version", headers={ASSERTION: mint()})
    await proxy.get("/api/version", headers={ASSERTION: mint()})
    await proxy.post("/api/jobs/", headers={ASSERTION: mint("bob@example.com")}, data=b"{}")
    await proxy.get("/api/version")
    async with proxy.ws_connect("/api/jobs/raysubmit_1/logs/tail", headers={ASSERTION: mint()}) as ws:
        assert await ws.receive_str() == "log line 1"
        content_type, m = await scrape(proxy)
        assert m["ray_iap_proxy_open_websockets{}"] == 1
    assert content_type.startswith("text/plain; version=0.0.4")
    total = "ray_iap_proxy_requests_total"
    assert m[key(total, transport="http", verb="view", decision="allow", status="200")] == 2
    assert m[key(total, transport="http", verb="submit", decision="deny", status="403")] == 1
    assert m[key(total, transport="http", verb="none", decision="deny", status="401")] == 1
    assert m[key("ray_iap_proxy_request_duration_seconds_count", transport="http")] == 4
    assert m["ray_iap_proxy_upstream_duration_seconds_count{}"] == 2
    assert m[key("ray_iap_proxy_key_set_loaded", provider="iap")] == 1
    assert m[key("ray_iap_proxy_key_set_fetches_total", provider="iap")] >= 1
    assert m[key("ray_iap_proxy_token_cache_misses_total", provider="iap")] >= 1
    assert m[key("ray_iap_proxy_policy_reloads_total", source="static")] == 0  # the watched file
    assert m[key("ray_iap_proxy_policy_reload_failures_total", source="static")] == 0
    assert m["ray_iap_proxy_access_records_lost_total{}"] == 0 and m["ray_iap_proxy_draining{}"] == 0
    # OpenMetrics when the scraper asks for it
    content_type, _ = await scrape(proxy, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")


async def test_two_apps_in_one_process_count_apart(make_client: Any, mint: Any) -> None:
    one, two = await make_client(access_log=AccessRecords()), await make_client(access_log=AccessRecords())
    await one.get("/api/version", headers={ASSERTION: mint()})
    assert (await scrape(one))[1][
        key("ray_iap_proxy_requests_total", transport="http", verb="view", decision="allow", status="200")
    ] == 1
    assert not any(k.startswith("ray_iap_proxy_requests_total") for k in (await scrape(two))[1])


def _text(record: logging.LogRecord) -> str:
    text = logging.Formatter().format(record)
    return text + (record.exc_text or "")


async def test_no_token_in_records_logs_spans_or_metrics(
    make_client: Any, mint: Any, access_records: AccessRecords, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    proxy = await make_client(extra="tracing:\n  exporter: console\n", access_log=access_records)
    spans = InMemorySpanExporter()
    proxy.server.app[PROXY].telemetry.provider.add_span_processor(SimpleSpanProcessor(spans))
    alice, bob = mint(), mint("bob@example.com")
    wrong_audience = mint(audience="/projects/9/apps/x")
    corpus: list[tuple[str, str, dict[str, str]]] = [
        ("GET", "/api/version", {ASSERTION: alice}),
        ("GET", f"/api/version?token={alice}&x=Bearer%20{bob}", {ASSERTION: alice}),
        ("GET", f"/api/jobs/{bob}", {ASSERTION: alice}),  # a token as a path segment
        ("POST", "/api/jobs/", {ASSERTION: bob}),
        ("GET", "/api/version", {"Authorization": f"Bearer {alice}"}),
        ("GET", "/api/version", {"Cookie": f"GCP_IAP_UID={alice}; __Host-GCP_IAP_AUTH_TOKEN_1={bob}"}),
        ("GET", "/api/version", {"Cookie": f"ray-authentication-token={alice}"}),
        ("GET", "/api/version", {ASSERTION: alice, "User-Agent": f"evil {bob}"}),
        ("GET", "/api/version", {ASSERTION: alice, "X-Forwarded-For": f"{bob}, 10.0.0.1"}),
        ("GET", "/api/version", {ASSERTION: alice, "traceparent": f"00-{bob[:32]}"}),
        ("GET", "/api/version", {ASSERTION: wrong_audience}),
        ("GET", "/api/version", {ASSERTION: alice + "x"}),  # a broken signature
    ]
    for method, path, headers in corpus:
        await proxy.request(method, path, headers=headers, data=b"{}" if method == "POST" else None)
    _, metrics = await scrape(proxy)
    signatures = {t.rsplit(".", 1)[1] for t in (alice, bob, wrong_audience)}
    outputs = {
        "records": "\n".join(access_records.lines()),
        "logs": "\n".join(_text(r) for r in caplog.records if r.name != "aiohttp.access"),
        "spans": repr([(s.name, dict(s.attributes or {})) for s in spans.get_finished_spans()]),
        "metrics": "\n".join(metrics),
    }
    assert len(access_records.records()) == len(corpus)  # one record each: the checks below are real
    assert len(spans.get_finished_spans()) >= len(corpus)
    for where, text in outputs.items():
        for secret in signatures:
            assert secret not in text, where
        assert "eyJ" not in text, where
    for labels in metrics:  # no identity, path or tenant in any label
        assert "@" not in labels and "/api" not in labels and "team-a" not in labels, labels
