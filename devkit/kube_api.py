"""A loopback stand-in for the Kubernetes API server, as far as authorization goes: it answers
`POST /apis/authorization.k8s.io/v1/subjectaccessreviews` (and `selfsubjectaccessreviews`, with
`Impersonate-User`/`Impersonate-Group`, for `kubectl auth can-i --as`) the way the RBAC authorizer
does, from Role, ClusterRole, RoleBinding and ClusterRoleBinding objects given as plain dicts (a
manifest's YAML, e.g. the ones shipped in k8s/). HTTPS with its own CA; callers authenticate with a
bearer token, and the caller of a SubjectAccessReview must itself be allowed to create one.

    api = KubeApi(tokens={"sa-token": "system:serviceaccount:team-a:ray-head"}, objects=[...])
    await api.start()
    api.write_kubeconfig(path, "sa-token")          # for the kubernetes client, or kubectl
    api.write_service_account(directory, "sa-token") # in-cluster files; `api.environ` names the host

Switches for the unhappy paths: `fail_status` (every review gets that status), `delay_seconds`
(every review waits that long first), `stop()` / `start()` (an outage, then back on the same port).
`reviews` records the spec of every review asked.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from devkit.ports import free_port
from devkit.tls import LoopbackCa

AUTHZ = "/apis/authorization.k8s.io/v1"
PROTOBUF = "application/vnd.kubernetes.protobuf"
Obj = dict[str, Any]


def _fields(data: bytes) -> dict[int, list[bytes | int]]:
    """One protobuf message's fields (varints and length-delimited values only)."""
    out: dict[int, list[bytes | int]] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        value = shift = 0
        while True:
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while i < len(data):
        key = varint()
        if key & 7 == 0:
            out.setdefault(key >> 3, []).append(varint())
        elif key & 7 == 2:
            n = varint()
            out.setdefault(key >> 3, []).append(data[i : i + n])
            i += n
        else:
            raise ValueError(f"wire type {key & 7}")
    return out


def review_from_protobuf(body: bytes) -> Obj:
    """A (Self)SubjectAccessReview sent as `application/vnd.kubernetes.protobuf`: the `k8s\\0` magic, a
    runtime.Unknown {typeMeta {apiVersion, kind}, raw}, and in raw the review (spec = field 2)."""
    if not body.startswith(b"k8s\x00"):
        raise ValueError("no protobuf envelope")
    unknown = _fields(body[4:])
    type_meta = _fields(bytes(unknown[1][0]))  # type: ignore[arg-type]
    review = _fields(bytes(unknown[2][0]))  # type: ignore[arg-type]
    spec = _fields(bytes(review.get(2, [b""])[0]))  # type: ignore[arg-type]

    def text(f: dict[int, list[bytes | int]], n: int) -> str:
        return bytes(f[n][0]).decode() if n in f else ""  # type: ignore[arg-type]

    out: Obj = {"apiVersion": text(type_meta, 1), "kind": text(type_meta, 2), "spec": {}}
    if 1 in spec:
        ra = _fields(bytes(spec[1][0]))  # type: ignore[arg-type]
        names = ["namespace", "verb", "group", "version", "resource", "subresource", "name"]
        out["spec"]["resourceAttributes"] = {k: text(ra, n) for n, k in enumerate(names, 1) if n in ra}
    return out


def rule_allows(rule: Obj, a: Obj) -> bool:
    """One PolicyRule against resourceAttributes, as RBAC's RuleAllows does."""
    verbs, groups = rule.get("verbs") or [], rule.get("apiGroups") or []
    resources, names = rule.get("resources") or [], rule.get("resourceNames") or []
    sub = a.get("subresource") or ""
    combined = a.get("resource", "") + (f"/{sub}" if sub else "")
    return (
        ("*" in verbs or a.get("verb") in verbs)
        and ("*" in groups or a.get("group", "") in groups)
        and any(r in ("*", combined) or (sub and r == f"*/{sub}") for r in resources)
        and (not names or a.get("name") in names)
    )


class Rbac:
    def __init__(self, objects: list[Obj]) -> None:
        self.objects = [
            o
            for o in objects
            if o and o.get("kind") in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
        ]

    def _role(self, ref: Obj, namespace: str | None) -> Obj | None:
        for o in self.objects:
            meta = o["metadata"]
            if o["kind"] == ref["kind"] and meta["name"] == ref["name"]:
                if ref["kind"] == "ClusterRole" or meta.get("namespace") == namespace:
                    return o
        return None

    @staticmethod
    def _subject(s: Obj, binding_ns: str | None, user: str, groups: list[str]) -> str | None:
        kind, name = s.get("kind"), s.get("name")
        if kind == "User" and name == user:
            return f'User "{name}"'
        if kind == "Group" and name in groups:
            return f'Group "{name}"'
        if (
            kind == "ServiceAccount"
            and user == f"system:serviceaccount:{s.get('namespace') or binding_ns}:{name}"
        ):
            return f'ServiceAccount "{name}/{s.get("namespace") or binding_ns}"'
        return None

    def authorize(self, user: str, groups: list[str], a: Obj) -> tuple[bool, str]:
        if "system:masters" in groups:
            return True, ""
        namespace = a.get("namespace") or None
        for b in self.objects:
            if b["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
                continue
            bns = b["metadata"].get("namespace") if b["kind"] == "RoleBinding" else None
            if b["kind"] == "RoleBinding" and bns != namespace:
                continue
            who = next(
                (w for s in b.get("subjects") or [] if (w := self._subject(s, bns, user, groups))), None
            )
            role = self._role(b["roleRef"], bns) if who else None
            if role is not None and any(rule_allows(r, a) for r in role.get("rules") or []):
                name = f"{b['metadata']['name']}/{bns}" if bns else b["metadata"]["name"]
                ref = b["roleRef"]
                return (
                    True,
                    f'RBAC: allowed by {b["kind"]} "{name}" of {ref["kind"]} "{ref["name"]}" to {who}',
                )
        return False, ""


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}  # fmt: skip
    return web.json_response(body, status=code)


class KubeApi:
    def __init__(self, tokens: dict[str, str], objects: list[Obj] | None = None) -> None:
        self.tokens = tokens  # bearer token -> user name
        self.rbac = Rbac(objects or [])
        self.reviews: list[Obj] = []
        self.fail_status: int | None = None
        self.delay_seconds = 0.0
        self.ca = LoopbackCa()
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @classmethod
    def from_manifests(cls, tokens: dict[str, str], *paths: Path) -> KubeApi:
        return cls(tokens, [d for p in paths for d in yaml.safe_load_all(p.read_text()) if d])

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def environ(self) -> dict[str, str]:
        return {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(self.port)}

    def _caller(self, request: web.Request) -> tuple[str, list[str]] | None:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        user = self.tokens.get(token) if scheme.lower() == "bearer" else None
        if user is None:
            return None
        groups = ["system:masters"] if user == "kubernetes-admin" else []
        if user.startswith("system:serviceaccount:"):
            groups.append("system:serviceaccounts")
        return user, [*groups, "system:authenticated"]

    async def _review(self, request: web.Request) -> web.StreamResponse:
        caller = self._caller(request)
        if caller is None:
            return _status(401, "Unauthorized", "Unauthorized")
        self_review = request.path.endswith("/selfsubjectaccessreviews")
        kind = "SelfSubjectAccessReview" if self_review else "SubjectAccessReview"
        if not self_review:
            may, _ = self.rbac.authorize(*caller, {"verb": "create", "group": "authorization.k8s.io",
                                                   "resource": "subjectaccessreviews"})  # fmt: skip
            if not may:
                return _status(
                    403,
                    "Forbidden",
                    f'subjectaccessreviews.authorization.k8s.io is forbidden: User "{caller[0]}" cannot '
                    'create resource "subjectaccessreviews" in API group "authorization.k8s.io" at the '
                    "cluster scope",
                )
        body = await request.read()
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if self.fail_status is not None:
            return _status(self.fail_status, "InternalError", "the stand-in was told to fail")
        try:
            if request.content_type == PROTOBUF:  # kubectl's typed client speaks protobuf
                obj = review_from_protobuf(body)
            elif not request.headers.get("Content-Type") or request.content_type == "application/json":
                obj = json.loads(body)  # no Content-Type is JSON to the API server (its first media type)
            else:
                return _status(415, "UnsupportedMediaType", f"the body is {request.content_type}")
            spec = obj["spec"]
        except (ValueError, KeyError, TypeError, IndexError):
            return _status(400, "BadRequest", "the body is not a review")
        if obj.get("kind") != kind or obj.get("apiVersion") != "authorization.k8s.io/v1":
            return _status(400, "BadRequest", f"expected {kind} authorization.k8s.io/v1")
        attributes = spec.get("resourceAttributes")
        if self_review:
            user, groups = caller
            as_user = request.headers.get("Impersonate-User")
            if as_user is not None:
                if "system:masters" not in caller[1]:
                    return _status(403, "Forbidden", f'users "{as_user}" is forbidden: cannot impersonate')
                user, groups = (
                    as_user,
                    [*request.headers.getall("Impersonate-Group", []), "system:authenticated"],
                )
        else:
            user, groups = spec.get("user") or "", list(spec.get("groups") or [])
            if not user and not groups:
                return _status(422, "Invalid", "spec.user: at least one of user or group must be specified")
            self.reviews.append(spec)
        if not isinstance(attributes, dict):
            return _status(422, "Invalid", "spec.resourceAttributes: exactly one of resourceAttributes or "
                           "nonResourceAttributes must be specified")  # fmt: skip
        allowed, reason = self.rbac.authorize(user, groups, attributes)
        obj["status"] = {"allowed": allowed, **({"reason": reason} if reason else {})}
        obj.setdefault("metadata", {"creationTimestamp": None})
        return web.json_response(obj, status=201)

    async def _discovery(self, request: web.Request) -> web.Response:
        path = request.path.rstrip("/")
        if path == "/version":
            return web.json_response({"major": "1", "minor": "37", "gitVersion": "v1.37.0-standin"})
        if path == "/api":
            return web.json_response(
                {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
            )
        if path == "/apis":
            groups = [{"name": g, "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
                       "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"}}
                      for g in ("ray.io", "authorization.k8s.io")]  # fmt: skip
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        resources: dict[str, list[Obj]] = {
            "/api/v1": [],
            "/apis/ray.io/v1": [
                {
                    "name": "rayclusters",
                    "singularName": "raycluster",
                    "namespaced": True,
                    "kind": "RayCluster",
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                },
                {
                    "name": "rayclusters/status",
                    "singularName": "",
                    "namespaced": True,
                    "kind": "RayCluster",
                    "verbs": ["get", "patch", "update"],
                },
            ],  # fmt: skip
            AUTHZ: [
                {"name": n, "singularName": "", "namespaced": False, "kind": k, "verbs": ["create"]}
                for n, k in (
                    ("subjectaccessreviews", "SubjectAccessReview"),
                    ("selfsubjectaccessreviews", "SelfSubjectAccessReview"),
                )
            ],  # fmt: skip
        }
        if path not in resources:
            return _status(404, "NotFound", "the server could not find the requested resource")
        gv = path.removeprefix("/apis/").removeprefix("/api/")
        return web.json_response({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                                  "resources": resources[path]})  # fmt: skip

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(f"{AUTHZ}/subjectaccessreviews", self._review)
        app.router.add_post(f"{AUTHZ}/selfsubjectaccessreviews", self._review)
        app.router.add_get("/{tail:.*}", self._discovery)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*self.ca.server_files())
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=context).start()

    async def stop(self) -> None:
        """An outage: nothing listens on the port until `start()`."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    close = stop

    def write_kubeconfig(self, path: Path, token: str) -> Path:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "standin", "preferences": {},
            "clusters": [{"name": "standin", "cluster": {
                "server": self.url, "certificate-authority-data": base64.b64encode(self.ca.cert_pem).decode(),
            }}],
            "users": [{"name": "proxy", "user": {"token": token}}],
            "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "proxy"}}],
        }  # fmt: skip
        path.write_text(yaml.safe_dump(config))
        return path

    def write_service_account(self, directory: Path, token: str) -> tuple[Path, Path]:
        """The files the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "token").write_text(token)
        (directory / "ca.crt").write_bytes(self.ca.cert_pem)
        (directory / "namespace").write_text("team-a")
        return directory / "token", directory / "ca.crt"
