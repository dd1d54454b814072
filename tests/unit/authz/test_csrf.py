"""The cross-site rule, pure: a table of methods, provenance headers and hosts."""

from __future__ import annotations

import pytest

from proxy.authz.csrf import BrowserFacts, Origin, cross_site_reason


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


PUBLIC = Origin.parse("https://ray-team-a.example.com")


@pytest.mark.parametrize(
    "method, headers, side_effects, refused",
    [
        ("POST", {"Origin": "https://ray-team-a.example.com"}, False, False),
        ("POST", {"Origin": "https://ray-team-a.example.com:443"}, False, False),
        ("POST", {"Origin": "http://ray-team-a.example.com"}, False, True),  # the scheme counts
        ("POST", {"Origin": "https://ray-team-a.example.com:8443"}, False, True),
        ("POST", {"Origin": "https://evil.example"}, False, True),
        ("GET", {"Sec-Fetch-Site": "cross-site"}, False, False),  # a link to the dashboard
        ("GET", {"Sec-Fetch-Site": "cross-site"}, True, True),  # a GET that attaches a profiler
        ("HEAD", {"Origin": "https://evil.example"}, True, True),
        ("GET", {"Sec-Fetch-Site": "same-origin"}, True, False),
        ("GET", {}, True, False),  # CLI, SDK
    ],
)
def test_the_whole_origin_and_gets_with_side_effects(
    method: str, headers: dict[str, str], side_effects: bool, refused: bool
) -> None:
    facts = BrowserFacts.from_headers(headers, "evil.example", PUBLIC)  # the Host says nothing then
    assert (cross_site_reason(method, facts, side_effects=side_effects) is not None) is refused


@pytest.mark.parametrize(
    "text, origin",
    [
        ("https://Ray.Example.com", ("https", "ray.example.com", 443)),
        ("http://127.0.0.1:8080", ("http", "127.0.0.1", 8080)),
        ("http://[::1]:8080", ("http", "::1", 8080)),
        ("null", None),
        ("https://a@b.example", None),
        ("https://b.example/x", None),
        ("https://b.example?", None),
        ("https://b.ex\u212a", None),
        ("https://b.example:99999", None),
    ],
)
def test_origin_parsing(text: str, origin: tuple[str, str, int] | None) -> None:
    parsed = Origin.parse(text)
    assert (None if parsed is None else (parsed.scheme, parsed.host, parsed.port)) == origin
