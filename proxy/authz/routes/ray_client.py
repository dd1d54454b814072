"""Ray Client's gRPC methods (`ray.init("ray://…")`) as a route table of their own, so that an HTTP
row can never match on the gRPC listener, and vice versa. Read from Ray 2.60's
`ray/core/generated/ray_client_pb2_grpc.py` (a test pins it to Ray's own descriptors).

Every method gets the verb `client`: `Datapath` multiplexes code execution (tasks, actors), kills
(`terminate`) and puts in one stream, so a finer verb per method would be a false promise; `Logstream`
carries the session's worker logs, which belong to whoever holds the session. A method the table does
not know is refused. On the wire all four call kinds look alike (raw bytes, stream to stream); the kind
is kept for readers and tests. gRPC calls are HTTP/2 POSTs, hence the method.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ...model import Route, Verb

METHOD = "POST"
DRIVER = "/ray.rpc.RayletDriver/"
_UNARY = (
    "Init",
    "PrepRuntimeEnv",
    "PutObject",
    "WaitObject",
    "Schedule",
    "Terminate",
    "ClusterInfo",
    "KVGet",
    "KVPut",
    "KVDel",
    "KVList",
    "KVExists",
    "ListNamedActors",
    "PinRuntimeEnvURI",
)
# full method name -> call kind ("unary", "server-stream", "bidi")
CALL_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "/ray.rpc.RayletDataStreamer/Datapath": "bidi",
        "/ray.rpc.RayletLogStreamer/Logstream": "bidi",
        DRIVER + "GetObject": "server-stream",
        **{DRIVER + name: "unary" for name in _UNARY},
    }
)
RAY_CLIENT_ROUTES: tuple[Route, ...] = tuple(
    Route(METHOD, name, Verb.CLIENT, note=kind) for name, kind in CALL_KINDS.items()
)
