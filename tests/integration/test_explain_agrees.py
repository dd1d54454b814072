"""`explain` says exactly what `serve` does: the whole route table, for a set of identities, through
the real app (real tokens, real listener, recording Ray) and through `explain`, compared field by field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from yarl import URL

from devkit.config import write_hardening_config
from devkit.records import AccessRecords
from proxy.authz.policy_file import read_policy
from proxy.authz.routes import RAY_ROUTES
from proxy.cli.explain import explain
from proxy.settings import load

IDENTITIES = [  # (email, hd): a scientist, a viewer, a group member, a domain member, another tenant's
    ("alice@example.com", None),  # admin, a stranger, and a service account
    ("bob@example.com", None),
    ("carol@example.com", None),
    ("x@example.org", "example.org"),
    ("mallory@example.com", None),
    ("nobody@example.com", None),
    ("ci@p.iam.gserviceaccount.com", None),
]
EXTRA_TARGETS = [  # not canonical, unknown, a method Ray lacks
    ("GET", "/api/jobs/%6A"),
    ("GET", "/a//b"),
    ("GET", "/api/./jobs/"),
    ("GET", "/no/such/route"),
    ("PATCH", "/api/jobs/"),
]


def concrete(pattern: str) -> str:
    return re.sub(r"\{\w+\}", "p1", re.sub(r"\{\w+:[^}]+\}", "a/b.js", pattern))


def requests() -> list[tuple[str, str]]:
    return [(r.method, concrete(r.pattern) + "?q=1") for r in RAY_ROUTES] + EXTRA_TARGETS


async def test_explain_and_serve_agree_on_every_route(
    make_client: Any, tmp_path: Path, key_server: tuple[Any, str], mint: Any, access_records: AccessRecords
) -> None:
    client = await make_client(access_log=access_records)
    settings = load(tmp_path / "proxy.yaml")
    assert settings.policy_file is not None
    policy = read_policy(settings.policy_file)
    compared = 0
    for email, hd in IDENTITIES:
        token = mint(email, hd=hd)
        for method, target in requests():
            access_records.clear()
            url = URL(str(client.make_url("")).rstrip("/") + target, encoded=True)  # sent as written
            # A submission must be a JSON object (proxy/jobs/submission.py): admission is not all it takes.
            body = b'{"entrypoint": "x"}' if method == "POST" and target.startswith("/api/jobs/?") else None
            r = await client.session.request(
                method, url, headers={"x-goog-iap-jwt-assertion": token}, data=body
            )
            await r.read()
            (record,) = access_records.records()
            said = await explain(settings, policy, email, method, target, hd)
            where = f"{email} {method} {target}"
            assert said["status"] == r.status, where
            assert said["reason"] == record["reason"], where
            assert said["verb"] == record["verb"] and said["route"] == record["route"], where
            assert (said["decision"] == "allow") == (record["decision"] in ("allow", "local")), where
            compared += 1
    assert compared == len(IDENTITIES) * len(requests())


def test_the_fixture_policy_really_differs_between_identities(tmp_path: Path) -> None:
    """Guard against a vacuous comparison: the set of identities covers allow and deny."""
    write_hardening_config(tmp_path, "http://127.0.0.1:1/jwks.json", "http://127.0.0.1:2")
    policy = read_policy(tmp_path / "policy.yaml")
    from proxy.model import Identity

    verbs = {
        email: policy.verbs_for(Identity(email, "s", hosted_domain=hd), "team-a") for email, hd in IDENTITIES
    }
    assert len(set(verbs.values())) >= 3 and frozenset() in verbs.values()
