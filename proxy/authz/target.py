"""Request-target canonicalisation: the path the proxy classifies is exactly the path it forwards.

A target is accepted only in origin form with a canonical path: no empty segments (`//`), no `.` or
`..` segments, percent-escapes only where RFC 3986 requires them (never for unreserved characters,
`/`, `\\`, `.` or control bytes), no fragment, no raw control, space, backslash or non-ASCII bytes.
Anything else is refused with 400 before authentication, and never reaches Ray.
"""

from __future__ import annotations

import re
import string

from ..errors import Kind, Malformed
from ..model import Target

_PCHAR = frozenset(string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@%")
_QCHAR = _PCHAR | frozenset('/?[]|{}^`"<>')
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_CONTROL = frozenset(chr(b) for b in range(0x20)) | {"\x7f"}
_HEX = re.compile(r"%([0-9A-Fa-f]{2})")


class BadTarget(Malformed):
    """The request target is not canonical (MALFORMED), or too long (TARGET_TOO_LONG)."""


def parse_target(raw: str, max_length: int = 4096) -> Target:
    """Split and check a raw request target. Raises BadTarget with a short, safe reason."""
    if len(raw) > max_length:
        raise BadTarget(f"request target longer than {max_length} bytes", Kind.TARGET_TOO_LONG)
    if not raw.startswith("/"):
        raise BadTarget("request target must be a path (origin form)")
    if "#" in raw:
        raise BadTarget("request target must not carry a fragment")
    path, sep, query = raw.partition("?")
    for ch in path:
        if ch not in _PCHAR and ch != "/":
            raise BadTarget(f"path contains a character that must be escaped ({ch!r})")
    _check_escapes(path, in_path=True)
    segments = path.split("/")[1:]
    for i, seg in enumerate(segments):
        if seg == "" and i != len(segments) - 1:
            raise BadTarget("path contains an empty segment (//)")
        if seg in (".", ".."):
            raise BadTarget("path contains a dot segment")
    if sep:
        for ch in query:
            if ch not in _QCHAR:
                raise BadTarget(f"query contains a character that must be escaped ({ch!r})")
        _check_escapes(query, in_path=False)
    return Target(path, query)


def _check_escapes(text: str, *, in_path: bool) -> None:
    count = text.count("%")
    escapes = _HEX.findall(text)
    if len(escapes) != count:
        raise BadTarget("malformed percent-escape")
    for hex2 in escapes:
        ch = chr(int(hex2, 16))
        if ch in _CONTROL:
            raise BadTarget("escaped NUL or control byte is not allowed")
        if in_path and ch in "/\\":
            raise BadTarget(f"escaped {ch!r} in path is not allowed")
        if in_path and ch in _UNRESERVED:
            raise BadTarget(f"needlessly escaped {ch!r} in path (not canonical)")
