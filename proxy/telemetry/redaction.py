"""Redaction of secrets at the logging layer: a second line of defence, since nothing should log them in
the first place. Applied to every access record as it is built and, by a filter, to every other log
record, traceback included."""

from __future__ import annotations

import logging
import re

# What authenticates someone, in every form it takes in a log line, a traceback or a repr:
# - a JWS (three base64url parts, the first starting like a JSON header);
# - a bearer credential;
# - a credential header with its value, as a header line, a dict entry or a query parameter
#   (`x-goog-iap-jwt-assertion: ...`, `'Authorization': 'Basic ...'`);
# - a credential cookie with its value, however the name is dressed (`$`, quotes, `__Host-`/
#   `__Secure-`, `_` or `-`, any case) and however opaque the value (IAP's session values are not
#   JWTs: `__Host-GCP_IAP_AUTH_TOKEN_<id>=AeEu...`, `GCP_IAP_UID=securetoken.google.com/p:uid`).
# A second line of defence: nothing should log them in the first place.
_VALUE = r"""(?:"[^"]*"|'[^']*'|[^\s;,"']+)"""
_SEP = r"""["']?\s*[:=]\s*"""
_COOKIE = r"\$?(?:__(?:host|secure)[-_])?(?:gcp[-_]iaa?p|ray[-_]authentication[-_]token)[\w-]*"
_HEADER = r"(?:proxy[-_]|x[-_]ray[-_])?authorization|x[-_]goog[-_]iap[-_]jwt[-_]assertion"
_SECRETS = re.compile(
    r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]+"
    rf"|(?i:{_HEADER}){_SEP}[\"']?(?:[A-Za-z]+\s+)?[^\s\"',;]+"
    rf"|(?i:{_COOKIE}){_SEP}{_VALUE}"
)

# Lower-case substrings of which every match above holds one: the cheap look first.
_MARKERS = ("eyj", "bearer", "authorization", "assertion", "gcp_ia", "gcp-ia", "authentication")


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
