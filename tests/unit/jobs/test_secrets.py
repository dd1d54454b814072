"""Secrets: the marker that makes Ray redact, the runtime-env logs refused, Ray's switch checked."""

from __future__ import annotations

import json

import pytest

from proxy.authz.routes import DEFAULT_TABLE, RAY_ROUTES
from proxy.errors import Forbidden, Kind, Unavailable, UpstreamError
from proxy.jobs.secrets import (
    LOG_FILE_ROUTES,
    MARKER,
    RUNTIME_ENV_ROUTES,
    RedactionCheck,
    mark_for_redaction,
    refuse_secret_logs,
)

LOG_FILE = DEFAULT_TABLE.classify("GET", "/api/v0/logs/file")
LOG_STREAM = DEFAULT_TABLE.classify("GET", "/api/v0/logs/stream")
JOBS = DEFAULT_TABLE.classify("GET", "/api/jobs/")


def test_the_route_sets_name_real_routes() -> None:
    patterns = {r.pattern for r in RAY_ROUTES if r.method == "GET"}
    assert RUNTIME_ENV_ROUTES <= patterns and LOG_FILE_ROUTES <= patterns


def test_the_marker_is_one_ray_reads_as_a_browser() -> None:
    # ray/dashboard/optional_utils.py is_browser_request: any Sec-Fetch-* header
    assert MARKER[0] in ("Sec-Fetch-Mode", "Sec-Fetch-Dest", "Sec-Fetch-Site", "Sec-Fetch-User")
    assert mark_for_redaction([("Accept", "*/*")]) == [("Accept", "*/*"), MARKER]
    theirs = [("sec-fetch-mode", "navigate")]
    assert mark_for_redaction(theirs) == theirs


@pytest.mark.parametrize(
    "query",
    [
        "node_id=n&filename=runtime_env_agent.log",
        "node_id=n&filename=runtime_env_agent.log.1",
        "node_id=n&filename=runtime_env_agent.err",
        "node_id=n&filename=runtime_env_setup-02000000.log",
        "node_id=n&filename=runtime%5Fenv_agent.log",  # escaped: decoded as Ray decodes
        "node_id=n&filename=old/../runtime_env_agent.log",
        "node_id=n&filename=./runtime_env_agent.log",
        "node_id=n&filename=runtime_env_agent.log/.",
        "node_id=n&filename=/tmp/ray/session_latest/logs/runtime_env_agent.log",
        "node_id=n&filename=raylet.out&filename=runtime_env_agent.log",  # any value, not only the first
        "submission_id=x/../runtime_env_agent",
        "submission_id=x%2F..%2Fruntime_env_agent",
    ],
)
def test_runtime_env_logs_are_refused(query: str) -> None:
    for route in (LOG_FILE, LOG_STREAM):
        assert route is not None
        with pytest.raises(Forbidden):
            refuse_secret_logs(route, query)


@pytest.mark.parametrize(
    "query",
    [
        "node_id=n&filename=raylet.out",
        "node_id=n&filename=job-driver-raysubmit_abc.log",
        "node_id=n&filename=worker-1-2-3.out",
        "submission_id=raysubmit_abc",
        "task_id=t&suffix=err",
        "",
    ],
)
def test_other_logs_pass(query: str) -> None:
    assert LOG_FILE is not None
    refuse_secret_logs(LOG_FILE, query)


def test_only_the_log_routes_look_at_filename() -> None:
    assert JOBS is not None
    refuse_secret_logs(JOBS, "filename=runtime_env_agent.log")


class Ray:
    def __init__(self, status: int = 200, body: object = None, fail: BaseException | None = None) -> None:
        self.status, self.fail, self.asked = status, fail, 0
        self.body = json.dumps(body if body is not None else {"data": {"redactionEnabled": True}}).encode()

    async def fetch(self, target: str) -> tuple[int, bytes]:
        assert target == "/api/v0/runtime_env_redaction"
        self.asked += 1
        if self.fail is not None:
            raise self.fail
        return self.status, self.body


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_ray_redacting_is_asked_once_per_ttl() -> None:
    ray, clock = Ray(), Clock()
    check = RedactionCheck(ray.fetch, ttl_seconds=60, clock=clock)
    await check.ensure()
    clock.now = 59
    await check.ensure()
    assert ray.asked == 1
    clock.now = 61
    await check.ensure()
    assert ray.asked == 2


@pytest.mark.parametrize(
    "status, body, why",
    [
        (200, {"data": {"redactionEnabled": False}}, "redaction of job secrets is off"),
        (200, {"data": {"redaction_enabled": False}}, "redaction of job secrets is off"),
        (200, {"data": {}}, "unreadable (200)"),
        (200, [], "unreadable (200)"),
        (404, {"error": "no such route"}, "unreadable (404)"),
    ],
)
async def test_ray_not_redacting_refuses_until_it_does(status: int, body: object, why: str) -> None:
    ray, clock = Ray(status, body), Clock()
    check = RedactionCheck(ray.fetch, ttl_seconds=60, clock=clock)
    with pytest.raises(Unavailable) as err:
        await check.ensure()
    assert why in err.value.reason and "would show job secrets" in err.value.reason
    clock.now = 4
    with pytest.raises(Unavailable):
        await check.ensure()
    assert ray.asked == 1
    ray.status, ray.body = 200, json.dumps({"data": {"redactionEnabled": True}}).encode()
    clock.now = 6  # a bad answer is asked again after 5 s, not after the whole ttl
    await check.ensure()


async def test_ray_unreachable_is_ray_unreachable() -> None:
    ray = Ray(fail=UpstreamError("Ray is not reachable", Kind.UPSTREAM_UNREACHABLE))
    check = RedactionCheck(ray.fetch, clock=Clock())
    for _ in range(2):
        with pytest.raises(UpstreamError) as err:
            await check.ensure()
        assert err.value.kind is Kind.UPSTREAM_UNREACHABLE
    assert ray.asked == 2  # nothing kept
