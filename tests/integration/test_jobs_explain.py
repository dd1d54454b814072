"""`explain --job-owner`: the owner-scoped decision `serve` makes, shown offline; and check-config's
warning for a reveal role the policy does not define."""

from __future__ import annotations

import contextlib
import io
import json
import textwrap
from pathlib import Path

import pytest

from devkit.config import AUDIENCE
from proxy.cli import main
from tests.integration.test_jobs_ownership import TEAM


def config(tmp_path: Path, extra: str = "") -> str:
    (tmp_path / "policy.yaml").write_text(TEAM)
    (tmp_path / "proxy.yaml").write_text(
        textwrap.dedent(f"""\
        tenant: team-a
        iap:
          audiences: ["{AUDIENCE}"]
        policy_file: policy.yaml
        """)
        + extra
    )
    return str(tmp_path / "proxy.yaml")


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    "who, owner, code, reason",
    [
        ("ana@example.com", "ana@example.com", 0, "grants stop:own: job raysubmit_x was submitted by ana@"),
        ("ana@example.com", "Ana@Example.com", 0, "was submitted by ana@example.com"),
        (
            "ana@example.com",
            "ben@example.com",
            1,
            "grants stop:own, but job raysubmit_x was submitted by ben@",
        ),
        ("ana@example.com", None, 1, "grants stop:own, but job raysubmit_x has no recorded submitter"),
        ("lea@example.com", None, 0, "role lead via user:lea@example.com grants stop"),
        ("vic@example.com", "vic@example.com", 1, "verb stop is not granted by role(s) viewer"),
    ],
    ids=["own", "own-any-case", "colleague", "nobody", "lead", "viewer"],
)
def test_explain_shows_the_owner_scoped_decision(
    tmp_path: Path, who: str, owner: str | None, code: int, reason: str
) -> None:
    args = ["explain", "--config", config(tmp_path), "--as", who, "--method", "POST"]
    args += ["--job-owner", owner] if owner else []
    got, out, err = cli(*args, "/api/jobs/raysubmit_x/stop")
    assert got == code, out + err
    said = json.loads(out)
    assert reason in said["reason"] and said["job"] == "raysubmit_x"
    assert said["job_owner"] == (owner.lower() if owner else None)


def test_explain_lists_scoped_grants(tmp_path: Path) -> None:
    _, out, _ = cli("explain", "--config", config(tmp_path), "--as", "ana@example.com", "/api/jobs/")
    assert json.loads(out)["granted_verbs"] == ["delete:own", "logs:own", "stop:own", "submit", "view"]


def test_a_reveal_role_the_policy_lacks_is_a_warning(tmp_path: Path) -> None:
    path = config(tmp_path, "jobs:\n  reveal_secrets_to_roles: [lead, admins]\n")
    code, _, err = cli("check-config", "--config", path)
    assert code == 0
    assert (
        "jobs.reveal_secrets_to_roles[1]: 'admins' is not a role of the policy file: nobody reads job "
        "secrets back through it"
    ) in err
    assert "reveal_secrets_to_roles[0]" not in err
