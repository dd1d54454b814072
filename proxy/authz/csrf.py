"""Cross-site request refusal, pure. IAP signs every browser request with its session cookie, so a
page on another site could make a signed-in person's browser submit a job. State-changing requests
are allowed only when the browser says the request came from this very origin.

Same-*site* is not enough: `ray-team-b.example.com` is same-site with `ray-team-a.example.com`. The
origin is compared whole — scheme, host and port — with the public URL the proxy serves
(`public_url`; without it, `https://` + the Host header, or `http://` when the Host is a loopback
address), so `http://ray-team-a.example.com` is another origin than `https://ray-team-a.example.com`.
Requests without browser provenance headers (CLI, SDK) are not browser-originated and pass.

State-changing requests are the unsafe methods, and two kinds of GET:
- a WebSocket upgrade: the same-origin policy does not protect what it returns, so a page on any
  site may open one with the user's cookies and read every frame (cross-site WebSocket hijacking of
  a job's log tail);
- a GET with side effects (Ray's GET* routes, `Route.side_effects`: profilers, package pins, actor
  creation), which any page can trigger with a link or an `<img>`.
Every other GET passes, so a link from another site to the dashboard keeps working.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..settings.base import is_loopback

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Origin:
    """A web origin: scheme, lower-case host, port (the default one made explicit)."""

    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Origin | None:
        """`scheme://host[:port]` as a browser serializes it, or None: opaque (`null`, `file:`),
        not ASCII, with credentials, a path, a query or a fragment, or otherwise unparseable."""
        text = text.strip()
        if not text.isascii():
            return None
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError:
            return None
        if (
            parts.scheme not in DEFAULT_PORTS
            or not parts.hostname
            or "@" in parts.netloc
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or "?" in text
            or "#" in text
        ):
            return None
        return cls(parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme])

    @classmethod
    def of_host(cls, host: str, scheme: str | None = None) -> Origin | None:
        """The origin a browser would have sent for a Host header; `scheme` None: `http` for a
        loopback host (dev-iap, tests), `https` otherwise (behind IAP, always)."""
        host = host.strip()
        if not host or not host.isascii() or any(c in host for c in "/?#@\\"):
            return None
        try:
            parts = urlsplit("//" + host)
            name, port = parts.hostname, parts.port
        except ValueError:
            return None
        if not name:
            return None
        scheme = scheme or ("http" if is_loopback(name) else "https")
        return cls(scheme, name, port or DEFAULT_PORTS[scheme])

    def __str__(self) -> str:
        default = DEFAULT_PORTS[self.scheme] == self.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + ("" if default else f":{self.port}")


@dataclass(frozen=True, slots=True)
class BrowserFacts:
    """What a browser says about where a request came from, and where it went: the Host it named,
    and the configured public origin when there is one (it then decides alone)."""

    sec_fetch_site: str | None
    origin: str | None
    host: str
    public: Origin | None = None

    @classmethod
    def from_headers(
        cls, headers: Mapping[str, str], host: str, public: Origin | None = None
    ) -> BrowserFacts:
        return cls(headers.get("Sec-Fetch-Site"), headers.get("Origin"), host, public)

    @property
    def expected(self) -> Origin | None:
        """The origin this proxy serves, as far as this request tells."""
        return self.public or Origin.of_host(self.host)


def cross_site_reason(
    method: str, facts: BrowserFacts, *, upgrade: bool = False, side_effects: bool = False
) -> str | None:
    """Why this request must be refused as cross-site, or None when it may proceed."""
    if method in SAFE_METHODS and not upgrade and not side_effects:
        return None
    if upgrade:
        method = "WebSocket"
    site, origin = facts.sec_fetch_site, facts.origin
    if site is not None and site.strip().lower() not in ("same-origin", "none"):
        return f"cross-origin {method} refused (Sec-Fetch-Site: {site.strip()[:20]})"
    if origin is None:
        return None
    sent = Origin.parse(origin)
    if sent is None:
        return f"cross-origin {method} refused (opaque Origin)"
    expected = facts.expected
    if expected is None:
        return f"cross-origin {method} refused (unparseable Host)"
    if sent != expected:
        return f"cross-origin {method} refused (Origin is not {expected})"
    return None
