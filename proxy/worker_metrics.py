"""`metrics_listen` for a supervisor of workers: each scrape asks every worker for its metrics (over
a Unix socket of its own) and answers them as one exposition, every sample labelled with its
`worker`, so that sums and rates across workers are the scraper's `sum by`. A worker that does not
answer is left out of that scrape, and `ray_iap_proxy_workers_scraped` says how many did."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

SCRAPE_TIMEOUT_SECONDS = 5.0


class _Merged:
    def __init__(self, texts: Sequence[str | None]) -> None:
        self.texts = texts

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for index, text in enumerate(self.texts):
            if text is None:
                continue
            for family in text_string_to_metric_families(text):
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type, family.unit)
                )
                for sample in family.samples:
                    labels = {**sample.labels, "worker": str(index)}
                    merged.add_sample(sample.name, labels, sample.value, sample.timestamp, sample.exemplar)
        yield from families.values()
        scraped = GaugeMetricFamily(
            "ray_iap_proxy_workers_scraped", "workers whose metrics are in this answer"
        )
        scraped.add_metric([], sum(t is not None for t in self.texts))
        yield scraped


async def _scrape(socket_path: str) -> str | None:
    try:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=socket_path)) as session:
            async with session.get(
                "http://worker/metrics", timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_SECONDS)
            ) as r:
                return await r.text() if r.status == 200 else None
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None


async def serve_merged(address: tuple[str, int], sockets: Sequence[str]) -> web.AppRunner:
    """Serve the merged `/metrics` on `address` until the returned runner is cleaned up."""

    async def metrics(_request: web.Request) -> web.Response:
        texts = await asyncio.gather(*(_scrape(path) for path in sockets))
        registry = CollectorRegistry()
        registry.register(_Merged(texts))
        return web.Response(
            body=generate_latest(registry),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8", "Cache-Control": "no-store"},
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, address[0], address[1]).start()
    return runner
