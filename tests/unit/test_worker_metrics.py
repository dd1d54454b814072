"""The supervisor's /metrics: every worker's families merged into one exposition, each sample with
its `worker` label; a worker that did not answer left out and counted."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from proxy.worker_metrics import _Merged

WORKER = """\
# HELP ray_iap_proxy_requests_total Requests.
# TYPE ray_iap_proxy_requests_total counter
ray_iap_proxy_requests_total{verb="view"} %d
# HELP ray_iap_proxy_request_seconds Latency.
# TYPE ray_iap_proxy_request_seconds histogram
ray_iap_proxy_request_seconds_bucket{le="0.1"} %d
ray_iap_proxy_request_seconds_bucket{le="+Inf"} %d
ray_iap_proxy_request_seconds_sum 0.5
ray_iap_proxy_request_seconds_count %d
"""


def merged(texts: list[str | None]) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    registry = CollectorRegistry()
    registry.register(_Merged(texts))
    text = generate_latest(registry).decode()
    assert text.count("# TYPE ray_iap_proxy_requests_total counter") == 1  # one family, not one per worker
    return {
        f.name: [(s.name, s.labels, s.value) for s in f.samples] for f in text_string_to_metric_families(text)
    }


def test_every_sample_is_labelled_with_its_worker() -> None:
    families = merged([WORKER % (3, 1, 3, 3), None, WORKER % (5, 2, 5, 5)])
    assert families["ray_iap_proxy_requests"] == [
        ("ray_iap_proxy_requests_total", {"verb": "view", "worker": "0"}, 3.0),
        ("ray_iap_proxy_requests_total", {"verb": "view", "worker": "2"}, 5.0),
    ]
    buckets = [s for s in families["ray_iap_proxy_request_seconds"] if s[0].endswith("_bucket")]
    assert {(s[1]["le"], s[1]["worker"], s[2]) for s in buckets} == {
        ("0.1", "0", 1.0), ("+Inf", "0", 3.0), ("0.1", "2", 2.0), ("+Inf", "2", 5.0)
    }  # fmt: skip
    assert families["ray_iap_proxy_workers_scraped"] == [("ray_iap_proxy_workers_scraped", {}, 2.0)]
