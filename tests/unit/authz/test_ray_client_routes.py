"""Ray Client's method table: exactly Ray 2.60's methods (from its own protobuf descriptors), a table
of its own that no HTTP row can match, and Ray's ping answer pinned to Ray's own message."""

from __future__ import annotations

from proxy.authz.routes import CLIENT_TABLE, DEFAULT_TABLE
from proxy.authz.routes.ray_client import CALL_KINDS
from proxy.grpc import methods
from proxy.model import Verb

DATAPATH = "/ray.rpc.RayletDataStreamer/Datapath"


def test_the_method_table_is_exactly_ray_clients_and_the_ping_answer_is_rays() -> None:
    from ray.core.generated import ray_client_pb2

    ray_methods = {
        f"/{service.full_name}/{m.name}": "bidi"
        if m.client_streaming
        else "server-stream"
        if m.server_streaming
        else "unary"
        for service in ray_client_pb2.DESCRIPTOR.services_by_name.values()
        for m in service.methods
    }
    assert dict(CALL_KINDS) == ray_methods
    assert {CLIENT_TABLE.classify("POST", name).verb for name in ray_methods} == {Verb.CLIENT}  # type: ignore[union-attr]
    assert CLIENT_TABLE.classify("POST", "/ray.rpc.RayletDriver/Nope") is None
    assert (
        CLIENT_TABLE.classify("POST", "/api/jobs/") is None
        and DEFAULT_TABLE.classify("POST", DATAPATH) is None
    )
    ping = ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING)
    assert ping.SerializeToString() == b"\x08\x06"
    assert methods.PING_ANSWER == ray_client_pb2.ClusterInfoResponse(json="{}").SerializeToString()
