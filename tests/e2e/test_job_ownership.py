"""End to end: job ownership and job secrets with the real `ray job` CLI -> the proxy -> a real Ray
2.60 head (token auth on). One head for the module.

A team: ana and ben are scientists (`stop:own`, `delete:own`, `logs:own`), lea is their lead (`stop`,
`delete`, `logs` on any job), vic may only look. ana submits a job whose runtime env carries a secret
(and which starts an actor and a task with a secret of their own); the job proves it received them
by printing their SHA-256; nobody reads a value back through any route of the proxy, while Ray itself,
asked with its token, still holds them (so the checks are not vacuous).
"""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devkit.http import http_get
from devkit.stack import Stack
from proxy.authz.routes import RAY_ROUTES

pytestmark = pytest.mark.e2e

ANA, BEN, LEA, VIC = "ana@example.com", "ben@example.com", "lea@example.com", "vic@example.com"
SECRET = "wandb-9f1c2e7d-do-not-share"
ACTOR_SECRET = SECRET[::-1]  # what the job hands its actor and task, from its own environment
POLICY = textwrap.dedent("""\
    roles:
      scientist: [view, submit, logs:own, stop:own, delete:own]
      lead: [view, submit, logs, stop, delete]
      viewer: [view]
    bindings:
      - tenant: team-a
        role: scientist
        members: ["user:ana@example.com", "user:ben@example.com"]
      - tenant: team-a
        role: lead
        members: ["user:lea@example.com"]
      - tenant: team-a
        role: viewer
        members: ["user:vic@example.com"]
""")
SECRET_JOB = textwrap.dedent("""\
    import hashlib, os, time
    import ray

    def h(v):
        return hashlib.sha256(v.encode()).hexdigest()

    ray.init()
    print("job sees", h(os.environ["SECRET_TOKEN"]), flush=True)
    env = {"env_vars": {"ACTOR_TOKEN": os.environ["SECRET_TOKEN"][::-1]}}

    @ray.remote(runtime_env=env)
    class Holder:
        def sees(self):
            return h(os.environ["ACTOR_TOKEN"])

    @ray.remote(runtime_env=env)
    def task():
        return h(os.environ["ACTOR_TOKEN"])

    holder = Holder.options(name="holder").remote()
    print("actor sees", ray.get(holder.sees.remote()), "task sees", ray.get(task.remote()), flush=True)
    print("READY", flush=True)
    time.sleep(300)
""")
SLEEP = ("--", "python", "-c", "import time; time.sleep(300)")


def sha(v: str) -> str:
    return hashlib.sha256(v.encode()).hexdigest()


def submission_id(output: str) -> str:
    m = re.search(r"raysubmit_[A-Za-z0-9]+", output)
    assert m, output
    return m.group(0)


def ok(r: Any) -> str:
    assert r.returncode == 0, r.stdout + r.stderr
    return str(r.stdout)


def refused(r: Any) -> str:
    out = str(r.stdout + r.stderr)
    assert r.returncode != 0, out
    return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("owners"), policy=POLICY) as s:
        yield s


@pytest.fixture(scope="module")
def jobs(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """ana's secret job (claiming to be lea's in its metadata) and ben's sleeper, running."""
    workdir = tmp_path_factory.mktemp("secret-job")
    (workdir / "secret_job.py").write_text(SECRET_JOB)
    claim = {"submitted_by": LEA, "team": "vision"}
    out = ok(
        stack.ray(
            "submit",
            "--no-wait",
            "--working-dir",
            str(workdir),
            "--runtime-env-json",
            json.dumps({"env_vars": {"SECRET_TOKEN": SECRET}}),
            "--metadata-json",
            json.dumps(claim),
            "--",
            "python",
            "secret_job.py",
            email=ANA,
        )
    )
    ana_job = submission_id(out)
    ben_job = submission_id(ok(stack.ray("submit", "--no-wait", *SLEEP, email=BEN)))
    logs = ""
    for _ in range(240):  # up to 120 s for the runtime env, the actor and the task
        logs = stack.ray("logs", ana_job, email=ANA).stdout
        if "READY" in logs:
            break
        assert "Traceback" not in logs, logs
        time.sleep(0.5)
    assert "READY" in logs, logs
    return {"ana": ana_job, "ben": ben_job, "ana_logs": logs}


def get(stack: Stack, email: str, target: str) -> tuple[int, bytes]:
    return http_get(
        stack.proxy_url + target, headers={"x-goog-iap-jwt-assertion": stack.token(email)}, timeout=60
    )


def test_the_metadata_names_the_real_submitter_even_when_the_caller_claims_another(
    stack: Stack, jobs: dict[str, str]
) -> None:
    status, body = get(stack, VIC, f"/api/jobs/{jobs['ana']}")
    assert status == 200
    assert json.loads(body)["metadata"] == {"submitted_by": ANA, "team": "vision"}
    listed = ok(stack.ray("list", email=VIC))  # what `ray job list` shows anyone who may look
    assert f"'submitted_by': '{ANA}'" in listed and f"'submitted_by': '{BEN}'" in listed
    assert f"'submitted_by': '{LEA}'" not in listed
    posts = [
        r
        for r in stack.access_records()
        if r.get("httpRequest", {}).get("requestMethod") == "POST" and r.get("job_id") == jobs["ana"]
    ]
    assert len(posts) == 1 and posts[0]["principal"] == ANA and posts[0]["httpRequest"]["status"] == 200


def test_the_job_receives_its_secrets(jobs: dict[str, str]) -> None:
    logs = jobs["ana_logs"]
    assert f"job sees {sha(SECRET)}" in logs
    assert f"actor sees {sha(ACTOR_SECRET)} task sees {sha(ACTOR_SECRET)}" in logs


def concrete(stack: Stack, jobs: dict[str, str]) -> list[str]:
    """Every GET route of the table with its parameters filled in from the live cluster."""
    auth = {"X-Ray-Authorization": f"Bearer {stack.head.token}"}
    nodes = json.loads(http_get(stack.head.dashboard_url + "/api/v0/nodes", headers=auth)[1])
    node = nodes["data"]["result"]["result"][0]["node_id"]
    actors = json.loads(http_get(stack.head.dashboard_url + "/api/v0/actors", headers=auth)[1])
    actor = next(a["actor_id"] for a in actors["data"]["result"]["result"] if a.get("name") == "holder")
    job_id = json.loads(http_get(stack.head.dashboard_url + f"/api/jobs/{jobs['ana']}", headers=auth)[1])[
        "job_id"
    ]
    fill = {
        "job_or_submission_id": jobs["ana"],
        "node_id": node,
        "actor_id": actor,
        "job_id": job_id,
        "filename": "index.html",
        "protocol": "gcs",
        "package_name": "missing.zip",
        "delay_s": "0",
    }
    queries = {  # detail=1: the columns that carry runtime envs
        "/nodes": ["view=summary"],
        "/api/v0/actors": ["detail=1"],
        "/api/v0/jobs": ["detail=1"],
        "/api/v0/tasks": ["detail=1&limit=1000"],
        "/api/v0/workers": ["detail=1"],
        "/api/v0/runtime_envs": ["detail=1"],
        "/api/v0/logs": [f"node_id={node}"],
        "/api/v0/logs/file": [
            f"node_id={node}&filename={name}&lines=100000"
            for name in ("runtime_env_agent.log", "raylet.out", "dashboard_agent.log", "gcs_server.out")
        ]
        + [f"node_id={node}&filename=job-driver-{jobs['ana']}.log", f"submission_id={jobs['ana']}"],
        "/api/v0/tasks/timeline": [f"job_id={job_id}"],
        "/events": [f"job_id={job_id}", ""],
    }
    out = []
    for r in RAY_ROUTES:
        if r.method != "GET" or r.websocket or r.pattern == "/api/v0/logs/stream":
            continue  # the log tail and the file follower never end by themselves
        path = r.pattern
        for name, value in fill.items():
            path = re.sub(r"\{" + name + r"(:[^}]+)?\}", value, path)
        out += [path + (f"?{q}" if q else "") for q in queries.get(r.pattern, [""])]
    return out


def test_nobody_reads_a_secret_back_through_any_route(stack: Stack, jobs: dict[str, str]) -> None:
    targets = concrete(stack, jobs)
    assert len(targets) > 60
    direct = {"X-Ray-Authorization": f"Bearer {stack.head.token}"}
    # Not vacuous: Ray holds the values, and shows them to a client that does not look like a browser.
    for target in (
        f"/api/jobs/{jobs['ana']}",
        "/api/v0/actors?detail=1",
        "/api/v0/tasks?detail=1&limit=1000",
    ):
        assert SECRET.encode() in http_get(stack.head.dashboard_url + target, headers=direct)[1] or (
            ACTOR_SECRET.encode() in http_get(stack.head.dashboard_url + target, headers=direct)[1]
        ), target
    node_logs = [t for t in targets if "filename=runtime_env_agent.log" in t]
    assert SECRET.encode() in http_get(stack.head.dashboard_url + node_logs[0], headers=direct)[1]

    answered: dict[str, int] = {}
    for email in (VIC, ANA, LEA):  # a viewer, the submitter, and the lead (who may read every log)
        for target in targets:
            status, body = get(stack, email, target)
            where = f"{email} GET {target} -> {status}"
            assert SECRET.encode() not in body and ACTOR_SECRET.encode() not in body, where
            answered[f"{email} {target}"] = status
    # Each way a runtime env comes back was answered (redacted), not refused: a real proof.
    for target in (
        f"/api/jobs/{jobs['ana']}",
        "/api/jobs/",
        "/api/v0/jobs?detail=1",
        "/api/v0/runtime_envs?detail=1",
    ):
        assert answered[f"{VIC} {target}"] == 200, target
        status, body = get(stack, ANA, target)
        assert status == 200 and b"SECRET_TOKEN" in body and b"<redacted>" in body, target
    for target in ("/api/v0/actors?detail=1", "/api/v0/tasks?detail=1&limit=1000"):
        status, body = get(stack, ANA, target)
        assert status == 200 and b"ACTOR_TOKEN" in body and b"<redacted>" in body, target
    assert answered[f"{LEA} {node_logs[0]}"] == 403  # Ray's runtime-env log: refused even to the lead
    assert answered[f"{LEA} /api/jobs/{jobs['ana']}/logs"] == 200  # the job's own output is not

    for email in (VIC, ANA):  # and what the CLI prints
        for args in (("list",), ("status", jobs["ana"])):
            r = stack.ray(*args, email=email)
            assert r.returncode == 0 and SECRET not in r.stdout + r.stderr, (email, args)
    assert "<redacted>" in stack.ray("list", email=VIC).stdout


def test_a_scientist_cannot_stop_delete_or_read_a_colleagues_job(stack: Stack, jobs: dict[str, str]) -> None:
    ana_job = jobs["ana"]
    out = refused(stack.ray("stop", ana_job, email=BEN))
    assert f"grants stop:own, but job {ana_job} was submitted by {ANA}" in out
    out = refused(stack.ray("delete", ana_job, email=BEN))
    assert f"grants delete:own, but job {ana_job} was submitted by {ANA}" in out
    out = refused(stack.ray("logs", ana_job, email=BEN))
    assert "grants logs:own, but job" in out
    assert "RUNNING" in ok(stack.ray("status", ana_job, email=VIC))


def test_a_scientist_stops_and_deletes_their_own_job(stack: Stack, jobs: dict[str, str]) -> None:
    ben_job = jobs["ben"]
    ok(stack.ray("stop", ben_job, email=BEN))
    assert "was stopped" in ok(stack.ray("status", ben_job, email=VIC))
    ok(stack.ray("delete", ben_job, email=BEN))
    assert ben_job not in ok(stack.ray("list", email=VIC))


def test_a_job_submitted_around_the_proxy_reaches_only_the_unscoped_verb(stack: Stack) -> None:
    import urllib.request

    body = json.dumps({"entrypoint": "python -c 'import time; time.sleep(300)'"}).encode()
    request = urllib.request.Request(
        stack.head.dashboard_url + "/api/jobs/",
        data=body,
        method="POST",
        headers={"X-Ray-Authorization": f"Bearer {stack.head.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:  # straight to Ray, with its token
        around = json.loads(answer.read())["submission_id"]
    out = refused(stack.ray("stop", around, email=ANA))
    assert f"job {around} has no recorded submitter" in out
    ok(stack.ray("stop", around, email=LEA))


def test_the_lead_stops_anyones_job_and_the_owner_follows_its_logs(
    stack: Stack, jobs: dict[str, str]
) -> None:
    ana_job = jobs["ana"]
    refused(stack.ray("logs", ana_job, "--follow", email=BEN))  # the WebSocket tail: same rule
    ok(stack.ray("stop", ana_job, email=LEA))
    assert "was stopped" in ok(stack.ray("status", ana_job, email=ANA))
    followed = ok(stack.ray("logs", ana_job, "--follow", email=ANA))
    assert "READY" in followed and SECRET not in followed


def test_ray_holds_the_submitters_proxy_wrote(stack: Stack, jobs: dict[str, str]) -> None:
    """Read straight from Ray: what `ray job list` on the cluster itself shows."""
    auth = {"X-Ray-Authorization": f"Bearer {stack.head.token}"}
    listed = json.loads(http_get(stack.head.dashboard_url + "/api/jobs/", headers=auth)[1])
    owners = {j["submission_id"]: (j.get("metadata") or {}).get("submitted_by") for j in listed}
    assert owners[jobs["ana"]] == ANA
