"""What Ray's client server receives from the listener, and who owns a Ray Client session: pure."""

from __future__ import annotations

from proxy.grpc.sessions import Claim, Sessions
from proxy.upstream.grpc import Metadata, upstream_metadata


def test_upstream_metadata_drops_credentials_and_transport_keeps_the_rest() -> None:
    incoming: Metadata = (
        ("authorization", "Bearer caller"),
        ("Authorization", "Bearer caller-2"),
        ("proxy-authorization", "Bearer x"),
        ("proxy_authorization", "Bearer y"),
        ("x-goog-iap-jwt-assertion", "jwt"),
        ("x-ray-authorization", "Bearer z"),
        ("grpc-timeout", "1S"),
        ("te", "trailers"),
        ("content-type", "application/grpc"),
        ("user-agent", "grpc-python"),
        ("client_id", "abc"),
        ("reconnecting", "True"),
        ("thread_id", "7"),
        ("req_id", "9"),
        ("x-trace-bin", b"\x00\x01"),
        ("x-keep", "1"),
        ("x-keep", "2"),
    )
    assert upstream_metadata(incoming, "T") == (
        ("client_id", "abc"),
        ("reconnecting", "True"),
        ("thread_id", "7"),
        ("req_id", "9"),
        ("x-trace-bin", b"\x00\x01"),
        ("x-keep", "1"),
        ("x-keep", "2"),
        ("authorization", "Bearer T"),
    )


def test_sessions_owner_linger_and_bounds() -> None:
    s = Sessions(linger_s=10, max_sessions=3, max_per_principal=2)
    assert s.claim("a", "alice", 0) is Claim.GRANTED
    assert s.claim("a", "bob", 1) is Claim.TAKEN
    s.release("a", 2)
    assert s.claim("a", "bob", 11) is Claim.TAKEN  # idle 9 s: still alice's
    assert s.owner("a", 12.5) is None  # idle 10.5 s: gone
    assert s.claim("a", "bob", 13) is Claim.GRANTED
    assert s.claim("b", "bob", 13) is Claim.GRANTED
    assert s.claim("c", "bob", 13) is Claim.TOO_MANY  # bob's two are open
    s.release("b", 14)
    assert s.claim("c", "bob", 15) is Claim.GRANTED and s.owner("b", 15) is None  # bob's idle one gave way
    assert s.claim("d", "carol", 15) is Claim.GRANTED
    assert s.claim("e", "dave", 15) is Claim.TOO_MANY  # table full of live sessions


def test_without_a_ray_token_nothing_is_appended() -> None:
    assert upstream_metadata((("client_id", "abc"), ("authorization", "Bearer caller")), None) == (
        ("client_id", "abc"),
    )
