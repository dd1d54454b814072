"""Where spans go (`tracing:`) and what the access record believes about its client (`access_log:`)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import BeforeValidator, WithJsonSchema

from .base import Int, Section, Str, invalid, setting


class Tracing(Section):
    """Spans: where they go. The exporter's endpoint, protocol and sampling come from the standard
    `OTEL_*` environment variables ([security teams](security-teams.md#traces))."""

    exporter: Literal["none", "console", "otlp"] | None = setting(
        None,
        "`otlp` (to `OTEL_EXPORTER_OTLP_ENDPOINT`, over `OTEL_EXPORTER_OTLP_PROTOCOL` `http/protobuf` or "
        "`grpc`), `console` (spans printed to stderr) or `none`. Off costs nothing; trace ids from the "
        "caller's `traceparent` or `X-Cloud-Trace-Context` are in every access record either way.",
        shown="$OTEL_TRACES_EXPORTER or none",
    )


def _network(value: object) -> object:
    if not isinstance(value, str):
        raise invalid("must be a string")
    try:
        return ipaddress.ip_network(value.strip(), strict=True)
    except ValueError:
        raise invalid("must be an IP network such as 35.191.0.0/16 (host bits zero) or one address") from None


Network = Annotated[
    ipaddress.IPv4Network | ipaddress.IPv6Network,
    BeforeValidator(_network),
    WithJsonSchema({"type": "string", "description": "an IP network, e.g. 35.191.0.0/16"}),
]


class AccessLog(Section):
    """The access record: its trace links and which client address it believes."""

    project_id: Str = setting(
        "auto",
        "the Google Cloud project in `logging.googleapis.com/trace` (`projects/PROJECT/traces/ID`). "
        "`auto`: asked once at start-up from the metadata server (`$GCE_METADATA_HOST`, else "
        "`metadata.google.internal`) when running on Kubernetes or when `GCE_METADATA_HOST` is set; "
        '`""`: no trace links.',
    )
    trusted_proxies: tuple[Network, ...] = setting(
        (),
        "networks of the hops whose `X-Forwarded-For` is believed for `httpRequest.remoteIp`. Behind "
        "Google's load balancer: its front ends `130.211.0.0/22` and `35.191.0.0/16`, with "
        "`forwarded_for_per_hop: 2`. Empty: the TCP peer is the client.",
    )
    forwarded_for_per_hop: Int = setting(
        1,
        "how many addresses each trusted hop appends to `X-Forwarded-For`, its client's first: 2 behind "
        "Google's load balancer (`client, forwarding-rule-address`), 1 for most proxies.",
        low=1,
        high=4,
    )
