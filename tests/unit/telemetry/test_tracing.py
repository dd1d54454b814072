"""The caller's trace context, parsed by hand (no span object when tracing is off): W3C `traceparent`
first, Google's `X-Cloud-Trace-Context` (decimal span id) otherwise; which exporters the environment
asks for."""

from __future__ import annotations

import pytest

from proxy.errors import ConfigError
from proxy.telemetry.tracing import Incoming, exporter_names, incoming, parse_cloud_trace, parse_traceparent

T = "0af7651916cd43dd8448eb211c80319c"


@pytest.mark.parametrize(
    "value, expected",
    [
        (f"00-{T}-b7ad6b7169203331-01", Incoming(T, "b7ad6b7169203331", True)),
        (f"00-{T}-b7ad6b7169203331-00", Incoming(T, "b7ad6b7169203331", False)),
        (f" 00-{T}-b7ad6b7169203331-03 ", Incoming(T, "b7ad6b7169203331", True)),  # other flags kept out
        (f"01-{T}-b7ad6b7169203331-01-future", Incoming(T, "b7ad6b7169203331", True)),  # a later version
        (f"00-{T}-b7ad6b7169203331-01-extra", None),  # version 00 has exactly four fields
        (f"ff-{T}-b7ad6b7169203331-01", None),  # version ff is invalid
        (f"00-{'0' * 32}-b7ad6b7169203331-01", None),  # all-zero trace id
        (f"00-{T}-{'0' * 16}-01", None),  # all-zero span id
        (f"00-{T.upper()}-b7ad6b7169203331-01", None),  # upper-case hex is not W3C
        (f"00-{T}-b7ad6b716920333-01", None),
        ("garbage", None),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_traceparent(value: str, expected: Incoming | None) -> None:
    assert parse_traceparent(value) == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        (f"{T}/12345;o=1", Incoming(T, f"{12345:016x}", True)),  # DECIMAL span id
        (f"{T}/12345;o=0", Incoming(T, "0000000000003039", False)),
        (f"{T}/12345", Incoming(T, "0000000000003039", False)),
        (f"{T.upper()}/18446744073709551615;o=1", Incoming(T, "ffffffffffffffff", True)),
        (f"{T}/18446744073709551616;o=1", None),  # over 64 bits
        (f"{T}/0;o=1", None),
        (f"{T}/b7ad6b7169203331;o=1", None),  # hex is not what Google sends
        (f"{'0' * 32}/5;o=1", None),
        ("abc/5;o=1", None),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_cloud_trace_context(value: str, expected: Incoming | None) -> None:
    assert parse_cloud_trace(value) == expected


def test_w3c_wins_and_a_bad_one_falls_back_to_google() -> None:
    both = {"traceparent": f"00-{T}-b7ad6b7169203331-01", "X-Cloud-Trace-Context": f"{'1' * 32}/5;o=1"}
    assert incoming(both) == Incoming(T, "b7ad6b7169203331", True)
    bad = {**both, "traceparent": "nonsense"}
    assert incoming(bad) == Incoming("1" * 32, "0000000000000005", True)
    state = {"traceparent": f"00-{T}-b7ad6b7169203331-01", "tracestate": "gcp=1"}
    assert incoming(state) == Incoming(T, "b7ad6b7169203331", True, "gcp=1")
    assert incoming({}) is None
    assert Incoming(T, "b7ad6b7169203331", False).traceparent == f"00-{T}-b7ad6b7169203331-00"


@pytest.mark.parametrize(
    "configured, env, expected",
    [
        (None, {}, ()),
        (None, {"OTEL_TRACES_EXPORTER": "otlp"}, ("otlp",)),
        (None, {"OTEL_TRACES_EXPORTER": "otlp, console"}, ("otlp", "console")),
        (None, {"OTEL_TRACES_EXPORTER": "none"}, ()),
        ("console", {"OTEL_TRACES_EXPORTER": "otlp"}, ("console",)),  # the config wins
        ("none", {"OTEL_TRACES_EXPORTER": "otlp"}, ()),
        ("otlp", {"OTEL_SDK_DISABLED": "true"}, ()),
    ],
)
def test_exporters(configured: str | None, env: dict[str, str], expected: tuple[str, ...]) -> None:
    assert exporter_names(configured, env) == expected


def test_an_unknown_exporter_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        exporter_names(None, {"OTEL_TRACES_EXPORTER": "zipkin"})
    assert err.value.problems == ["OTEL_TRACES_EXPORTER: 'zipkin' must be otlp, console or none"]
