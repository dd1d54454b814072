"""End to end: a real `ray.init("ray://...")` -> the proxy process (`ray-iap-proxy serve` with
`client_listen`) -> a real Ray 2.60 head with token auth. Callers prove who they are as in
production: IAP's signed assertion (dev-iap's key, fetched by the proxy from dev-iap's key set) or a
Google ID token signed by the tests' own RSA key, whose key set the proxy fetches over HTTP. Ray
Client is process-global state, so every driver is a subprocess of the venv's python, with a timeout.

Why refusals end promptly (and with which codes) is measured in tests/e2e/test_ray_client_codes.py.
"""

from __future__ import annotations

import http.server
import json
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from devkit import google
from devkit.drivers import RAY_START_FLAKE, finish, run_to_end, shown, start_driver, wait_for_line
from devkit.ports import free_port
from devkit.stack import Stack

pytestmark = pytest.mark.e2e

AUD = "https://ray-team-a.example.com"
CLUSTER_INFO = "/ray.rpc.RayletDriver/ClusterInfo"
DATAPATH = "/ray.rpc.RayletDataStreamer/Datapath"
CI = "ci@p.iam.gserviceaccount.com"
POLICY = textwrap.dedent(f"""\
    roles:
      viewer: [view]
      engineer: [view, logs, submit, client]
    bindings:
      - tenant: team-a
        role: engineer
        members: ["user:alice@example.com", "user:dave@example.com", "serviceAccount:{CI}"]
      - tenant: team-a
        role: viewer
        members: ["user:bob@example.com"]
""")


class KeySet:
    """Google's key set, as the tests' stand-in serves it: a JWKS of the tests' RSA key, on loopback."""

    def __init__(self) -> None:
        self.key = google.rsa_key()
        body = json.dumps(google.jwks(self.key)).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/oauth2/v3/certs"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def keys() -> Iterator[KeySet]:
    ks = KeySet()
    yield ks
    ks.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, keys: KeySet) -> Iterator[Stack]:
    extra = f'google_id_tokens:\n  audiences: ["{AUD}"]\n  jwks_url: {keys.url}\n'
    with Stack(
        tmp_path_factory.mktemp("ray-client"), policy=POLICY, extra_config=extra, ray_client=True
    ) as s:
        yield s


def iap(stack: Stack, email: str) -> list[list[str]]:
    return [["x-goog-iap-jwt-assertion", stack.token(email)]]


def id_token(keys: KeySet, email: str) -> list[list[str]]:
    return [["authorization", f"Bearer {google.mint_id_token(keys.key, email, AUD)}"]]


def grpc_records(stack: Stack, principal: str) -> list[dict[str, Any]]:
    return [r for r in stack.access_records() if r.get("kind") == "grpc" and r.get("principal") == principal]


WORKLOAD = """\
    import hashlib, json, sys, time
    import ray

    ray.init(sys.argv[1], _metadata=[tuple(kv) for kv in json.loads(sys.argv[2])])

    @ray.remote
    def shout(i):
        print(f"hello from a worker {i}", flush=True)
        return i * 2

    print("TASKS", ray.get([shout.remote(i) for i in range(3)]), flush=True)
    blob = bytes(range(256)) * (50 * 4096)  # 50 MiB
    back = ray.get(ray.put(blob))
    print("BLOB", len(back), hashlib.sha256(back).hexdigest() == hashlib.sha256(blob).hexdigest(), flush=True)
    time.sleep(2)  # let the worker logs arrive through Logstream
    ray.shutdown()
    print("DONE", flush=True)
"""


@pytest.mark.parametrize("credential", ["iap", "google_id_token"])
def test_tasks_50_mib_and_worker_logs_with_each_credential(
    stack: Stack, keys: KeySet, tmp_path: Path, credential: str
) -> None:
    who = "alice@example.com" if credential == "iap" else CI
    metadata = iap(stack, who) if credential == "iap" else id_token(keys, who)
    out = run_to_end(tmp_path, WORKLOAD, stack.client_address, json.dumps(metadata))
    assert "TASKS [0, 2, 4]" in out, shown(out)
    assert f"BLOB {50 * 1024 * 1024} True" in out, shown(out)
    assert all(f"hello from a worker {i}" in out for i in range(3)), shown(out)
    assert "DONE" in out
    mine = grpc_records(stack, who)
    assert mine and {r["decision"] for r in mine} == {"allow"}, mine[:3]
    assert {r["credential"] for r in mine} == {credential} and {r["verb"] for r in mine} == {"client"}
    methods = {r["httpRequest"]["requestUrl"] for r in mine}
    assert {CLUSTER_INFO, DATAPATH, "/ray.rpc.RayletLogStreamer/Logstream"} <= methods
    assert sum(int(r["httpRequest"]["requestSize"]) for r in mine) >= 50 * 1024 * 1024  # the put
    assert sum(int(r["httpRequest"]["responseSize"]) for r in mine) >= 50 * 1024 * 1024  # the get
    assert stack.head.token not in out


REFUSED = """\
    import json, sys, time
    import ray

    t0 = time.monotonic()
    try:
        ray.init(sys.argv[1], _metadata=[tuple(kv) for kv in json.loads(sys.argv[2])])
        print("CONNECTED", flush=True)
    except Exception as e:
        print("REFUSED", round(time.monotonic() - t0, 2), type(e).__name__, str(e).replace("\\n", " "))
"""


@pytest.mark.parametrize(
    ("who", "says"),
    [
        pytest.param(None, "no credential: send IAP assertion or Google ID token", id="no-credentials"),
        pytest.param("bad", "invalid IAP assertion", id="bad-credentials"),
        pytest.param("stale-id-token", "invalid Google ID token: expired", id="expired-id-token"),
        pytest.param("bob@example.com", "verb client is not granted by role(s) viewer", id="viewer"),
    ],
)
def test_a_refused_ray_init_ends_promptly_and_says_why(
    stack: Stack, keys: KeySet, tmp_path: Path, who: str | None, says: str
) -> None:
    metadata: list[list[str]] = []
    if who == "bad":
        metadata = [["x-goog-iap-jwt-assertion", stack.token("alice@example.com") + "x"]]
    elif who == "stale-id-token":
        stale = google.mint_id_token(keys.key, CI, AUD, now=time.time() - 7200)
        metadata = [["authorization", f"Bearer {stale}"]]
    elif who is not None:
        metadata = iap(stack, who)
    t0 = time.monotonic()
    out = finish(start_driver(tmp_path, REFUSED, stack.client_address, json.dumps(metadata)))
    line = next((ln for ln in out.splitlines() if ln.startswith(("REFUSED", "CONNECTED"))), out[-2000:])
    _, seconds, exc, message = line.split(" ", 3)
    assert exc == "ConnectionError" and float(seconds) < 5, line
    assert "StatusCode.FAILED_PRECONDITION" in message and says in message, line
    assert time.monotonic() - t0 < 20
    assert stack.head.token not in out


ALICE_STAYS = """\
    import json, sys
    import ray
    from ray.util.client import ray as client_ray

    ray.init(sys.argv[1], _metadata=[tuple(kv) for kv in json.loads(sys.argv[2])])
    print("CLIENT_ID", client_ray.get_context().client_worker._client_id, flush=True)
    sys.stdin.readline()

    @ray.remote
    def still():
        return "still alice's"

    print("AFTER", ray.get(still.remote()), flush=True)
    ray.shutdown()
"""


def test_another_identity_cannot_take_a_live_session(stack: Stack, tmp_path: Path) -> None:
    """dave may use Ray Client too, but not alice's session: the session is keyed by client_id only."""
    for _ in range(2):
        alice = start_driver(
            tmp_path, ALICE_STAYS, stack.client_address, json.dumps(iap(stack, "alice@example.com"))
        )
        line, out = wait_for_line(alice, "CLIENT_ID")
        if line is not None:
            break
        alice.wait(timeout=10)
        assert RAY_START_FLAKE in out, shown(out)
    assert line is not None, shown(out)
    try:
        client_id = line.split()[1]
        dave = (("client_id", client_id), ("x-goog-iap-jwt-assertion", stack.token("dave@example.com")))
        with grpc.insecure_channel(stack.client_address.removeprefix("ray://")) as ch:
            for method, md in [
                ("/ray.rpc.RayletDriver/GetObject", dave),
                (DATAPATH, (*dave, ("reconnecting", "True"))),
            ]:
                call = ch.stream_stream(method, request_serializer=None, response_deserializer=None)
                with pytest.raises(grpc.RpcError) as e:
                    list(call(iter([b"\x08\x06"]), metadata=md, timeout=10))
                assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, e.value  # type: ignore[attr-defined]
                assert "belongs to someone else" in (e.value.details() or "")  # type: ignore[attr-defined]
        out = finish(alice, stdin="go\n")
    finally:
        if alice.poll() is None:
            alice.kill()
            alice.wait(timeout=10)
    assert "AFTER still alice's" in out, out[-3000:]
    refused = [r for r in grpc_records(stack, "dave@example.com") if r["decision"] == "deny"]
    assert len(refused) == 2 and {r["grpc"]["client_id"] for r in refused} == {client_id}
