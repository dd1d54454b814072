"""Opt-in measurement (MEASURE_RAY_CLIENT_CODES=1, about 4 minutes): what a real `ray.init("ray://...")`
does with each gRPC status code, against the gRPC listener with a stand-in admission in front of a
real Ray 2.60 head. The table it prints is the reason for the codes in proxy/grpc/__init__.py. Times
are of ray.init alone, on this 2-core machine:
- First ClusterInfo (the client's "ping") refused, with any code (UNAUTHENTICATED, PERMISSION_DENIED,
  UNAVAILABLE, INTERNAL, UNIMPLEMENTED, UNKNOWN, ABORTED, ... and the final codes below alike):
  30.3-30.6 s (tries after 5, 10, 15 s), then `ConnectionError: ray client connection timeout` and a
  UserWarning to check the Ray Client port; our details only in a DEBUG log line.
- Ping answered, Datapath refused with FAILED_PRECONDITION, INVALID_ARGUMENT, NOT_FOUND or
  RESOURCE_EXHAUSTED (Ray's GRPC_UNRECOVERABLE_ERRORS): 0.7-2 s, `ConnectionError: Request can't be
  sent because the Ray client has already been disconnected due to an error. Last exception: <...
  status = StatusCode.FAILED_PRECONDITION details = "<our details>" ...>`. (ABORTED too, but its
  details are unpickled by the client's unary calls: never ours to send.)
- Ping answered, Datapath refused with any other code: ray.init never ends (reconnects for ever; still
  going after 120 s).
The listener answers a refused ping itself when the refusal's code is final, so through the proxy a
final refusal takes the second row, which tests/e2e/test_ray_client.py pins.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from devkit.drivers import start_driver
from devkit.rayhead import RayHead
from proxy.grpc.listener import CallAdmission, CallRecord, start_grpc_listener
from proxy.upstream.grpc import Metadata, upstream_metadata

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not os.environ.get("MEASURE_RAY_CLIENT_CODES"), reason="opt-in measurement, ~4 min"),
]

CLUSTER_INFO = "/ray.rpc.RayletDriver/ClusterInfo"


@dataclass
class Front:
    head: RayHead
    loop: asyncio.AbstractEventLoop


@pytest.fixture(scope="module")
def front() -> Iterator[Front]:
    with RayHead(num_cpus=2) as head:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="grpc-listeners", daemon=True)
        thread.start()
        try:
            yield Front(head, loop)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()


REFUSED = """\
    import json, sys, time
    import ray

    t0 = time.monotonic()
    try:
        ray.init(sys.argv[1], _metadata=json.loads(sys.argv[2]))
        print("CONNECTED", flush=True)
    except Exception as e:
        print("REFUSED", round(time.monotonic() - t0, 2), type(e).__name__, str(e).replace("\\n", " "))
"""


def test_measure_what_ray_init_does_with_each_code(front: Front, tmp_path: Path) -> None:
    """For each code: ray.init against a listener refusing every call, and one passing only ClusterInfo."""

    def refusing(code: grpc.StatusCode, pass_ping: bool):  # type: ignore[no-untyped-def]
        async def admit(method: str, md: Metadata) -> CallAdmission:
            if pass_ping and method == CLUSTER_INFO:
                return CallAdmission(
                    True, grpc.StatusCode.OK, "", "alice", upstream_metadata(md, front.head.token)
                )
            return CallAdmission(False, code, f"refused by the proxy as {code.name}", "alice", ())

        return admit

    cases = [(pass_ping, code) for pass_ping in (False, True) for code in MEASURED]
    rows = []
    for batch in range(0, len(cases), 8):  # more at once on 2 cores slows the drivers' own start
        runs = []
        for pass_ping, code in cases[batch : batch + 8]:
            started = start_grpc_listener(
                "127.0.0.1",
                0,
                f"127.0.0.1:{front.head.ports.client_server}",
                refusing(code, pass_ping),
                ignore,
            )
            listener = asyncio.run_coroutine_threadsafe(started, front.loop).result(timeout=10)
            md = json.dumps([["x-test-user", "alice"]])
            proc = start_driver(tmp_path, REFUSED, f"ray://127.0.0.1:{listener.port}", md)
            runs.append((pass_ping, code, listener, proc))
        deadline = time.monotonic() + 50
        for pass_ping, code, listener, proc in runs:
            try:
                out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
                line = next((ln for ln in out.splitlines() if ln.startswith(("REFUSED", "CONNECTED"))), "?")
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate(timeout=10)
                line = "never ended within 50 s"
            asyncio.run_coroutine_threadsafe(listener.stop(0), front.loop).result(timeout=15)
            rows.append(f"{'ping answered' if pass_ping else 'all refused':14} {code.name:20} {line[:300]}")
    print("\n".join(rows))


def ignore(record: CallRecord) -> None:
    pass


MEASURED = [c for c in grpc.StatusCode if c not in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED)]
