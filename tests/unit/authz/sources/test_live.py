"""The policy file as a live source: a kubelet symlink swap is taken whole, a bad version is refused
with every problem logged (key and value) and the last good one stays, each version is named by its
digest, and a decision already made is never re-made."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from devkit.configmap import kubelet_write
from proxy.authz.authorizer import Opinion, Question
from proxy.authz.sources.live import LivePolicy
from proxy.authz.sources.static import short_digest
from proxy.errors import ConfigError
from proxy.model import Identity, Verb

BINDING = "bindings: [{tenant: team-a, role: viewer, members: ['user:%s@example.com']}]\n"
V1 = "roles: {viewer: [view]}\n" + BINDING % "alice"
V2 = "roles: {viewer: [view]}\n" + BINDING % "bob"
BAD = "roles: {viewer: [view, fly]}\nbindings: [{tenant: team-a, role: viewr, members: ['user:bob']}]\n"
ALICE, BOB = Identity("alice@example.com", "a"), Identity("bob@example.com", "b")


async def opinion(live: LivePolicy, who: Identity) -> Opinion:
    return (await live.decide(Question(who, "team-a", Verb.VIEW))).opinion


async def test_a_swap_is_taken_whole_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ray_iap_proxy.authz")
    root = kubelet_write(tmp_path / "cm", {"policy.yaml": V1})
    live = LivePolicy(root / "policy.yaml")
    assert live.digest == short_digest(V1.encode()) and (live.reloads, live.reload_failures) == (0, 0)
    assert await opinion(live, ALICE) is Opinion.GRANT and await opinion(live, BOB) is Opinion.NONE
    assert not live.watch.check()  # nothing changed
    kubelet_write(root, {"policy.yaml": V2})
    assert live.watch.check()
    assert await opinion(live, ALICE) is Opinion.NONE and await opinion(live, BOB) is Opinion.GRANT
    assert live.digest == short_digest(V2.encode()) and live.reloads == 1
    said = caplog.records[-1].getMessage()
    assert f"version {short_digest(V2.encode())} replaces {short_digest(V1.encode())}" in said


async def test_a_bad_version_is_refused_naming_every_key_and_value_and_the_last_good_stays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = kubelet_write(tmp_path / "cm", {"policy.yaml": V1})
    live = LivePolicy(root / "policy.yaml")
    kubelet_write(root, {"policy.yaml": BAD})
    caplog.set_level(logging.ERROR, logger="ray_iap_proxy.watched")
    assert not live.watch.check()
    assert await opinion(live, ALICE) is Opinion.GRANT  # V1 still decides
    assert live.digest == short_digest(V1.encode()) and live.reload_failures == 1 and live.reloads == 0
    (record,) = caplog.records
    said = record.getMessage()
    assert "roles.viewer[1]: 'fly' is not a verb" in said
    assert "bindings[0].members[0]: 'user:bob' is not an email address" in said
    assert f"version {short_digest(BAD.encode())} refused" in said and "stays in force" in said
    assert live.last_error is not None and "'fly'" in live.last_error
    assert not live.watch.check() and live.reload_failures == 1  # the same bad version: once
    kubelet_write(root, {"policy.yaml": "roles: [not, a, mapping"})
    assert not live.watch.check() and live.reload_failures == 2
    assert "is not valid YAML" in (live.last_error or "")
    kubelet_write(root, {"policy.yaml": V2})
    assert live.watch.check() and live.last_error is None and await opinion(live, BOB) is Opinion.GRANT


async def test_a_vanished_file_keeps_the_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(V1)
    live = LivePolicy(path)
    path.unlink()
    assert not live.watch.check() and not live.watch.check()
    assert live.reload_failures == 1 and "cannot be read" in (live.last_error or "")
    assert await opinion(live, ALICE) is Opinion.GRANT


def test_the_first_version_must_be_good(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(BAD)
    with pytest.raises(ConfigError) as raised:
        LivePolicy(tmp_path / "policy.yaml")
    assert any("'fly' is not a verb" in p for p in raised.value.problems)
    assert all(p.startswith(str(tmp_path / "policy.yaml")) for p in raised.value.problems)


async def test_a_decision_is_made_under_one_version(tmp_path: Path) -> None:
    """What admission was told stays told: a swap after the answer changes only later answers."""
    root = kubelet_write(tmp_path / "cm", {"policy.yaml": V1})
    live = LivePolicy(root / "policy.yaml")
    before = await live.decide(Question(ALICE, "team-a", Verb.VIEW))
    kubelet_write(root, {"policy.yaml": V2})
    live.watch.check()
    after = await live.decide(Question(ALICE, "team-a", Verb.VIEW))
    assert before.opinion is Opinion.GRANT and "user:alice@example.com" in before.reason
    assert after.opinion is Opinion.NONE
