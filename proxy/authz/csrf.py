"""Cross-site request refusal, pure. IAP signs every browser request with its session cookie, so a
page on another site could make a signed-in person's browser submit a job. State-changing methods
are allowed only when the browser says the request came from this very origin.

Same-*site* is not enough: `ray-team-b.example.com` is same-site with `ray-team-a.example.com`.
Requests without browser provenance headers (CLI, SDK) are not browser-originated and pass.

A WebSocket upgrade is a GET, but the same-origin policy does not protect what it returns: a page on
any site may open one with the user's cookies and read every frame (cross-site WebSocket hijacking of
a job's log tail). Upgrades are therefore held to the rule of state-changing methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class BrowserFacts:
    """What a browser says about where a request came from."""

    sec_fetch_site: str | None
    origin: str | None
    host: str

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], host: str) -> BrowserFacts:
        return cls(headers.get("Sec-Fetch-Site"), headers.get("Origin"), host)


def cross_site_reason(method: str, facts: BrowserFacts, *, upgrade: bool = False) -> str | None:
    """Why this request must be refused as cross-site, or None when it may proceed."""
    if method in SAFE_METHODS and not upgrade:
        return None
    if upgrade:
        method = "WebSocket"
    site, origin, host = facts.sec_fetch_site, facts.origin, facts.host
    if site is not None and site.strip().lower() not in ("same-origin", "none"):
        return f"cross-origin {method} refused (Sec-Fetch-Site: {site.strip()[:20]})"
    if origin is None:
        return None
    parts = urlsplit(origin.strip())
    if origin.strip() == "null" or parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return f"cross-origin {method} refused (opaque Origin)"
    try:
        origin_port = parts.port or _DEFAULT_PORTS[parts.scheme]
        target = urlsplit("//" + host.strip())
        host_name, host_port = target.hostname, target.port
    except ValueError:
        return f"cross-origin {method} refused (unparseable Origin or Host)"
    if host_name != parts.hostname.lower():
        return f"cross-origin {method} refused (Origin does not match Host)"
    if host_port is not None and host_port != origin_port:
        return f"cross-origin {method} refused (Origin port does not match Host)"
    if host_port is None and origin_port not in _DEFAULT_PORTS.values():
        return f"cross-origin {method} refused (Origin port does not match Host)"
    return None
