"""The tests' config and policy, written as real files, as a platform team would write them."""

from __future__ import annotations

import textwrap
from pathlib import Path

ROOT = "root@example.com"  # holds every verb in team-a (see `write_hardening_config`)
AUDIENCE = "/projects/111/global/backendServices/222"
TENANT = "team-a"

POLICY = textwrap.dedent("""\
    roles:
      viewer: [view]
      scientist: [view, logs, submit, stop, delete]
      admin: ["*"]
    groups:
      ml-team@example.com: [carol@example.com]
    bindings:
      - tenant: team-a
        role: scientist
        members: ["user:alice@example.com", "group:ml-team@example.com", "domain:example.org",
                  "serviceAccount:ci@p.iam.gserviceaccount.com"]
      - tenant: team-a
        role: viewer
        members: ["user:bob@example.com"]
      - tenant: team-a
        role: scientist
        members: ["system:ray-token"]  # inert unless accept_ray_token is on
      - tenant: team-b
        role: admin
        members: ["user:mallory@example.com"]
""")


def write_config(
    tmp: Path, jwks_url: str, upstream: str, *, ray_token: str | None = "ray-secret-token", extra: str = ""
) -> Path:
    (tmp / "policy.yaml").write_text(POLICY)
    token_line = ""
    if ray_token is not None:
        (tmp / "ray_token").write_text(ray_token + "\n")
        token_line = "ray_token_file: ray_token\n"
    cfg = tmp / "proxy.yaml"
    cfg.write_text(
        textwrap.dedent(f"""\
        listen: 127.0.0.1:18999
        upstream: {upstream}
        tenant: {TENANT}
        iap:
          audiences: ["{AUDIENCE}"]
          jwks_url: {jwks_url}
          key_min_refetch_seconds: 1
        policy_file: policy.yaml
        """)
        + token_line
        + extra
    )
    return cfg


def write_hardening_config(tmp: Path, jwks_url: str, upstream: str, extra: str = "") -> Path:
    """the config and policy of `write_config`, plus ROOT with every verb in team-a."""
    cfg = write_config(tmp, jwks_url, upstream, extra=extra)
    policy = tmp / "policy.yaml"
    binding = f'  - tenant: team-a\n    role: admin\n    members: ["user:{ROOT}"]\n'
    policy.write_text(policy.read_text() + binding)
    return cfg
