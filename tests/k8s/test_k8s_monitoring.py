"""The monitoring the manifests ship: the Rules object for Managed Prometheus parses as PromQL (the
`promql-parser` package, Prometheus' own grammar), and every series and label it names is one the
proxy exports (scraped from a real app after real traffic) or one Managed Prometheus adds itself."""

from __future__ import annotations

import re
from typing import Any

import promql_parser
import pytest
from aiohttp.test_utils import TestClient, TestServer
from k8s_render import Rendered

from devkit.ray_double import ASSERTION
from devkit.records import AccessRecords
from proxy.telemetry.metrics import metrics_app

TARGET_LABELS = {"namespace", "pod", "container", "job", "instance", "cluster", "location", "project_id"}
DURATION = re.compile(r"^\d+[smhd]$")


def _walk(node: Any) -> Any:
    yield node
    for name in ("lhs", "rhs", "expr", "vector_selector", "param"):
        child = getattr(node, name, None)
        if child is not None and not isinstance(child, int | float | str):
            yield from _walk(child)
    for child in getattr(node, "args", None) or ():
        yield from _walk(child)


def selectors_and_labels(expr: str) -> tuple[set[str], dict[str, set[str]], set[str]]:
    """(series names, labels matched per series, labels aggregated by) of one expression."""
    names: set[str] = set()
    matched: dict[str, set[str]] = {}
    grouped: set[str] = set()
    for node in _walk(promql_parser.parse(expr)):
        if isinstance(node, promql_parser.VectorSelector):
            names.add(node.name)
            matched.setdefault(node.name, set()).update(m.name for m in node.matchers.matchers)
        modifier = getattr(node, "modifier", None)
        if isinstance(node, promql_parser.AggregateExpr) and modifier is not None:
            grouped.update(modifier.labels)
    return names, matched, grouped


async def exported(make_client: Any, mint: Any) -> dict[str, set[str]]:
    """Series name -> its label names, from a real proxy's /metrics after some traffic."""
    proxy: TestClient = await make_client(access_log=AccessRecords())
    await proxy.get("/api/version", headers={ASSERTION: mint()})
    await proxy.get("/api/version")
    client = TestClient(TestServer(metrics_app(proxy.server.app, proxy.server.runner)))
    await client.start_server()
    try:
        text = await (await client.get("/metrics")).text()
    finally:
        await client.close()
    series: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            series.setdefault(name, set())
        elif line and not line.startswith("#"):
            m = re.match(r"^(\w+)(?:\{(.*)\})? ", line)
            assert m is not None, line
            series.setdefault(m[1], set()).update(re.findall(r'(\w+)="', m[2] or ""))
    return series


def test_rules_object_shape(overlay: Rendered) -> None:
    (rules,) = overlay.of_kind("Rules")
    assert rules["apiVersion"] == "monitoring.googleapis.com/v1"
    (group,) = rules["spec"]["groups"]
    assert DURATION.match(group["interval"])
    alerts = {r["alert"] for r in group["rules"] if "alert" in r}
    assert {"RayIapProxyDenialsSpike", "RayIapProxyKeySetStale", "RayIapProxyUpstreamErrors"} <= alerts
    for rule in group["rules"]:
        assert ("record" in rule) != ("alert" in rule), rule
        if "alert" in rule:
            assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"]
            assert "for" not in rule or DURATION.match(rule["for"])
        else:
            assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", rule["record"])  # level:metric:operations


async def test_rules_name_only_what_the_proxy_exports(overlay: Rendered, make_client: Any, mint: Any) -> None:
    (rules,) = overlay.of_kind("Rules")
    (group,) = rules["spec"]["groups"]
    series = await exported(make_client, mint)
    assert "ray_iap_proxy_requests_total" in series and "ray_iap_proxy_key_set_age_seconds" in series
    recorded: dict[str, set[str]] = {}
    for rule in group["rules"]:  # in order: a recorded series is defined before it is used
        names, matched, grouped = selectors_and_labels(rule["expr"])
        for name in names:
            known = series.get(name, recorded.get(name))
            assert known is not None, f"{rule.get('record') or rule['alert']}: {name} is not exported"
            unknown = matched[name] - known - TARGET_LABELS
            assert not unknown, f"{name} has no label {unknown}"
        if "record" in rule:
            recorded[rule["record"]] = grouped | TARGET_LABELS


def test_the_check_catches_a_typo() -> None:
    with pytest.raises(ValueError):
        promql_parser.parse("sum by (namespace (rate(ray_iap_proxy_requests_total[5m]))")
    names, matched, grouped = selectors_and_labels(
        'sum by (namespace) (rate(ray_iap_proxy_request_total{decison="deny"}[5m]))'
    )
    assert names == {"ray_iap_proxy_request_total"} and matched[next(iter(names))] == {"decison"}
    assert grouped == {"namespace"}


def test_the_client_address_is_believed_from_googles_front_ends_only(overlay: Rendered) -> None:
    import yaml

    (configmap,) = overlay.of_kind("ConfigMap")
    config = yaml.safe_load(configmap["data"]["config.yaml"])
    # https://cloud.google.com/load-balancing/docs/https#x-forwarded-for_header: `client, forwarding rule`
    assert config["access_log"] == {
        "trusted_proxies": ["130.211.0.0/22", "35.191.0.0/16"],
        "forwarded_for_per_hop": 2,
    }
