"""End to end: the real `ray job` CLI -> the proxy -> a real Ray 2.60 head with token auth on.

One head for the module (it takes seconds to start). Identities: alice (scientist), bob (viewer),
carol (view + logs), mallory (scientist of another tenant), and nobody (no assertion at all).
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.http import http_get
from devkit.stack import Stack

pytestmark = pytest.mark.e2e

SCRIPT = textwrap.dedent("""\
    import os, time
    for i in range(3):
        print(f"hello from the cluster {i}", flush=True)
    print("marker", os.environ.get("DEMO_MARKER"), flush=True)
""")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("stack")) as s:
        yield s


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("job")
    (d / "hello.py").write_text(SCRIPT)
    return d


def submission_id(output: str) -> str:
    m = re.search(r"raysubmit_[A-Za-z0-9]+", output)
    assert m, output
    return m.group(0)


def records_for(stack: Stack, sub_id: str) -> list[dict[str, object]]:
    return [r for r in stack.access_records() if sub_id in str(r["httpRequest"]["requestUrl"])]


@pytest.fixture(scope="module")
def alice_job(stack: Stack, workdir: Path) -> str:
    """alice submits with a working dir and follows the logs to the end."""
    r = stack.ray(
        "submit",
        "--working-dir",
        str(workdir),
        "--runtime-env-json",
        json.dumps({"env_vars": {"DEMO_MARKER": "m-42"}}),
        "--",
        "python",
        "hello.py",
        email="alice@example.com",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    for i in range(3):
        assert f"hello from the cluster {i}" in r.stdout
    assert "marker m-42" in r.stdout and "succeeded" in r.stdout.lower()
    return submission_id(r.stdout)


def test_submit_with_working_dir_streams_logs_through_websocket(stack: Stack, alice_job: str) -> None:
    records = stack.access_records()
    uploads = [
        r
        for r in records
        if r["httpRequest"]["requestMethod"] == "PUT" and "/api/packages/" in r["httpRequest"]["requestUrl"]
    ]
    assert uploads and uploads[0]["decision"] == "allow" and uploads[0]["verb"] == "submit"
    assert int(uploads[0]["httpRequest"]["requestSize"]) > 0
    tails = [r for r in records_for(stack, alice_job) if r["kind"] == "websocket"]
    assert tails and tails[0]["httpRequest"]["status"] == 101 and tails[0]["verb"] == "logs"
    assert tails[0]["principal"] == "alice@example.com" and int(tails[0]["httpRequest"]["responseSize"]) > 0


def test_every_request_leaves_one_traced_record_without_secrets(stack: Stack, alice_job: str) -> None:
    records = stack.access_records()
    assert records
    raw = stack.access_log.read_text()
    assert stack.head.token not in raw and "eyJ" not in raw
    for r in records:
        assert r["trace_id"] is None and len(str(r["request_id"])) == 32  # no caller trace, no tracing
        assert r["decision"] in ("allow", "deny", "local", "error")


def test_viewer_lists_jobs_but_cannot_submit(stack: Stack, workdir: Path, alice_job: str) -> None:
    r = stack.ray("list", email="bob@example.com")
    assert r.returncode == 0, r.stderr
    assert alice_job in r.stdout
    r = stack.ray(
        "submit", "--working-dir", str(workdir), "--", "python", "hello.py", email="bob@example.com"
    )
    assert r.returncode != 0
    assert "forbidden" in r.stdout + r.stderr
    assert "verb submit is not granted by role(s) viewer in tenant team-a" in r.stdout + r.stderr
    listed = stack.ray("list", email="alice@example.com").stdout
    assert listed.count("raysubmit_") == stack.ray("list", email="bob@example.com").stdout.count("raysubmit_")


def test_no_assertion_is_refused(stack: Stack) -> None:
    r = stack.ray("list")
    assert r.returncode != 0 and "unauthenticated" in r.stdout + r.stderr


def test_another_tenants_scientist_gets_nothing(stack: Stack) -> None:
    r = stack.ray("list", email="mallory@example.com")
    assert r.returncode != 0 and "no role in tenant team-a" in r.stdout + r.stderr


def test_logs_need_the_logs_verb(stack: Stack, alice_job: str) -> None:
    r = stack.ray("logs", alice_job, email="carol@example.com")
    assert r.returncode == 0 and "hello from the cluster 2" in r.stdout
    r = stack.ray("logs", alice_job, email="bob@example.com")
    assert r.returncode != 0 and "verb logs" in r.stdout + r.stderr


def test_logs_follow_over_websocket(stack: Stack, alice_job: str) -> None:
    r = stack.ray("logs", alice_job, "--follow", email="carol@example.com")
    assert r.returncode == 0, r.stderr
    assert "hello from the cluster 0" in r.stdout


def test_stop_and_delete(stack: Stack, workdir: Path) -> None:
    r = stack.ray(
        "submit", "--no-wait", "--", "python", "-c", "import time; time.sleep(120)", email="alice@example.com"
    )
    assert r.returncode == 0, r.stderr
    job = submission_id(r.stdout)
    refused = stack.ray("stop", job, email="bob@example.com")
    assert refused.returncode != 0 and "verb stop" in refused.stdout + refused.stderr
    r = stack.ray("stop", job, email="alice@example.com")
    assert r.returncode == 0, r.stdout + r.stderr
    status = stack.ray("status", job, email="bob@example.com")
    assert "stopped" in status.stdout.lower(), status.stdout
    refused = stack.ray("delete", job, email="bob@example.com")
    assert refused.returncode != 0 and "verb delete" in refused.stdout + refused.stderr
    r = stack.ray("delete", job, email="alice@example.com")
    assert r.returncode == 0, r.stdout + r.stderr
    assert job not in stack.ray("list", email="alice@example.com").stdout


def test_client_side_ray_token_is_replaced_by_the_proxy(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CLI in token mode sends `Authorization: Bearer <its token>`; Ray would reject that one
    (Authorization wins over X-Ray-Authorization), so the proxy must strip it."""
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64}
    import os
    import subprocess
    import sys

    cmd = [
        str(Path(sys.executable).parent / "ray"),
        "job",
        "list",
        "--address",
        stack.proxy_url,
        "--headers",
        json.dumps({"x-goog-iap-jwt-assertion": stack.token("bob@example.com")}),
    ]
    r = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env={**os.environ, **env}, stdin=subprocess.DEVNULL
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_log_file_streams_over_http(stack: Stack, alice_job: str) -> None:
    auth = {"x-goog-iap-jwt-assertion": stack.token("carol@example.com")}
    status, body = http_get(f"{stack.proxy_url}/api/v0/nodes", headers=auth, timeout=30)
    assert status == 200, body[:300]
    node_id = json.loads(body)["data"]["result"]["result"][0]["node_id"]
    status, body = http_get(
        f"{stack.proxy_url}/api/v0/logs/file?node_id={node_id}&filename=job-driver-{alice_job}.log&lines=50",
        headers=auth,
        timeout=30,
    )
    assert status == 200 and b"hello from the cluster 1" in body, body[:500]


def test_dashboard_ray_sees_only_the_proxy(stack: Stack) -> None:
    """Without the proxy, a forged identity header gets nothing from Ray: its token is required."""
    status, _ = http_get(
        f"{stack.head.dashboard_url}/api/jobs/",
        headers={"x-goog-iap-jwt-assertion": stack.token("alice@example.com")},
    )
    assert status == 401
