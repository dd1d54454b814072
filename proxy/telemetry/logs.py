"""Where logs go: application logs to stderr, access records (JSON lines) to stdout, both redacted."""

from __future__ import annotations

import logging
import sys

from .redaction import RedactingFilter

ACCESS_LOGGER = "ray_iap_proxy.access"
access_log = logging.getLogger(ACCESS_LOGGER)


def setup_logging(level: int = logging.INFO) -> None:
    """App logs to stderr, access records (JSON lines) to stdout; both redacted (access records by
    `Telemetry.record`, everything else by the handler's filter)."""
    redactor = RedactingFilter()
    app = logging.StreamHandler(sys.stderr)
    app.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    app.addFilter(redactor)
    root = logging.getLogger()
    root.handlers[:] = [app]
    root.setLevel(level)
    out = logging.StreamHandler(sys.stdout)
    out.setFormatter(logging.Formatter("%(message)s"))  # records are redacted as they are built
    access_log.handlers[:] = [out]
    access_log.propagate = False
    access_log.setLevel(logging.INFO)
