"""Request-target canonicalisation, pure and table-driven."""

from __future__ import annotations

import pytest

from proxy.authz.target import BadTarget, parse_target
from proxy.errors import Kind


@pytest.mark.parametrize(
    "raw, path, query",
    [
        ("/", "/", ""),
        ("/api/jobs/", "/api/jobs/", ""),
        ("/api/jobs/raysubmit_AbC-1", "/api/jobs/raysubmit_AbC-1", ""),
        ("/api/v0/logs/file?filename=a%2Fb.log&lines=10", "/api/v0/logs/file", "filename=a%2Fb.log&lines=10"),
        ("/static/js/main.1a2b.js", "/static/js/main.1a2b.js", ""),
        ("/api/jobs/my%20job", "/api/jobs/my%20job", ""),
        ("/nodes?view=summary", "/nodes", "view=summary"),
    ],
    ids=lambda v: v,
)
def test_canonical_targets_pass_unchanged(raw: str, path: str, query: str) -> None:
    t = parse_target(raw)
    assert (t.path, t.query, t.raw) == (path, query, raw)


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("http://h/api/jobs/", "origin form"),
        ("*", "origin form"),
        ("api/jobs/", "origin form"),
        ("/api/jobs/#frag", "fragment"),
        ("//api/jobs/", "empty segment"),
        ("/api//jobs/", "empty segment"),
        ("/api/./jobs/", "dot segment"),
        ("/api/jobs/..", "dot segment"),
        ("/api/jobs/%2e%2e", "escaped '.'"),
        ("/api/jobs/%2E", "escaped '.'"),
        ("/api%2fjobs/", "escaped '/'"),
        ("/api%2Fjobs/", "escaped '/'"),
        ("/api/jobs/a%5cb", "escaped"),
        ("/api/jobs/a\\b", "must be escaped"),
        ("/api/jobs/%00", "NUL"),
        ("/api/jobs/%0a", "control"),
        ("/api/jobs/?x=%00", "NUL"),
        ("/api/%6aobs/", "needlessly escaped 'j'"),
        ("/api/jobs/%4", "malformed percent"),
        ("/api/jobs/%g0", "malformed percent"),
        ("/api/jobs/\u00e9", "must be escaped"),
        ("/api/jobs/a b", "must be escaped"),
        ("/api/jobs/?a=b c", "query contains"),
    ],
    ids=lambda v: repr(v),
)
def test_non_canonical_targets_are_refused(raw: str, reason: str) -> None:
    with pytest.raises(BadTarget, match=reason) as err:
        parse_target(raw)
    assert err.value.kind is Kind.MALFORMED


def test_overlong_target_is_414() -> None:
    with pytest.raises(BadTarget) as err:
        parse_target("/" + "a" * 5000, max_length=4096)
    assert err.value.kind is Kind.TARGET_TOO_LONG
