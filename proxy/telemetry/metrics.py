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
    from ..http.pipeline import Proxy

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
        yield _gauge("open_websockets", "WebSocket sessions relayed now.", self.open_websockets)


class StateCollector:
    """States read at scrape time from their owners: the proxy, its listener, key sets, sources."""

    def __init__(self, proxy_app: web.Application, runner: web.BaseRunner) -> None:
        self.app, self.runner = proxy_app, runner

    def collect(self) -> Iterator[Metric]:
        from ..http.pipeline import PROXY

        if PROXY not in self.app:
            return
        proxy: Proxy = self.app[PROXY]
        telemetry = proxy.telemetry
        server = self.runner.server
        yield _gauge("in_flight_requests", "Requests and streams being served.", len(proxy.inflight))
        yield _gauge("open_connections", "Client connections open.", len(server.connections) if server else 0)
        yield _gauge("open_grpc_calls", "gRPC calls (Ray Client streams) relayed now.", telemetry.grpc_open())
        yield _gauge("draining", "1 once shutdown has begun.", 1 if proxy.draining else 0)
        refused = CounterMetricFamily(P + "refused_connections", "Connections refused over max_connections.")
        refused.add_metric([], telemetry.connections_refused)
        yield refused
        yield from _key_sets(proxy)
        yield from _sources(self.app, proxy)
        lost = CounterMetricFamily(P + "access_records_lost", "Access records that could not be written.")
        lost.add_metric([], telemetry.writer.failures)
        yield lost


def _gauge(name: str, text: str, value: float, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(P + name, text, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


def _key_sets(proxy: Proxy) -> Iterator[Metric]:
    """Per signed-token provider (`iap`, `google_id_token`): is a key set held, its age, its fetches."""
    loaded = GaugeMetricFamily(
        P + "key_set_loaded",
        "1 when a key set is held; 0: that credential fails closed.",
        labels=["provider"],
    )
    age = GaugeMetricFamily(
        P + "key_set_age_seconds", "Seconds since the key set was fetched (-1: never).", labels=["provider"]
    )
    fetches = CounterMetricFamily(P + "key_set_fetches", "Key set fetches attempted.", labels=["provider"])
    failures = CounterMetricFamily(
        P + "key_set_fetch_failures", "Key set fetches that failed (old keys kept).", labels=["provider"]
    )
    hits = CounterMetricFamily(
        P + "token_cache_hits", "Tokens found in the verified-token cache.", labels=["provider"]
    )
    misses = CounterMetricFamily(P + "token_cache_misses", "Tokens verified afresh.", labels=["provider"])
    for provider in proxy.authenticator.providers:
        store = getattr(provider, "store", None)
        if store is None:
            continue
        name = [str(getattr(provider, "kind", "unknown"))]
        since = store.seconds_since_load()
        loaded.add_metric(name, 1 if store.ready else 0)
        age.add_metric(name, -1 if since is None else round(since, 3))
        fetches.add_metric(name, store.fetches)
        failures.add_metric(name, store.failures)
        hits.add_metric(name, getattr(provider, "hits", 0))
        misses.add_metric(name, getattr(provider, "misses", 0))
    yield from (loaded, age, fetches, failures, hits, misses)


# What the policy sources expose as plain attributes (proxy/authz/sources/), read at scrape time:
# the watched policy file's `reloads` and `reload_failures`; a remote source's requests (`reviews`
# for SubjectAccessReview, `calls` for Cloud Identity), its `health.failures`, and its caches' `hits`
# and `misses` (`lookups`, `names`, `members`).
_CACHES = ("lookups", "names", "members")


def _int(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _sources(app: web.Application, proxy: Proxy) -> Iterator[Metric]:
    from ..app import SOURCES

    sources: list[Any] = list(getattr(getattr(proxy.admission, "authorizer", None), "sources", ()))
    directory = app[SOURCES].directory if SOURCES in app else None
    if directory is not None:
        sources.append(directory)
    source = ["source"]
    reloads = CounterMetricFamily(
        P + "policy_reloads", "Policy file versions taken after the first.", labels=source
    )
    refused = CounterMetricFamily(
        P + "policy_reload_failures", "Policy file versions refused (the last good one kept).", labels=source
    )
    calls = CounterMetricFamily(
        P + "policy_source_requests",
        "Requests a remote policy source made (reviews, API calls).",
        labels=source,
    )
    errors = CounterMetricFamily(
        P + "policy_source_errors",
        "Failed requests of a remote policy source (it granted nothing).",
        labels=source,
    )
    hits = CounterMetricFamily(
        P + "policy_cache_hits", "Answers from a policy source's cache.", labels=["source", "cache"]
    )
    misses = CounterMetricFamily(
        P + "policy_cache_misses", "Lookups a policy source's cache started.", labels=["source", "cache"]
    )
    for s in sources:
        name = str(getattr(s, "name", "") or "cloud-identity")
        for family, value in (
            (reloads, getattr(s, "reloads", None)),
            (refused, getattr(s, "reload_failures", None)),
            (calls, getattr(s, "reviews", getattr(s, "calls", None))),
            (errors, getattr(getattr(s, "health", None), "failures", None)),
        ):
            if (number := _int(value)) is not None:
                family.add_metric([name], number)
        for cache_name in _CACHES:
            cache = getattr(s, cache_name, None)
            if (h := _int(getattr(cache, "hits", None))) is not None:
                hits.add_metric([name, cache_name], h)
                misses.add_metric([name, cache_name], _int(getattr(cache, "misses", 0)) or 0)
    yield from (reloads, refused, calls, errors, hits, misses)


class _Scrape:
    def __init__(self, *collectors: Any) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


def metrics_app(proxy_app: web.Application, proxy_runner: web.BaseRunner) -> web.Application:
    """The application behind `metrics_listen`: GET /metrics, nothing else."""
    from ..http.pipeline import PROXY

    state = StateCollector(proxy_app, proxy_runner)

    async def metrics(request: web.Request) -> web.Response:
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        registry = proxy_app[PROXY].telemetry.metrics.registry if PROXY in proxy_app else CollectorRegistry()
        body = encode(_Scrape(registry, state))
        return web.Response(body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
