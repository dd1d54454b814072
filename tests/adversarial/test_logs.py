"""Logs: every request leaves exactly one access record saying who, what, the decision and why; no
token, cookie or signature appears in any log record (unfiltered: before the redacting filter), span,
or answer, whichever path the request takes: allowed, denied, unauthenticated, or refused by the
HTTP parser."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from devkit.config import AUDIENCE
from devkit.http import get_request, raw_http
from devkit.ray_double import ASSERTION, MAY_PASS, RayDouble
from devkit.records import AccessRecords
from proxy import dev
from proxy.http.pipeline import PROXY
from proxy.telemetry.redaction import RedactingFilter


def _text(record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info:
        text += logging.Formatter().formatException(record.exc_info)
    return text + (record.exc_text or "") + (record.stack_info or "")


async def test_one_record_per_request_and_no_secret_anywhere(
    make_proxy: Any,
    ray: RayDouble,
    signing_key: Any,
    caplog: pytest.LogCaptureFixture,
    access_records: AccessRecords,
) -> None:
    caplog.set_level(logging.DEBUG)
    # spans recorded, to be checked
    proxy = await make_proxy(extra="tracing:\n  exporter: console\n", access_log=access_records)
    spans = InMemorySpanExporter()
    proxy.server.app[PROXY].telemetry.provider.add_span_processor(SimpleSpanProcessor(spans))

    def token(email: str, **kw: Any) -> str:
        return dev.mint(signing_key, email, AUDIENCE, **kw)

    alice, bob, mallory = token("alice@example.com"), token("bob@example.com"), token("mallory@example.com")
    expired = token("alice@example.com", now=1_000_000_000)
    forged = alice.rsplit(".", 1)[0] + "." + token("carol@example.com").rsplit(".", 1)[1]
    mark = f"{MAY_PASS}: yes\r\n"
    requests = [
        get_request("/api/jobs/", alice, extra=mark),  # 200 allow
        get_request("/api/jobs/?token=" + alice, alice, extra=mark),  # 200, token in query
        get_request("/api/jobs/", bob, "POST", extra="Content-Length: 0\r\n"),  # 403 verb
        get_request("/api/jobs/", mallory),  # 403 tenant
        get_request("/api/jobs/", expired),  # 401 expired
        get_request("/api/jobs/", forged),  # 401 signature
        get_request("/api/jobs/", extra=f"Authorization: Bearer {alice}\r\n"),  # 401 none
        get_request(
            "/api/jobs/", extra=f"Cookie: GCP_IAP_UID={alice}; __Host-GCP_IAP_AUTH_TOKEN_1={bob}\r\n"
        ),  # 401 cookies
        get_request("/test/dump", alice),  # 403 internal
        get_request("/api/jobs/%2e%2e/x", alice),  # 400 target
        get_request("/api/jobs/", alice, extra=f"X Bad Header: {bob}\r\n"),  # 400 parser
        get_request("/api/jobs/", alice, extra=f"X-Big: {bob}" + "a" * 9000 + "\r\n"),  # 431 parser
        get_request("/api/jobs/?" + "a" * 4200 + alice, alice),  # 414 parser
        f"GET /api/jobs/ HTTP/1.1\nHost: x\n{ASSERTION}: {alice}\n\n".encode(),  # 400 bare LF
        get_request("/healthz"),  # 200 local
    ]
    answers = [await raw_http(proxy.port, r) for r in requests]
    statuses = [status for status, _ in answers]
    assert statuses == [200, 200, 403, 403, 401, 401, 401, 401, 403, 400, 400, 431, 414, 400, 200]

    records = access_records.records()
    assert [r["httpRequest"]["status"] for r in records] == statuses
    for record, (_, answer) in zip(records, answers, strict=True):
        # every answer carries the request id of its record, Ray's (allowed) answers included
        assert answer.split(b"X-Request-Id: ", 1)[1].startswith(record["request_id"].encode())
    for record in records:
        assert record["decision"] in ("allow", "deny", "local") and record["reason"]
    assert [r["principal"] for r in records[:4]] == ["alice@example.com"] * 2 + [
        "bob@example.com",
        "mallory@example.com",
    ]

    secrets = {t.rsplit(".", 1)[1] for t in (alice, bob, mallory, expired, forged)}
    logged = "\n".join(_text(r) for r in caplog.records if r.name != "aiohttp.access")  # that one is Ray's
    logged += "\n" + "\n".join(access_records.lines())
    traced = json.dumps([dict(s.attributes or {}) for s in spans.get_finished_spans()])
    # the proxy's own answers (Ray's double echoes what the client sent, its own token included)
    answered = b"".join(a for r, (_, a) in zip(records, answers, strict=True) if r["decision"] != "allow")
    answered = answered.decode("latin-1")
    finished = spans.get_finished_spans()
    # one server span per request (and a client span per call to Ray): the check below is real
    assert len([s for s in finished if s.kind is SpanKind.SERVER]) == len(records)
    assert len([s for s in finished if s.kind is SpanKind.CLIENT]) == 2
    for secret in secrets:
        assert secret not in logged
        assert secret not in traced
        assert secret not in answered
    assert "eyJ" not in traced and "eyJ" not in answered


def test_the_redacting_filter_also_cleans_tracebacks() -> None:
    """The second line of defence covers exception text too: aiohttp's parser errors quote raw bytes."""
    secret = "eyJhbGciOiJFUzI1NiJ9.eyJlbWFpbCI6ImEifQ.c2lnbmF0dXJlLXNlY3JldA"
    try:
        raise ValueError(f"Invalid header: b'x-goog-iap-jwt-assertion: {secret}' Cookie: GCP_IAP_UID=abc")
    except ValueError:
        record = logging.LogRecord(
            "aiohttp.server",
            logging.ERROR,
            __file__,
            1,
            "Error handling %s",
            ("request",),
            exc_info=__import__("sys").exc_info(),
        )
    RedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "Error handling request" in text and "ValueError" in text
    assert "c2lnbmF0dXJlLXNlY3JldA" not in text and "GCP_IAP_UID=abc" not in text
