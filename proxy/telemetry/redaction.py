"""Redaction of secrets at the logging layer: a second line of defence, since nothing should log them in
the first place. Applied to every access record as it is built and, by a filter, to every other log
record, traceback included."""

from __future__ import annotations

import logging
import re

# A JWS (three base64url parts, the first starting like a JSON header), bearer credentials, and
# credential cookies. A second line of defence: nothing should log them in the first place.
_SECRETS = re.compile(
    r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]+"
    r"|(?i:ray-authentication-token|GCP_IAP_[A-Z_]*|__Host-GCP_IAP_[A-Z_0-9]*)=[^;\s\"]+"
)


_MARKERS = ("eyj", "bearer", "ray-authentication-token", "gcp_iap_")


def redact(text: str) -> str:
    low = text.lower()  # a cheap look first: most lines hold none of the markers
    if not any(marker in low for marker in _MARKERS):
        return text
    return _SECRETS.sub("[redacted]", text)


class RedactingFilter(logging.Filter):
    """Redacts the message and any traceback: an exception's text can quote a raw request."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
