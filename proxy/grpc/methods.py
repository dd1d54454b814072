"""The Ray Client (ray://) method table, as data: full gRPC method name -> verb.

Read from Ray 2.60's `ray/core/generated/ray_client_pb2_grpc.py`. Every method gets the verb `client`:
`Datapath` multiplexes code execution (tasks, actors), kills (`terminate`) and puts in one stream, so
a finer verb per method would be a false promise; `Logstream` carries the session's worker logs, which
belong to whoever holds the session. The kinds are listed for readers and tests; on the wire the
pass-through treats all four kinds alike (raw bytes, stream to stream).

A method the table does not know is not served (`verb_for` raises): deny by default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType


class Kind(Enum):
    UNARY = "unary"
    SERVER_STREAM = "server-stream"
    BIDI = "bidi"


@dataclass(frozen=True)
class Method:
    verb: str
    kind: Kind


CLIENT = "client"

_DRIVER = "/ray.rpc.RayletDriver/"
_UNARY_DRIVER = (
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

METHODS: Mapping[str, Method] = MappingProxyType(
    {
        "/ray.rpc.RayletDataStreamer/Datapath": Method(CLIENT, Kind.BIDI),
        "/ray.rpc.RayletLogStreamer/Logstream": Method(CLIENT, Kind.BIDI),
        _DRIVER + "GetObject": Method(CLIENT, Kind.SERVER_STREAM),
        **{_DRIVER + name: Method(CLIENT, Kind.UNARY) for name in _UNARY_DRIVER},
    }
)

# The method Ray's client calls first, as its connection "ping" (`worker.py` `ping_server`), and
# Ray's answer to a ping, serialized: `ClusterInfoResponse(json="{}")` (field 2, length 2), the same
# constant for everyone (`proxier.py` `ClusterInfo`). It carries no data about the cluster.
CLUSTER_INFO = _DRIVER + "ClusterInfo"
PING_ANSWER = b"\x12\x02{}"


class UnknownMethod(LookupError):
    """The method is not in the table: the proxy does not serve it."""


def verb_for(method: str) -> str:
    """The verb of a full method name such as `/ray.rpc.RayletDriver/Schedule`; raises UnknownMethod."""
    try:
        return METHODS[method].verb
    except KeyError:
        raise UnknownMethod(method) from None
