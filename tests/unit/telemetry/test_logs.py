"""Application logs: JSON lines in Cloud Logging's structured form (severity, message, RFC 3339 time,
the logger), or text on a terminal; the redacting filter on every root handler, so every logger of
the tree is cleaned, tracebacks included."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from proxy.telemetry.logs import guard_handlers, resolve, setup_logging
from proxy.telemetry.redaction import RedactingFilter

JWS = "eyJhbGciOiJFUzI1NiJ9.eyJlbWFpbCI6ImEifQ.c2lnbmF0dXJlLXNlY3JldA"


@pytest.fixture(autouse=True)
def _restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_lines_for_cloud_logging() -> None:
    out = io.StringIO()
    setup_logging(logging.DEBUG, "json", out)
    logging.getLogger("ray_iap_proxy").info("listening on %s", "0.0.0.0:8265")
    logging.getLogger("ray_iap_proxy.keys").warning("key set refresh failed")
    try:
        raise ValueError(f"Invalid header: b'x-goog-iap-jwt-assertion: {JWS}'")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request")
    logging.getLogger("ray_iap_proxy.verify").debug("wrong audience: received %r", "/projects/1/apps/x")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["severity"], r["logger"]) for r in lines] == [
        ("INFO", "ray_iap_proxy"),
        ("WARNING", "ray_iap_proxy.keys"),
        ("ERROR", "aiohttp.server"),
        ("DEBUG", "ray_iap_proxy.verify"),
    ]
    assert lines[0]["message"] == "listening on 0.0.0.0:8265"
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["time"]) for r in lines)
    assert set(lines[0]) == {"severity", "time", "message", "logger"}
    assert "Traceback" in lines[2]["message"] and "ValueError" in lines[2]["message"]  # for Error Reporting
    assert "c2lnbmF0dXJlLXNlY3JldA" not in out.getvalue()  # the traceback is redacted too


def test_auto_is_text_on_a_terminal_json_elsewhere() -> None:
    assert resolve("auto", Tty()) == "text" and resolve("auto", io.StringIO()) == "json"
    assert resolve("text", io.StringIO()) == "text" and resolve("json", Tty()) == "json"
    out = Tty()
    setup_logging(logging.INFO, "auto", out)
    logging.getLogger("ray_iap_proxy").warning("token %s", JWS)
    line = out.getvalue()
    assert " WARNING ray_iap_proxy: token [redacted]" in line and not line.startswith("{")


def test_every_root_handler_gets_the_filter_once() -> None:
    setup_logging(logging.INFO, "text", io.StringIO())
    late = logging.StreamHandler(io.StringIO())  # added by a library after start-up
    logging.getLogger().addHandler(late)
    guard_handlers()
    guard_handlers()
    for handler in logging.getLogger().handlers:
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
