"""Configuration that reads one way to a reviewer and another way to the proxy is refused at load:
a key given twice (a reviewer reads the first `bindings:`, a plain YAML reader obeys the second),
and an `upstream` with a query, a fragment, a path or a user (Ray would see another path than the one
classified). Each problem names the key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from devkit.config import POLICY, write_hardening_config
from proxy.authz.policy_file import read_policy
from proxy.errors import ConfigError
from proxy.settings import load

JWKS = "http://127.0.0.1:1/jwks.json"


def config(tmp_path: Path, extra: str = "", upstream: str = "http://127.0.0.1:2") -> Path:
    return write_hardening_config(tmp_path, JWKS, upstream, extra)


@pytest.mark.parametrize(
    "extra, key",
    [
        ("tenant: team-b\n", "tenant"),
        ("policy_file: other.yaml\n", "policy_file"),
        ("limits:\n  max_body_bytes: 1\nlimits:\n  max_body_bytes: 2\n", "limits"),
        ("limits: {max_headers: 10, max_headers: 1000}\n", "max_headers"),
        ("upstream: http://127.0.0.1:3\n", "upstream"),
    ],
    ids=["top-level", "policy-file", "section", "flow-mapping", "upstream"],
)
def test_a_key_given_twice_in_the_config_is_an_error_naming_it(tmp_path: Path, extra: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(config(tmp_path, extra))
    assert any(f"key {key!r} appears twice" in p for p in err.value.problems), err.value.problems


@pytest.mark.parametrize(
    "policy, key",
    [
        (
            POLICY
            + "bindings:\n  - tenant: team-a\n    role: admin\n    members: ['user:eve@example.com']\n",
            "bindings",
        ),
        (POLICY.replace("  viewer: [view]\n", "  viewer: [view]\n  viewer: ['*']\n"), "viewer"),
        (
            POLICY.replace("    role: viewer\n", "    role: viewer\n    role: admin\n"),
            "role",
        ),
        (
            POLICY.replace("groups:\n", "groups:\n  ml-team@example.com: [eve@example.com]\n"),
            "ml-team@example.com",
        ),
    ],
    ids=["bindings", "role-definition", "binding-role", "group"],
)
def test_a_key_given_twice_in_the_policy_is_an_error_naming_it(tmp_path: Path, policy: str, key: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(policy)
    with pytest.raises(ConfigError) as err:
        read_policy(path)
    assert any(f"key {key!r} appears twice" in p for p in err.value.problems), err.value.problems


def test_a_duplicate_in_the_policy_fails_the_whole_config_load(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    (tmp_path / "policy.yaml").write_text(POLICY + "bindings: []\n")
    with pytest.raises(ConfigError) as err:
        load(cfg)
    assert any("'bindings' appears twice" in p for p in err.value.problems), err.value.problems


@pytest.mark.parametrize(
    "upstream",
    [
        "http://127.0.0.1:18265?",
        "http://127.0.0.1:18265#",
        "http://127.0.0.1:18265/?x=1",
        "http://127.0.0.1:18265#/api/jobs/",
        "http://127.0.0.1:18265/api",
        "http://127.0.0.1:18265/%2e%2e",
        "http://user@127.0.0.1:18265",
        "http://user:pw@127.0.0.1:18265",
        "ftp://127.0.0.1:18265",
        "127.0.0.1:18265",
    ],
)
def test_an_upstream_that_changes_the_forwarded_target_is_refused(tmp_path: Path, upstream: str) -> None:
    cfg = config(tmp_path, upstream=f"'{upstream}'")
    with pytest.raises(ConfigError) as err:
        load(cfg)
    assert any(
        p.startswith("upstream: ") and "must be http://HOST:PORT (the Ray dashboard, no path)" in p
        for p in err.value.problems
    ), err.value.problems


@pytest.mark.parametrize(
    "upstream", ["http://127.0.0.1:18265", "http://127.0.0.1:18265/", "https://ray-head:8443"]
)
def test_a_plain_upstream_loads(tmp_path: Path, upstream: str) -> None:
    assert load(config(tmp_path, upstream=upstream)).upstream == upstream.rstrip("/")


def test_the_message_says_where(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text(
        textwrap.dedent("""\
        tenant: team-a
        iap:
          audiences: ["/projects/1/global/backendServices/2"]
        tenant: team-b
        """)
    )
    with pytest.raises(ConfigError) as err:
        load(path)
    assert err.value.problems == [
        f"config: {str(path)!r} is not valid YAML at line 4, column 1: key 'tenant' appears twice"
    ]
