"""Config loading: every problem named with its key path and value, unknown keys refused."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from devkit.config import POLICY
from proxy.authz.policy_file import read_policy
from proxy.errors import ConfigError
from proxy.settings import Iap, load


def write(tmp_path: Path, text: str, policy: str = POLICY) -> Path:
    (tmp_path / "policy.yaml").write_text(policy)
    p = tmp_path / "proxy.yaml"
    p.write_text(textwrap.dedent(text))
    return p


GOOD = """\
    listen: 0.0.0.0:8265
    upstream: http://127.0.0.1:18265
    tenant: team-a
    iap:
      audiences: ["/projects/1/global/backendServices/2"]
    policy_file: policy.yaml
"""


def test_good_config_with_defaults(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, GOOD))
    assert cfg.listen.port == 8265 and cfg.tenant == "team-a"
    defaults = Iap.model_fields
    assert cfg.iap.issuer == defaults["issuer"].default and cfg.iap.jwks_url == defaults["jwks_url"].default
    assert cfg.iap.leeway_seconds == 30 and cfg.limits.max_body_bytes >= 100 * 1024 * 1024
    assert cfg.policy_file == tmp_path / "policy.yaml" and cfg.ray_token_file is None


def test_tenant_defaults_to_pod_namespace(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, GOOD.replace("    tenant: team-a\n", "")), environ={"POD_NAMESPACE": "team-z"})
    assert cfg.tenant == "team-z"
    with pytest.raises(ConfigError, match="tenant: required"):
        load(write(tmp_path, GOOD.replace("    tenant: team-a\n", "")), environ={})


@pytest.mark.parametrize(
    "change, message",
    [
        (("listen: 0.0.0.0:8265", "listen: ':x'"), "listen: ':x' must be HOST:PORT"),
        (("listen: 0.0.0.0:8265", "listen: 1.2.3.4:99999"), "listen: '1.2.3.4:99999'"),
        (
            ("upstream: http://127.0.0.1:18265", "upstream: http://127.0.0.1:18265/api"),
            "upstream: 'http://127.0.0.1:18265/api'",
        ),
        (("tenant: team-a", "tenant: Team_A"), "tenant: 'Team_A' must be a Kubernetes namespace name"),
        (("tenant: team-a", "tenant: 5"), "tenant: 5 must be a string"),
        (
            ('audiences: ["/projects/1/global/backendServices/2"]', "audiences: []"),
            "iap.audiences: [] must list",
        ),
        (('audiences: ["/projects/1/global/backendServices/2"]', "audiences: [7]"), "iap.audiences[0]: 7"),
        (
            ('audiences: ["/projects/1/global/backendServices/2"]', "audience: x"),
            "iap.audience: unknown key: did you mean audiences?",
        ),
        (("policy_file: policy.yaml", "policy_file: missing.yaml"), "policy_file: "),
        (("policy_file: policy.yaml", "policy_file: policy.yaml\n    colour: blue"), "colour: unknown key"),
    ],
    ids=lambda v: v[1] if isinstance(v, tuple) else v,
)
def test_each_problem_names_key_and_value(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, GOOD.replace(*change)))
    assert any(message in p for p in err.value.problems), err.value.problems


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    text = (
        GOOD + "    iap2: {}\n    limits: {max_body_bytes: -1, speed: 3}\n    tracing: {exporter: jaeger}\n"
    )
    text = text.replace("tenant: team-a", "tenant: A").replace(
        'audiences: ["/projects/1/global/backendServices/2"]',
        'audiences: ["/projects/1/global/backendServices/2"]\n      jwks_url: http://keys.example.com/k\n'
        '      leeway_seconds: "30"',
    )
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, text))
    assert err.value.problems == [
        "tenant: 'A' must be a Kubernetes namespace name",
        "iap.leeway_seconds: '30' must be an integer",
        "iap.jwks_url: 'http://keys.example.com/k' must be https (plain http is allowed only on loopback)",
        "limits.max_body_bytes: -1 must be between 0 and 1.09951e+12",
        "limits.speed: unknown key",
        "tracing.exporter: 'jaeger' must be none, console or otlp",
        "iap2: unknown key",
    ]


def test_http_key_set_is_allowed_on_loopback_only(tmp_path: Path) -> None:
    text = GOOD.replace(
        'audiences: ["/projects/1/global/backendServices/2"]',
        'audiences: ["/projects/1/global/backendServices/2"]\n      jwks_url: http://127.0.0.1:9999/jwks.json',
    )
    assert load(write(tmp_path, text)).iap.jwks_url.startswith("http://127.0.0.1")


@pytest.mark.parametrize(
    "policy, message",
    [
        ("roles: {r: [fly]}\nbindings: []\n", "roles.r[0]: 'fly' is not a verb"),
        ("roles: {r: []}\n", "roles.r: [] must be a non-empty list"),
        (
            "roles: {r: [view]}\nbindings: [{tenant: team-a, role: boss, members: []}]\n",
            "bindings[0].role: 'boss' is not a role",
        ),
        (
            "roles: {r: [view]}\nbindings: [{tenant: team-a, role: r, members: [alice@example.com]}]\n",
            "must be KIND:VALUE",
        ),
        (
            "roles: {r: [view]}\nbindings: [{tenant: team-a, role: r, members: ['group:g@example.com']}]\n",
            "names a group not defined",
        ),
        (
            "roles: {r: [view]}\n"
            "bindings: [{tenant: team-a, role: r, members: ['serviceAccount:a@example.com']}]\n",
            "is not a service account",
        ),
        (
            "roles: {r: [view]}\nbindings: [{tenant: team-a, role: r, members: ['domain:not a domain']}]\n",
            "is not a domain",
        ),
        (
            "roles: {r: [view]}\nbindings: [{tenant: team-a, role: r, members: [], extra: 1}]\n",
            "bindings[0].extra: unknown key",
        ),
        (
            "roles: {r: [view]}\nbindings: [{tenant: TEAM, role: r, members: []}]\n",
            "bindings[0].tenant: 'TEAM' is not a namespace name",
        ),
        ("groups: {g@example.com: [not-an-email]}\n", "groups.g@example.com[0]: 'not-an-email'"),
        ("roles: [view]\n", "roles: ['view'] must be"),
        ("roles: {r: [view]\n", "is not valid YAML at line"),
    ],
    ids=lambda v: v if "\n" not in v else v.split("\n")[0],
)
def test_policy_problems(tmp_path: Path, policy: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, GOOD, policy=policy))
    assert any(message in p and str(tmp_path / "policy.yaml") in p for p in err.value.problems), (
        err.value.problems
    )


def test_shipped_example_config_is_valid() -> None:
    root = Path(__file__).resolve().parents[3]
    cfg = load(root / "config" / "proxy.yaml")
    assert cfg.tenant == "team-a" and cfg.policy_file is not None
    assert read_policy(cfg.policy_file).bindings


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    """A reviewer reads the first `bindings:`; a plain YAML reader would obey the second."""
    policy = "roles: {r: [view]}\nbindings: []\nbindings: [{tenant: team-a, role: r, members: []}]\n"
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, GOOD, policy=policy))
    assert any("key 'bindings' appears twice" in p and "line 3" in p for p in err.value.problems)
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, GOOD + "    tenant: team-b\n"))
    assert any("key 'tenant' appears twice" in p for p in err.value.problems)


@pytest.mark.parametrize(
    "upstream", ["http://127.0.0.1:1?", "http://127.0.0.1:1#", "http://127.0.0.1:1/?a=b"]
)
def test_upstream_with_a_query_or_fragment_is_refused(tmp_path: Path, upstream: str) -> None:
    """Ray would see another path than the one classified."""
    with pytest.raises(ConfigError, match="upstream: .* must be http://HOST:PORT"):
        load(write(tmp_path, GOOD.replace("http://127.0.0.1:18265", upstream)))


@pytest.mark.parametrize(
    "tls, message",
    [
        ("{}", "client_tls: {} needs either self_signed: true or cert_file and key_file"),
        ("{cert_file: c.pem}", "needs both cert_file and key_file"),
        ("{self_signed: true, cert_file: c.pem, key_file: k.pem}", "needs either self_signed"),
    ],
)
def test_client_tls_takes_one_way(tmp_path: Path, tls: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, GOOD + f"    client_tls: {tls}\n"))
    assert any(message in p for p in err.value.problems), err.value.problems


def test_client_tls_files_are_relative_to_the_config(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, GOOD + "    client_tls: {cert_file: c.pem, key_file: k.pem}\n"))
    assert cfg.client_tls is not None and cfg.client_tls.cert_file == tmp_path / "c.pem"


@pytest.mark.parametrize(
    "text",
    [
        GOOD.replace('["/projects/1/global/backendServices/2"]', "[]"),
        GOOD + "    google_id_tokens:\n      audiences: []\n",
    ],
    ids=["iap", "google_id_tokens"],
)
def test_every_signed_token_kind_needs_an_audience(tmp_path: Path, text: str) -> None:
    section = "iap" if "google_id_tokens" not in text else "google_id_tokens"
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, text))
    assert f"{section}.audiences: [] must list at least one audience" in str(err.value)
