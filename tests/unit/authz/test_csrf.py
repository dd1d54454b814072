"""The cross-site rule, pure: a table of methods, provenance headers and hosts."""

from __future__ import annotations

import pytest

from proxy.authz.csrf import BrowserFacts, cross_site_reason


@pytest.mark.parametrize(
    "method, headers, host, refused",
    [
        ("GET", {"Origin": "https://evil.example"}, "ray.example.com", False),
        ("POST", {}, "ray.example.com", False),  # CLI and SDK send no provenance
        ("POST", {"Origin": "https://ray.example.com"}, "ray.example.com", False),
        ("POST", {"Origin": "https://ray.example.com:443"}, "ray.example.com", False),
        ("POST", {"Origin": "https://evil.example"}, "ray.example.com", True),
        ("POST", {"Origin": "https://ray-team-b.example.com"}, "ray-team-a.example.com", True),
        ("POST", {"Origin": "null"}, "ray.example.com", True),
        ("DELETE", {"Sec-Fetch-Site": "cross-site"}, "ray.example.com", True),
        ("PUT", {"Sec-Fetch-Site": "same-site"}, "ray.example.com", True),
        (
            "POST",
            {"Sec-Fetch-Site": "same-origin", "Origin": "https://ray.example.com"},
            "ray.example.com",
            False,
        ),
        ("POST", {"Sec-Fetch-Site": "none"}, "ray.example.com", False),
        ("POST", {"Origin": "http://127.0.0.1:8080"}, "127.0.0.1:8080", False),
        ("POST", {"Origin": "http://127.0.0.1:8081"}, "127.0.0.1:8080", True),
        ("POST", {"Origin": "http://127.0.0.1:8080"}, "127.0.0.1", True),
        ("POST", {"Origin": "javascript:alert(1)"}, "ray.example.com", True),
    ],
)
def test_cross_site(method: str, headers: dict[str, str], host: str, refused: bool) -> None:
    assert (cross_site_reason(method, BrowserFacts.from_headers(headers, host)) is not None) is refused
