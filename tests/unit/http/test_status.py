"""The one HTTP status table: every kind has a status; Ray's own refusal of an upgrade is relayed."""

from __future__ import annotations

from proxy.errors import Kind
from proxy.http.status import ERRORS, STATUS, TITLES, status_for


def test_every_kind_has_a_status_a_title_and_an_error_code() -> None:
    assert set(STATUS) == set(Kind)
    for kind, status in STATUS.items():
        assert status in TITLES and status in ERRORS, kind


def test_the_refusal_classes() -> None:
    assert (STATUS[Kind.UNAUTHENTICATED], STATUS[Kind.FORBIDDEN], STATUS[Kind.UNAVAILABLE]) == (401, 403, 503)
    assert all(STATUS[k] >= 500 for k in (Kind.UPSTREAM_FAILED, Kind.UPSTREAM_TIMEOUT, Kind.INTERNAL))


def test_upstream_refusal_keeps_rays_status_only_when_it_is_a_refusal() -> None:
    assert status_for(Kind.UPSTREAM_REFUSED, 404) == 404
    assert status_for(Kind.UPSTREAM_REFUSED, 200) == 502
    assert status_for(Kind.UPSTREAM_REFUSED) == 502
