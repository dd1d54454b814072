"""Route classification against the Ray 2.60 table, pure and table-driven."""

from __future__ import annotations

import pytest

from proxy.authz.routes import DEFAULT_TABLE, RAY_ROUTES, RouteTable
from proxy.model import Action, Route, Verb


@pytest.mark.parametrize(
    "method, path, verb",
    [
        ("GET", "/", Verb.VIEW),
        ("HEAD", "/", Verb.VIEW),
        ("GET", "/static/css/main.css", Verb.VIEW),
        ("GET", "/api/version", Verb.VIEW),
        ("GET", "/api/jobs/", Verb.VIEW),
        ("POST", "/api/jobs/", Verb.SUBMIT),
        ("GET", "/api/jobs/raysubmit_1", Verb.VIEW),
        ("DELETE", "/api/jobs/raysubmit_1", Verb.DELETE),
        ("POST", "/api/jobs/raysubmit_1/stop", Verb.STOP),
        ("GET", "/api/jobs/raysubmit_1/logs", Verb.LOGS),
        ("GET", "/api/jobs/raysubmit_1/logs/tail", Verb.LOGS),
        ("GET", "/api/packages/gcs/_ray_pkg_1.zip", Verb.SUBMIT),
        ("PUT", "/api/packages/gcs/_ray_pkg_1.zip", Verb.SUBMIT),
        ("GET", "/api/v0/logs", Verb.LOGS),
        ("GET", "/api/v0/logs/file", Verb.LOGS),
        ("GET", "/api/v0/logs/stream", Verb.LOGS),
        ("GET", "/worker/traceback", Verb.DEBUG),
        ("GET", "/worker/gpu_profile", Verb.DEBUG),
        ("GET", "/memory_profile", Verb.DEBUG),
        ("PUT", "/api/serve/applications/", Verb.SERVE),
        ("DELETE", "/api/serve/applications/", Verb.SERVE),
        ("GET", "/api/serve/applications/", Verb.VIEW),
        ("POST", "/api/v1/applications/app/deployments/d/scale", Verb.SERVE),
        ("GET", "/api/data/datasets/02000000", Verb.VIEW),
        ("GET", "/api/v0/tasks/summarize", Verb.VIEW),
    ],
    ids=lambda v: str(v),
)
def test_classification(method: str, path: str, verb: Verb) -> None:
    route = DEFAULT_TABLE.classify(method, path)
    assert route is not None and route.verb is verb


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/api/jobs"),  # Ray is trailing-slash exact
        ("GET", "/API/JOBS/"),
        ("POST", "/api/jobs/x"),
        ("PUT", "/api/jobs/"),
        ("GET", "/api/jobs/a/b"),
        ("GET", "/api/jobs//logs"),
        ("GET", "/static/"),
        ("GET", "/api/v0/logs/other"),
        ("OPTIONS", "/api/jobs/"),
        ("get", "/api/jobs/"),
        ("GET", "/api/healthz"),
        ("GET", "/api/job_agent/jobs/"),
        ("POST", "/api/job_agent/jobs/"),
        ("GET", "/logs/raylet.out"),
        ("GET", "/api/actors/kill"),
        ("GET", "/logical/kill_actor"),
        ("GET", "/log_proxy"),
    ],
    ids=lambda v: v,
)
def test_unknown_routes_are_none(method: str, path: str) -> None:
    assert DEFAULT_TABLE.classify(method, path) is None


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/test/dump"),
        ("POST", "/report_events"),
        ("GET", "/api/v0/delay/3"),
        ("POST", "/api/task_events"),
        ("POST", "/api/task_events/query"),
    ],
)
def test_internal_routes_deny_whatever_the_role(method: str, path: str) -> None:
    route = DEFAULT_TABLE.classify(method, path)
    assert route is not None and route.action is Action.DENY and route.verb is None


def test_only_the_log_tail_is_a_websocket() -> None:
    assert [r.pattern for r in RAY_ROUTES if r.websocket] == ["/api/jobs/{job_or_submission_id}/logs/tail"]


def test_every_write_method_route_maps_to_a_write_verb_or_deny() -> None:
    for r in RAY_ROUTES:
        if r.method in ("POST", "PUT", "DELETE") and r.action is Action.FORWARD:
            assert r.verb in (Verb.SUBMIT, Verb.STOP, Verb.DELETE, Verb.SERVE), r.name


def test_duplicate_routes_are_rejected_at_build() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        RouteTable.build([Route("GET", "/a", Verb.VIEW), Route("GET", "/a", Verb.LOGS)])
