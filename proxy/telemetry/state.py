"""The states /metrics shows, read at scrape time from the objects that own them: the proxy and its
listener, each signed-token provider's key set and token cache, and the policy sources' counters.
Nothing here is updated per request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .metrics import P, gauge

if TYPE_CHECKING:
    from ..http.pipeline import Proxy


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
        yield gauge("in_flight_requests", "Requests and streams being served.", len(proxy.inflight))
        yield gauge("open_connections", "Client connections open.", len(server.connections) if server else 0)
        yield gauge("open_grpc_calls", "gRPC calls (Ray Client streams) relayed now.", telemetry.grpc_open())
        yield gauge("draining", "1 once shutdown has begun.", 1 if proxy.draining else 0)
        refused = CounterMetricFamily(P + "refused_connections", "Connections refused over max_connections.")
        refused.add_metric([], telemetry.connections_refused)
        yield refused
        yield from _key_sets(proxy)
        yield from _sources(self.app, proxy)
        lost = CounterMetricFamily(P + "access_records_lost", "Access records that could not be written.")
        lost.add_metric([], telemetry.writer.failures)
        yield lost


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
