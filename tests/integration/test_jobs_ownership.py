"""Job ownership through the real proxy in front of the recording Ray double (`devkit/ray_jobs.py`):
the submitter recorded in what Ray receives, and `stop:own` / `delete:own` / `logs:own` decided on
the owner the proxy asks Ray for."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient

from devkit.ray_double import RayDouble
from devkit.ray_jobs import RayJobs
from devkit.records import AccessRecords
from proxy.authz.policy import Policy
from proxy.authz.policy_file import parse_policy
from proxy.jobs.service import OWN_USER_AGENT

H = "x-goog-iap-jwt-assertion"
ANA, BEN, LEA, VIC = "ana@example.com", "ben@example.com", "lea@example.com", "vic@example.com"
TEAM = """
roles:
  scientist: [view, submit, logs:own, stop:own, delete:own]
  lead: [view, submit, logs, stop, delete]
  viewer: [view]
bindings:
  - {tenant: team-a, role: scientist, members: ["user:ana@example.com", "user:ben@example.com"]}
  - {tenant: team-a, role: lead, members: ["user:lea@example.com"]}
  - {tenant: team-a, role: viewer, members: ["user:vic@example.com"]}
  - {tenant: team-a, role: scientist, members: ["system:ray-token"]}
"""


def team_policy() -> Policy:
    problems: list[str] = []
    policy = parse_policy(yaml.safe_load(TEAM), problems)
    assert policy is not None, problems
    return policy


Make = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def jobs(stub_ray: tuple[RayDouble, str]) -> RayJobs:
    return RayJobs().install(stub_ray[0])


@pytest.fixture
async def client(make_client: Make, access_records: AccessRecords) -> TestClient:
    return await make_client(
        policy=team_policy(), access_log=access_records, extra="accept_ray_token: true\n"
    )


def auth(mint: Any, email: str) -> dict[str, str]:
    return {H: mint(email)}


async def submit(client: TestClient, mint: Any, email: str, body: dict[str, Any]) -> str:
    r = await client.post("/api/jobs/", headers=auth(mint, email), json=body)
    assert r.status == 200, await r.text()
    sid: str = (await r.json())["submission_id"]
    return sid


async def test_the_submitter_is_recorded_over_a_claim_and_other_metadata_kept(
    client: TestClient, mint: Any, jobs: RayJobs, access_records: AccessRecords
) -> None:
    body = {"entrypoint": "python x.py", "metadata": {"submitted_by": LEA, "team": "vision"}}
    sid = await submit(client, mint, ANA, body)
    received = json.loads(jobs.submitted[-1])
    assert received["metadata"] == {"submitted_by": ANA, "team": "vision"}
    assert received["entrypoint"] == "python x.py" and received["submission_id"] == sid
    assert sid.startswith("raysubmit_")  # chosen by the proxy, the way Ray would
    record = access_records.last()
    assert record["job_id"] == sid and record["principal"] == ANA


async def test_what_ray_receives_is_framed_for_the_new_body(
    client: TestClient, mint: Any, jobs: RayJobs, stub_ray: tuple[RayDouble, str]
) -> None:
    raw = b'{"entrypoint": "x", "submission_id": "run-1"}'
    r = await client.post(
        "/api/jobs/",
        headers={**auth(mint, BEN), "Content-Type": "application/json; charset=utf-8"},
        data=raw,
    )
    assert r.status == 200
    headers = stub_ray[0].last_headers()
    assert headers["content-length"] == str(len(jobs.submitted[-1]))
    assert headers["content-type"] == "application/json"
    assert json.loads(jobs.submitted[-1])["metadata"] == {"submitted_by": BEN}


async def test_chunked_submissions_are_read_whole(client: TestClient, mint: Any, jobs: RayJobs) -> None:
    async def chunks() -> Any:
        yield b'{"entrypoint": "x",'
        yield b' "metadata": {"k": "v"}}'

    r = await client.post("/api/jobs/", headers=auth(mint, ANA), data=chunks())
    assert r.status == 200, await r.text()
    assert json.loads(jobs.submitted[-1])["metadata"] == {"k": "v", "submitted_by": ANA}


async def test_the_ray_token_principal_is_recorded(client: TestClient, jobs: RayJobs) -> None:
    r = await client.post(
        "/api/jobs/", headers={"X-Ray-Authorization": "Bearer ray-secret-token"}, json={"entrypoint": "x"}
    )
    assert r.status == 200, await r.text()
    assert json.loads(jobs.submitted[-1])["metadata"] == {"submitted_by": "system:ray-token"}


@pytest.mark.parametrize(
    "body, status, reason",
    [
        (b"[]", 400, "a job submission must be a JSON object, not an array"),
        (b"not json", 400, "the job submission is not valid JSON"),
        (b'{"metadata": "x"}', 400, "metadata must be a JSON object of strings"),
        (b'{"submission_id": "03000000"}', 400, "has the form of a Ray job id"),
        (b'{"entrypoint": "' + b"x" * (1024 * 1024) + b'"}', 413, "request body larger than 1048576 bytes"),
    ],
    ids=["array", "not-json", "metadata", "hex-id", "too-large"],
)
async def test_bad_submissions_are_refused_before_ray(
    make_proxy: Make, mint: Any, ray: RayDouble, body: bytes, status: int, reason: str
) -> None:
    """The tripwire double: none of these reaches Ray."""
    proxy = await make_proxy(policy=team_policy())
    r = await proxy.post("/api/jobs/", headers={**auth(mint, ANA), "x-test-may-reach-ray": "no"}, data=body)
    assert r.status == status
    answer = await r.json()
    assert answer["reason"] == reason or reason in answer["reason"]
    assert set(answer) == {"error", "reason", "request_id"}


async def test_a_scientist_stops_and_deletes_only_their_own_jobs(
    client: TestClient, mint: Any, jobs: RayJobs, stub_ray: tuple[RayDouble, str]
) -> None:
    ana_job = await submit(client, mint, ANA, {"entrypoint": "x"})
    r = await client.post(f"/api/jobs/{ana_job}/stop", headers=auth(mint, BEN))
    assert r.status == 403
    assert (await r.json())["reason"] == (
        f"role scientist via user:{BEN} grants stop:own, but job {ana_job} was submitted by {ANA}"
    )
    r = await client.delete(f"/api/jobs/{ana_job}", headers=auth(mint, BEN))
    assert r.status == 403 and "grants delete:own, but job" in (await r.json())["reason"]
    r = await client.get(f"/api/jobs/{ana_job}/logs", headers=auth(mint, BEN))
    assert r.status == 403 and "grants logs:own, but job" in (await r.json())["reason"]
    assert jobs.stopped == [] and jobs.deleted == []
    assert not [h for h in stub_ray[0].hits if h.raw_path.startswith(f"/api/jobs/{ana_job}/")]

    r = await client.post(f"/api/jobs/{ana_job}/stop", headers=auth(mint, ANA))
    assert r.status == 200 and jobs.stopped == [ana_job]
    r = await client.get(f"/api/jobs/{ana_job}/logs", headers=auth(mint, ANA))
    assert r.status == 200
    r = await client.delete(f"/api/jobs/{ana_job}", headers=auth(mint, ANA))
    assert r.status == 200 and jobs.deleted == [ana_job]


async def test_the_owner_is_asked_with_rays_token_and_kept_until_deletion(
    client: TestClient, mint: Any, jobs: RayJobs, stub_ray: tuple[RayDouble, str]
) -> None:
    job = await submit(client, mint, ANA, {"entrypoint": "x", "submission_id": "run-42"})
    for _ in range(3):
        assert (await client.get(f"/api/jobs/{job}/logs", headers=auth(mint, ANA))).status == 200
    asked = [h for h in stub_ray[0].asked if h.raw_path == f"/api/jobs/{job}"]
    assert len(asked) == 1  # once, then from the cache
    headers = {k.lower(): v for k, v in asked[0].headers}
    assert headers["x-ray-authorization"] == "Bearer ray-secret-token"
    assert headers["user-agent"] == OWN_USER_AGENT and "sec-fetch-mode" in headers  # no secrets for us
    assert H not in headers and "authorization" not in headers

    assert (await client.delete(f"/api/jobs/{job}", headers=auth(mint, ANA))).status == 200
    # deleted, and submitted again under the same id by a colleague: ana's grant must not linger
    await submit(client, mint, BEN, {"entrypoint": "x", "submission_id": "run-42"})
    r = await client.post(f"/api/jobs/{job}/stop", headers=auth(mint, ANA))
    assert r.status == 403 and f"was submitted by {BEN}" in (await r.json())["reason"]


async def test_a_job_submitted_around_the_proxy_reaches_only_the_unscoped_verb(
    client: TestClient, mint: Any, jobs: RayJobs
) -> None:
    jobs.add("raysubmit_around", {"team": "x"})
    jobs.add("raysubmit_claim", {"submitted_by": "not-through-the-proxy"})
    r = await client.post("/api/jobs/raysubmit_around/stop", headers=auth(mint, ANA))
    assert r.status == 403 and "has no recorded submitter" in (await r.json())["reason"]
    r = await client.post("/api/jobs/raysubmit_around/stop", headers=auth(mint, LEA))
    assert r.status == 200 and jobs.stopped == ["raysubmit_around"]
    r = await client.post("/api/jobs/raysubmit_nope/stop", headers=auth(mint, ANA))
    assert r.status == 403 and "has no recorded submitter" in (await r.json())["reason"]


async def test_a_lead_stops_anyones_job_without_an_owner_lookup(
    client: TestClient, mint: Any, jobs: RayJobs, stub_ray: tuple[RayDouble, str]
) -> None:
    job = await submit(client, mint, BEN, {"entrypoint": "x"})
    stub_ray[0].asked.clear()
    assert (await client.post(f"/api/jobs/{job}/stop", headers=auth(mint, LEA))).status == 200
    assert stub_ray[0].asked == []
    assert (await client.post(f"/api/jobs/{job}/stop", headers=auth(mint, VIC))).status == 403


async def test_the_websocket_log_tail_follows_the_same_rule(
    client: TestClient, mint: Any, jobs: RayJobs, stub_ray: tuple[RayDouble, str]
) -> None:
    job = await submit(client, mint, ANA, {"entrypoint": "x"})
    r = await client.get(
        f"/api/jobs/{job}/logs/tail",
        headers={
            **auth(mint, BEN),
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )
    assert r.status == 403 and "grants logs:own, but job" in (await r.json())["reason"]
    async with client.ws_connect(f"/api/jobs/{job}/logs/tail", headers=auth(mint, ANA)) as ws:
        assert (await ws.receive_str(timeout=10)) == "log line 1"


@pytest.mark.parametrize("status", [500, 401])
async def test_ray_failing_the_owner_lookup_grants_nothing(
    client: TestClient, mint: Any, jobs: RayJobs, stub_ray: tuple[RayDouble, str], status: int
) -> None:
    job = await submit(client, mint, ANA, {"entrypoint": "x"})

    async def broken(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text="Traceback (most recent call last): ...")

    stub_ray[0].overrides["/api/jobs/{job_or_submission_id}"] = broken
    r = await client.post(f"/api/jobs/{job}/stop", headers=auth(mint, ANA))
    assert r.status == 503
    assert (await r.json())["reason"] == (
        f"role scientist via user:{ANA} grants stop:own, but Ray answered {status} when asked who "
        f"submitted job {job}"
    )
    assert jobs.stopped == []


async def test_ray_unreachable_during_the_lookup_grants_nothing(
    make_client: Make, mint: Any, access_records: AccessRecords
) -> None:
    client = await make_client(policy=team_policy(), access_log=access_records, upstream="http://127.0.0.1:9")
    r = await client.post("/api/jobs/raysubmit_x/stop", headers=auth(mint, ANA))
    assert r.status == 503
    assert (await r.json())["reason"] == (
        f"role scientist via user:{ANA} grants stop:own, but Ray could not be asked who submitted job "
        "raysubmit_x (Ray is not reachable)"
    )
    assert access_records.last()["job_id"] == "raysubmit_x"


async def test_a_compressed_submission_reaches_ray_plain(
    client: TestClient, mint: Any, jobs: RayJobs, stub_ray: tuple[RayDouble, str]
) -> None:
    """aiohttp's server decompresses request bodies: the rewritten body goes without the encoding."""
    import gzip

    raw = gzip.compress(b'{"entrypoint": "x", "metadata": {"k": "v"}}')
    r = await client.post(
        "/api/jobs/",
        headers={**auth(mint, ANA), "Content-Encoding": "gzip", "Content-Type": "application/json"},
        data=raw,
    )
    assert r.status == 200, await r.text()
    assert json.loads(jobs.submitted[-1])["metadata"] == {"k": "v", "submitted_by": ANA}
    assert "content-encoding" not in stub_ray[0].last_headers()
