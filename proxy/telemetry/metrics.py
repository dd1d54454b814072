"""`/metrics` on a listener of its own (`metrics_listen`), never on the public one.

What it shows: request counts by decision and status, connections, and the health of the IAP key set
(so that an outage of Google's key endpoint raises an alarm while the proxy keeps verifying with the
keys it holds). What it never shows: identities, paths, tenants' names, tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ..http.pipeline import Proxy

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    kind: str  # "counter" or "gauge"
    help: str
    samples: tuple[tuple[Mapping[str, str], float], ...]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus_text(metrics: Iterable[Metric]) -> str:
    """Prometheus' text exposition format (version 0.0.4)."""
    lines: list[str] = []
    for m in metrics:
        lines += [f"# HELP {m.name} {m.help}", f"# TYPE {m.name} {m.kind}"]
        for labels, value in m.samples:
            text = ",".join(f'{k}="{_label(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{m.name}{{{text}}} {_number(value)}" if text else f"{m.name} {_number(value)}")
    return "\n".join(lines) + "\n"


def collect(proxy: Proxy, open_connections: int) -> list[Metric]:
    verifier = proxy.iap
    store, telemetry = verifier.store, proxy.telemetry
    requests = []
    for key, count in sorted(telemetry.counts.items()):
        decision, _, status = key.partition(" ")
        requests.append(({"decision": decision, "status": status}, float(count)))
    age = store.seconds_since_load()

    def one(name: str, kind: str, text: str, value: float) -> Metric:
        return Metric(f"ray_iap_proxy_{name}", kind, text, (({}, value),))

    return [
        Metric(
            "ray_iap_proxy_requests_total",
            "counter",
            "Requests answered, by decision and status.",
            tuple(requests),
        ),
        one("in_flight_requests", "gauge", "Requests and streams being served.", len(proxy.inflight)),
        one("open_connections", "gauge", "Client connections open.", open_connections),
        one(
            "refused_connections_total",
            "counter",
            "Connections refused over limits.max_connections.",
            telemetry.connections_refused,
        ),
        one("draining", "gauge", "1 once shutdown has begun.", 1 if proxy.draining else 0),
        one(
            "key_set_loaded",
            "gauge",
            "1 when an IAP key set is held; 0: every request fails closed.",
            1 if store.ready else 0,
        ),
        one(
            "key_set_age_seconds",
            "gauge",
            "Seconds since the key set was last fetched (-1: never).",
            -1 if age is None else round(age, 3),
        ),
        one("key_set_fetches_total", "counter", "Key set fetches attempted.", store.fetches),
        one(
            "key_set_fetch_failures_total",
            "counter",
            "Key set fetches that failed (old keys kept).",
            store.failures,
        ),
        one("token_cache_hits_total", "counter", "Assertions found in the token cache.", verifier.hits),
        one("token_cache_misses_total", "counter", "Assertions verified afresh.", verifier.misses),
    ]


def metrics_app(proxy_app: web.Application, proxy_runner: web.BaseRunner) -> web.Application:
    """The application behind `metrics_listen`: GET /metrics, nothing else."""

    from ..http.pipeline import PROXY

    async def metrics(_request: web.Request) -> web.Response:
        server = proxy_runner.server
        connections = len(server.connections) if server is not None else 0
        body = prometheus_text(collect(proxy_app[PROXY], connections))
        return web.Response(
            body=body.encode(), headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"}
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
