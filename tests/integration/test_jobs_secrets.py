"""Job secrets through the real proxy: every read is one Ray redacts `runtime_env.env_vars` in (the
browser marker), Ray's own switch is checked, Ray's runtime-env logs are refused, and a role let
through by `jobs.reveal_secrets_to_roles` reads the values. Against the recording double, which
redacts as Ray 2.60 does (`devkit/ray_jobs.py`), and the tripwire for what must not reach Ray."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from devkit.ray_double import PASS, RayDouble
from devkit.ray_jobs import RayJobs
from tests.integration.test_jobs_ownership import ANA, LEA, VIC, auth, team_policy

SECRET = "hunter2-not-for-colleagues"
Make = Callable[..., Awaitable[TestClient]]
REVEAL = "jobs:\n  reveal_secrets_to_roles: [lead]\n"


@pytest.fixture
def jobs(stub_ray: tuple[RayDouble, str]) -> RayJobs:
    j = RayJobs().install(stub_ray[0])
    j.add("raysubmit_a", {"submitted_by": ANA}, {"WANDB_API_KEY": SECRET})
    return j


@pytest.fixture
async def client(make_client: Make) -> TestClient:
    return await make_client(policy=team_policy())


@pytest.mark.parametrize("email", [VIC, ANA, LEA], ids=["viewer", "submitter", "lead"])
@pytest.mark.parametrize("path", ["/api/jobs/", "/api/jobs/raysubmit_a"])
async def test_nobody_reads_the_values_back(
    client: TestClient, mint: Any, jobs: RayJobs, stub_ray: tuple[RayDouble, str], email: str, path: str
) -> None:
    r = await client.get(path, headers={**auth(mint, email), "User-Agent": "curl/8.5"})
    assert r.status == 200
    text = await r.text()
    assert SECRET not in text and "WANDB_API_KEY" in text and "<redacted>" in text
    seen = stub_ray[0].last_headers()
    assert seen["sec-fetch-mode"] == "same-origin" and seen["user-agent"] == "curl/8.5"


async def test_head_is_marked_too_and_writes_never_are(
    client: TestClient, mint: Any, jobs: RayJobs, stub_ray: tuple[RayDouble, str]
) -> None:
    assert (await client.head("/api/jobs/", headers=auth(mint, VIC))).status == 200
    assert "sec-fetch-mode" in stub_ray[0].last_headers()
    # Ray answers 405 to a browser-looking write: submissions, stops and deletes carry no marker
    r = await client.post("/api/jobs/", headers=auth(mint, ANA), json={"entrypoint": "x"})
    assert r.status == 200 and "sec-fetch-mode" not in stub_ray[0].last_headers()
    r = await client.post("/api/jobs/raysubmit_a/stop", headers=auth(mint, LEA))
    assert r.status == 200 and "sec-fetch-mode" not in stub_ray[0].last_headers()


async def test_a_websocket_upgrade_is_not_marked(
    client: TestClient, mint: Any, jobs: RayJobs, stub_ray: tuple[RayDouble, str]
) -> None:
    async with client.ws_connect("/api/jobs/raysubmit_a/logs/tail", headers=auth(mint, ANA)) as ws:
        assert (await ws.receive_str(timeout=10)) == "log line 1"
    assert "sec-fetch-mode" not in stub_ray[0].last_headers()


async def test_a_reveal_role_reads_the_values(
    make_client: Make, mint: Any, jobs: RayJobs, stub_ray: tuple[RayDouble, str]
) -> None:
    client = await make_client(policy=team_policy(), extra=REVEAL)
    r = await client.get("/api/jobs/raysubmit_a", headers=auth(mint, LEA))
    assert SECRET in await r.text() and "sec-fetch-mode" not in stub_ray[0].last_headers()
    r = await client.get("/api/jobs/raysubmit_a", headers=auth(mint, ANA))  # a scientist still does not
    assert SECRET not in await r.text()


async def test_reveal_is_off_by_default(client: TestClient, mint: Any, jobs: RayJobs) -> None:
    r = await client.get("/api/jobs/raysubmit_a", headers=auth(mint, LEA))
    assert SECRET not in await r.text()


@pytest.mark.parametrize(
    "target",
    [
        "/api/jobs/",
        "/api/jobs/raysubmit_a",
        "/api/v0/jobs?detail=1",
        "/api/v0/actors?detail=1",
        "/api/v0/tasks?detail=1",
        "/api/v0/runtime_envs",
        "/api/serve/applications/",
    ],
)
async def test_routes_with_runtime_envs_are_refused_when_ray_does_not_redact(
    make_proxy: Make, mint: Any, ray: RayDouble, target: str
) -> None:
    """The tripwire double says redaction is off: the read never reaches it."""

    async def off(request: web.Request) -> web.StreamResponse:
        return web.json_response({"result": True, "msg": "", "data": {"redactionEnabled": False}})

    ray.overrides["/api/v0/runtime_env_redaction"] = off
    proxy = await make_proxy(policy=team_policy())
    r = await proxy.get(target, headers=auth(mint, VIC))
    assert r.status == 503
    assert (await r.json())["reason"] == (
        "refused: Ray's redaction of job secrets is off (RAY_DASHBOARD_REDACT_RUNTIME_ENV=0 on the head), "
        "and this route would show job secrets"
    )
    assert [h.raw_path for h in ray.asked] == ["/api/v0/runtime_env_redaction"]
    r = await proxy.get("/api/version", headers={**auth(mint, VIC), **PASS})  # other routes still work
    assert r.status == 200


async def test_ray_down_is_still_502_not_a_redaction_problem(make_client: Make, mint: Any) -> None:
    client = await make_client(policy=team_policy(), upstream="http://127.0.0.1:9")
    r = await client.get("/api/jobs/", headers=auth(mint, VIC))
    assert r.status == 502 and (await r.json())["reason"] == "Ray is not reachable"


@pytest.mark.parametrize(
    "target, reason",
    [
        (
            "/api/v0/logs/file?node_id=n1&filename=runtime_env_agent.log&lines=1000",
            "runtime_env_agent.log holds",
        ),
        ("/api/v0/logs/stream?node_id=n1&filename=runtime_env_agent.log", "runtime_env_agent.log holds"),
        ("/api/v0/logs/file?node_id=n1&filename=runtime%5Fenv_agent.log", "runtime_env_agent.log holds"),
        (
            "/api/v0/logs/file?node_id=n1&filename=old/../runtime_env_agent.log.1",
            "runtime_env_agent.log.1 holds",
        ),
        ("/api/v0/logs/file?node_id=n1&filename=runtime_env_setup-02000000.log", "runtime_env_setup-0200"),
        (
            "/api/v0/logs/file?node_id=n1&filename=raylet.out&filename=runtime_env_agent.log",
            "holds the values",
        ),
        ("/api/v0/logs/file?submission_id=x/../runtime_env_agent", "a submission id naming a path"),
    ],
)
async def test_rays_runtime_env_logs_are_refused(
    make_proxy: Make, mint: Any, ray: RayDouble, target: str, reason: str
) -> None:
    """The lead holds `logs`; the tripwire fails the test if any of these reaches Ray."""
    proxy = await make_proxy(policy=team_policy())
    r = await proxy.get(target, headers=auth(mint, LEA))
    assert r.status == 403 and reason in (await r.json())["reason"]


async def test_other_logs_and_a_reveal_role_pass(
    make_client: Make, mint: Any, stub_ray: tuple[RayDouble, str]
) -> None:
    client = await make_client(policy=team_policy(), extra=REVEAL)
    r = await client.get("/api/v0/logs/file?node_id=n1&filename=raylet.out", headers=auth(mint, LEA))
    assert r.status == 200
    r = await client.get(
        "/api/v0/logs/file?node_id=n1&filename=runtime_env_agent.log", headers=auth(mint, LEA)
    )
    assert r.status == 200
