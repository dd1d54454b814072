"""Where credentials are: the request's headers (HTTP) or metadata (gRPC), read into plain values.
Pure. Which one decides, and how each is verified, is `authenticate.py`'s and the providers' business.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

IAP_HEADER = "x-goog-iap-jwt-assertion"
# Headers that may carry a bearer credential: programmatic IAP and ID-token callers use the first two,
# KubeRay's operator the third (Ray's own header "for proxies").
BEARER_HEADERS = ("authorization", "proxy-authorization", "x-ray-authorization")


@dataclass(frozen=True, slots=True)
class Presented:
    """One credential as the caller presented it. `where` is the header or metadata key, lower-case;
    `scheme` is "bearer" for the Authorization-style headers ("" for IAP's own header)."""

    where: str
    value: str
    scheme: str = ""

    def __repr__(self) -> str:  # a credential's value is never printed, whatever prints this
        return f"Presented(where={self.where!r}, scheme={self.scheme!r}, value=<{len(self.value)} chars>)"


Credentials = tuple[Presented, ...]


def credentials(pairs: Iterable[tuple[str, str | bytes]]) -> Credentials:
    """Every credential among header (or metadata) pairs, in the order given."""
    found: list[Presented] = []
    for name, raw in pairs:
        key = name.lower()
        if key != IAP_HEADER and key not in BEARER_HEADERS:
            continue
        value = raw.decode("latin-1") if isinstance(raw, bytes) else raw
        if key == IAP_HEADER:
            found.append(Presented(key, value.strip()))
            continue
        scheme, _, rest = value.strip().partition(" ")
        found.append(Presented(key, rest.strip(), scheme.lower()))
    return tuple(found)
