"""`/metrics` (Prometheus, through `prometheus_client`) on a listener of its own (`metrics_listen`),
never on the public one.

Each application has its own `CollectorRegistry` (never the global one), so a process can hold
several apps (the tests do). Per-request counts and histograms are plain numbers updated as requests
finish (`RequestMetrics`: prometheus_client's own Counter and Histogram cost a lock and a label lookup
each, several µs per request); the states (key sets, connections, policy sources) are read at scrape
time by `StateCollector` from the objects that own them. prometheus_client writes the exposition.

What it never shows: identities, paths, tenants' names, tokens. Every label takes values from a
small fixed set (verbs, decisions, statuses, kinds, provider and source names).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

if TYPE_CHECKING:
    pass

P = "ray_iap_proxy_"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class Histogram:
    """A histogram kept as plain numbers (one bisect and two additions per observation, no lock: the
    event loop is the only writer, and scrapes run on it too); exposed by `RequestMetrics.collect`."""

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            total += count
            out.append((bound, float(total)))
        return out


class RequestMetrics:
    """What is counted as requests finish, as plain dictionaries and numbers (a request costs a dict
    increment and a bisect), exposed through prometheus_client at scrape time."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str, str], int] = {}
        self.durations: dict[str, Histogram] = {}
        self.upstream_seconds = Histogram()
        self.upstream_errors: dict[str, int] = {}
        self.open_websockets = 0
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def request(
        self, transport: str, verb: str | None, decision: str, status: int | str, seconds: float
    ) -> None:
        key = (transport, verb or "none", decision, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        timer = self.durations.get(transport)
        if timer is None:
            timer = self.durations[transport] = Histogram()
        timer.observe(seconds)

    def upstream_error(self, kind: str) -> None:
        kind = kind.removeprefix("upstream_")
        self.upstream_errors[kind] = self.upstream_errors.get(kind, 0) + 1

    def requests_total(self) -> float:
        """All requests counted so far (for tests and the bench)."""
        return float(sum(self.requests.values()))

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            P + "requests",
            "Requests, WebSocket sessions and gRPC calls answered, by verb, decision and status.",
            labels=["transport", "verb", "decision", "status"],
        )
        for key, count in sorted(self.requests.items()):
            requests.add_metric(list(key), count)
        yield requests
        seconds = HistogramMetricFamily(
            P + "request_duration_seconds",
            "Time from the first byte read to the record (a session's duration for WebSocket, gRPC).",
            labels=["transport"],
        )
        for transport, histogram in sorted(self.durations.items()):
            seconds.add_metric([transport], histogram.buckets(), histogram.sum)
        yield seconds
        upstream = HistogramMetricFamily(
            P + "upstream_duration_seconds",
            "Time of the HTTP exchange with Ray, answer streamed to the client included.",
        )
        upstream.add_metric([], self.upstream_seconds.buckets(), self.upstream_seconds.sum)
        yield upstream
        errors = CounterMetricFamily(
            P + "upstream_errors",
            "Failures talking to Ray, by kind (unreachable, timeout, failed, refused, mid_response).",
            labels=["kind"],
        )
        for kind, count in sorted(self.upstream_errors.items()):
            errors.add_metric([kind], count)
        yield errors
        yield gauge("open_websockets", "WebSocket sessions relayed now.", self.open_websockets)


def gauge(name: str, text: str, value: float, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(P + name, text, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


class _Scrape:
    def __init__(self, *collectors: Any) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


def metrics_app(proxy_app: web.Application, proxy_runner: web.BaseRunner) -> web.Application:
    """The application behind `metrics_listen`: GET /metrics, nothing else."""
    from ..http.pipeline import PROXY
    from .state import StateCollector

    state = StateCollector(proxy_app, proxy_runner)

    async def metrics(request: web.Request) -> web.Response:
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        registry = proxy_app[PROXY].telemetry.metrics.registry if PROXY in proxy_app else CollectorRegistry()
        body = encode(_Scrape(registry, state))
        return web.Response(body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
